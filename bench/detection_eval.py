"""Detection survival: does a reference detector find on the decoded video what it finds on the original?

An object is what the reference detector reports at :data:`CONF` or above. Recall: the objects on the
original that the same detector also reports on the decoded, hold-filled video, at the same frame index,
same class, IoU >= 0.5, at :data:`MATCH_CONF` or above; precision is the converse (objects on the
decoded video found on the original at the lower confidence); F1 their harmonic mean. The lower
confidence on the side being searched is a hysteresis: a detector flickers across its threshold on
small, far objects from frame to frame with no coding at all (a car at 0.41 on the original and 0.39 on a
near-lossless copy), and a survival measure that counts that as loss says nothing about compression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..detection.base import Detection, iou_matrix

#: Confidence at which the reference detector's boxes count as objects.
CONF = 0.4
#: Confidence at which a box may match an object on the other side (the hysteresis).
MATCH_CONF = 0.2
#: Overlap at which two boxes of one class are the same object.
MIN_IOU = 0.5


@dataclass
class Survival:
    reference: int = 0  # objects on the original
    found: int = 0  # of those, found again on the decoded video
    decoded: int = 0  # objects on the decoded video
    confirmed: int = 0  # of those, also on the original

    @property
    def recall(self) -> float:
        return self.found / self.reference if self.reference else 1.0

    @property
    def precision(self) -> float:
        return self.confirmed / self.decoded if self.decoded else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    def add(self, orig: list[Detection], dec: list[Detection]) -> None:
        """One frame's detections on the original and on the decoded picture, down to :data:`MATCH_CONF`."""
        objs = [d for d in orig if d.score >= CONF]
        dec_objs = [d for d in dec if d.score >= CONF]
        self.reference += len(objs)
        self.decoded += len(dec_objs)
        self.found += _matched(objs, [d for d in dec if d.score >= MATCH_CONF])
        self.confirmed += _matched(dec_objs, [d for d in orig if d.score >= MATCH_CONF])


def _matched(objects: list[Detection], candidates: list[Detection]) -> int:
    """How many of ``objects`` some candidate of the same class overlaps by :data:`MIN_IOU`."""
    if not objects or not candidates:
        return 0
    m = iou_matrix([d.box for d in objects], [d.box for d in candidates])
    same = np.array([[a.cls == b.cls for b in candidates] for a in objects])
    return int((np.where(same, m, 0.0) >= MIN_IOU).any(1).sum())


def roi_mask(dets: list[Detection], shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for d in dets:
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        mask[max(0, y1):max(0, y2), max(0, x1):max(0, x2)] = True
    return mask
