"""What a compress run is asked to do, and the selector that follows from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

from ..codec import DEFAULT_BLOCK_PX, DEFAULT_INTRA_PERIOD, DEFAULT_LOOKAHEAD, DEFAULT_MODEL, DEFAULT_PRECISION

#: Quality of every frame with ``keep_all`` when none is given.
KEEP_ALL_QUALITY = 4.0


@dataclass
class CompressOptions:
    quality: float | None = None  # None: the policy decides (KEEP_ALL_QUALITY with keep_all)
    keep_all: bool = False
    model: str = DEFAULT_MODEL
    precision: str = DEFAULT_PRECISION  # the transforms' arithmetic: float | int8 (codec.int8)
    detector: str = "auto"
    detector_format: str | None = None
    detect_size: int | None = None
    detect_every: int = 1
    classes: tuple[str, ...] | None = None
    sensitivity: float | None = None
    max_gap: float = 4.0
    segment_seconds: float = 30.0
    policy: str = "balanced"
    class_weights: dict | None = None
    target_kbps: float | None = None
    max_frames: int | None = None
    input_options: dict = field(default_factory=dict)
    intra_period: float = DEFAULT_INTRA_PERIOD  # seconds between frames coded alone (seek points)
    predict: bool = True  # predicted frames where the codec has a conditional model; False: every frame alone
    conditional: str | None = None  # the conditional model of predicted frames (None: the one shipped for the codec)
    block_px: int = DEFAULT_BLOCK_PX  # the smallest block predicted frames choose a mode for: 64, 32 or 16
    scale: float = 1.0  # code frames at this fraction of the source's size (the decoder scales them back up)
    motion: bool = False  # predicted frames move their references by vectors where that pays (codec/motion.py)
    stabilise: bool = True  # a frame that moved as a whole is coded aligned and shown moved (codec/stabilise.py)
    lookahead: int = DEFAULT_LOOKAHEAD  # frames looked ahead to raise the blocks later frames copy (0: off)
    code_dropped: bool = True  # with predicted frames, code the frames selection drops too (False: hold them)
    roi_boost: float | None = None  # quality steps where the detector's boxes are (None: selection.roi's default)
    roi_background: float | None = None  # steps for the rest of a frame with boxes (None: the policy's)


def make_selector(opts: CompressOptions, time_base: Fraction, log_fn: Callable[[str], None] | None = None,
                  plan=None, detector=None):
    """The :class:`~vidsieve.selection.base.Selector` these options describe (loads the detector, unless
    ``detector`` is one already loaded).

    ``plan`` (:class:`~.plan.RatePlan`) starts its rate controller from a first pass's plan."""
    if opts.keep_all:
        from ..selection.keepall import KeepAllSelector

        q = KEEP_ALL_QUALITY if opts.quality is None else opts.quality
        return KeepAllSelector(q, time_base, opts.segment_seconds)
    from ..selection.detect import build_selector

    return build_selector(opts, time_base, log_fn=log_fn, plan=plan, detector=detector)
