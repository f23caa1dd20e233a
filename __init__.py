"""vidsieve: detection-driven learned video compression for surveillance footage."""

from ._light_imports import install as _install_light_imports

__version__ = "0.1.0"

_install_light_imports()
