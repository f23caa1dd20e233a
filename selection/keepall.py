"""The selector for ``--keep-all``: every frame, one quality; segments only mark time."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .base import FrameDecision, Segment


class KeepAllSelector:
    """Keeps every frame at one quality (a :class:`~.base.Selector` that runs no detector).

    Args:
        quality: the quality of every frame.
        time_base: of the pts it is given.
        segment_seconds: longest segment; segments here are only time markers.
    """

    name = "keep-all"
    detector_name = "none"

    def __init__(self, quality: float, time_base: Fraction, segment_seconds: float = 60.0):
        self.quality = quality
        self.tb = time_base
        self.seg_len = segment_seconds
        self.segment: Segment | None = None
        self.count = 0
        self.last_kept_pts: int | None = None

    def describe(self) -> dict:
        return {"name": self.name}

    def decide(self, rgb: np.ndarray, pts: int) -> FrameDecision:
        closed = []
        if self.segment is not None and float((pts - self.segment.start_pts) * self.tb) >= self.seg_len:
            closed.append(self.segment)
            self.segment = None
        opened = self.segment is None
        if opened:
            self.segment = Segment(index=self.count, start_pts=pts, end_pts=pts, quality=self.quality, active=False,
                                   base_quality=self.quality)
            self.count += 1
        self.segment.end_pts = pts
        self.segment.frames += 1
        self.segment.selected += 1
        self.last_kept_pts = pts
        return FrameDecision(keep=True, quality=self.quality, reason="keep-all", closed=closed,
                             segment=self.segment, new_segment=opened)

    def finish(self) -> list[Segment]:
        s, self.segment = self.segment, None
        return [s] if s else []

    def on_coded(self, bits: int) -> None:
        pass  # one fixed quality: nothing to steer

    def degrade(self, level: int) -> None:
        pass  # every frame is the promise; a live source that runs behind skips whole frames instead
