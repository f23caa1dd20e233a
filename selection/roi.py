"""Quality inside the frame: a quality map from the detector's boxes.

A surveillance user reviews objects, so at equal bits a person's pixels matter
more than the wall's. Each 64 x 64 block (the codec's block, see
:mod:`vidsieve.codec.quality_map`) gets an offset from the frame's quality:
``+boost`` steps where a box covers it (times ``1 + w`` for a class with weight
``w``, the ``--class-weight`` table), falling off linearly over ``margin``
pixels around the box (objects move between detections, and their edges
matter), and ``background`` steps (zero or less) everywhere else. A box over
more than a third of the frame is no object: it is what a weight-free motion
detector reports when the camera's exposure or the light changes, and lifting
most of a frame is a quality change, which selection makes per segment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..codec.quality_map import BLOCK, offsets_from_steps
from ..detection.base import Detection

#: Pixels per block side.
CELL = 16 * BLOCK
#: Quality steps objects get above their frame's quality, by default: none; the rest of the frame goes down
#: instead (docs/SELECTION.md: with motion boxes, lifting objects cost more than it gave).
DEFAULT_BOOST = 0.0
#: Quality steps the rest of a frame with objects gets, per policy (zero or less; balanced measured).
DEFAULT_BACKGROUND = {"evidence": -0.5, "balanced": -1.0, "archive": -1.5}
#: Pixels over which a box's boost falls to the background's.
DEFAULT_MARGIN = 32


@dataclass
class RoiMap:
    """Builds a frame's block offsets from its detections.

    Args:
        boost: quality steps inside boxes (0: no map).
        background: quality steps outside them (zero or less), in frames that have boxes.
        margin: pixels over which a box's boost falls off.
        class_weights: ``w`` per class: its boxes get ``boost * (1 + w)``.
        min_score: boxes less confident than this are ignored.
        max_share: boxes over more of the frame than this are ignored.
    """

    boost: float = DEFAULT_BOOST
    background: float = DEFAULT_BACKGROUND["balanced"]
    margin: int = DEFAULT_MARGIN
    class_weights: dict = field(default_factory=dict)
    min_score: float = 0.0
    max_share: float = 1 / 3

    def __post_init__(self):
        if self.boost < 0 or self.background > 0:
            raise ValueError("--roi-boost must be 0 or more and --roi-background 0 or less")
        if self.margin < 0:
            raise ValueError("the ROI margin must be 0 or more pixels")

    @property
    def active(self) -> bool:
        return self.boost > 0 or self.background < 0

    def describe(self) -> dict:
        return {"boost": self.boost, "background": self.background, "margin": self.margin}

    def boxes(self, detections: list[Detection], frame_hw: tuple[int, int]) -> list[Detection]:
        """The detections a map is made from: confident enough, and not most of the frame."""
        area = frame_hw[0] * frame_hw[1]
        return [d for d in detections if d.score >= self.min_score
                and (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) <= self.max_share * area]

    def boost_of(self, cls: str) -> float:
        """Steps a box of class ``cls`` gets."""
        return self.boost * (1.0 + max(0.0, self.class_weights.get(cls, 0.0)))

    def steps(self, detections: list[Detection], frame_hw: tuple[int, int]) -> np.ndarray | None:
        """Quality steps per block (float [hb, wb]), or None for a frame without boxes (coded uniformly)."""
        boxes = self.boxes(detections, frame_hw)
        if not boxes or not self.active:
            return None
        hb, wb = -(-frame_hw[0] // CELL), -(-frame_hw[1] // CELL)
        top = np.arange(hb)[:, None] * CELL
        left = np.arange(wb)[None, :] * CELL
        steps = np.full((hb, wb), float(self.background))
        for d in boxes:
            x1, y1, x2, y2 = d.box
            # Distance, in pixels, from each block to the box (0 where they overlap).
            dx = np.maximum(0.0, np.maximum(x1 - (left + CELL), left - x2))
            dy = np.maximum(0.0, np.maximum(y1 - (top + CELL), top - y2))
            dist = np.hypot(dx, dy)
            near = np.clip(1.0 - dist / self.margin, 0.0, 1.0) if self.margin else (dist == 0).astype(float)
            steps = np.maximum(steps, self.background + (self.boost_of(d.cls) - self.background) * near)
        return steps

    def offsets(self, detections: list[Detection], frame_hw: tuple[int, int]) -> np.ndarray | None:
        """The int8 quarter-step offsets the codec takes (None: no boxes, no map)."""
        s = self.steps(detections, frame_hw)
        return None if s is None else offsets_from_steps(s)
