"""Frame selection: which frames to code, at which quality, grouped into segments.

:mod:`.base` declares the :class:`~.base.Selector` interface and the plain data
it answers with; :mod:`.detect` is the detection-driven selector (change score
in :mod:`.score`), :mod:`.keepall` the one that keeps every frame."""
