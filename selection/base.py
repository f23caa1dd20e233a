"""What a frame selector decides, and the interface every selector implements.

A selector sees each frame once, in order, and answers whether the codec
should code it and at which quality; it groups frames into segments (runs of
one quality, an event index in the file). The compress road
(:class:`vidsieve.pipeline.encoder.Compressor`) and live ingest talk to
selectors only through :class:`Selector`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ..detection.base import Detection


@dataclass
class Segment:
    """A run of frames coded at one quality."""

    index: int
    start_pts: int
    end_pts: int
    quality: float
    active: bool
    frames: int = 0
    selected: int = 0  # frames selection picked (the rest it left to be held or coded as copies)
    classes: dict[str, int] = field(default_factory=dict)  # class -> max simultaneous count
    first_event_pts: int | None = None
    last_event_pts: int | None = None
    #: The policy's quality for this segment before the rate controller's offset (the
    #: two-pass planner solves the offset from it); not stored in files.
    base_quality: float | None = None

    def to_json(self, time_base) -> dict:
        def sec(p):
            return None if p is None else round(float(p * time_base), 4)
        return {
            "index": self.index, "start_pts": self.start_pts, "end_pts": self.end_pts,
            "start_s": sec(self.start_pts), "end_s": sec(self.end_pts),
            "quality": round(self.quality, 3), "active": self.active,
            "frames": self.frames, "selected": self.selected, "classes": dict(self.classes),
            "event_start_s": sec(self.first_event_pts), "event_end_s": sec(self.last_event_pts),
        }


@dataclass
class FrameDecision:
    keep: bool
    quality: float
    reason: str = ""
    score: float = 0.0
    detections: list[Detection] = field(default_factory=list)
    closed: list[Segment] = field(default_factory=list)  # segments that ended before this frame
    segment: Segment | None = None  # the segment this frame belongs to
    new_segment: bool = False  # this frame opened ``segment``
    roi: np.ndarray | None = None  # quality offsets per 64 x 64 block (selection.roi), None: one quality


@runtime_checkable
class Selector(Protocol):
    """The interface of every frame selector.

    Attributes:
        name: short name stored in the file's metadata (``detect``, ``keep-all``).
        detector_name: the detector backend it runs (``none`` when it runs none).
        last_kept_pts: pts of the last frame it kept, None before the first.
    """

    name: str
    detector_name: str
    last_kept_pts: int | None

    def describe(self) -> dict:
        """Its settings as plain data (stored in the file's metadata)."""

    def decide(self, rgb: np.ndarray, pts: int) -> FrameDecision:
        """Whether to code this frame and at which quality; closes and opens segments."""

    def finish(self) -> list[Segment]:
        """Closes the open segment at the end of the input."""

    def on_coded(self, bits: int) -> None:
        """Feedback: the coded size of the frame it last kept."""

    def degrade(self, level: int) -> None:
        """Spend less work for a live source that runs behind (levels of :class:`vidsieve.rate.LagGuard`)."""
