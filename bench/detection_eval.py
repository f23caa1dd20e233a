"""Detection survival: does a reference detector find on the decoded video what it finds on the original?

Recall = objects found on the original (class, score >= conf) that the same
detector also finds on the decoded, hold-filled video at the same frame index,
same class, IoU >= 0.5. Precision is the converse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..detection.base import Detection, iou_matrix


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

    def add(self, orig: list[Detection], dec: list[Detection], min_iou: float = 0.5) -> None:
        self.reference += len(orig)
        self.decoded += len(dec)
        if not orig or not dec:
            return
        m = iou_matrix([d.box for d in orig], [d.box for d in dec])
        same = np.array([[a.cls == b.cls for b in dec] for a in orig])
        hit = np.where(same, m, 0.0) >= min_iou
        self.found += int(hit.any(1).sum())
        self.confirmed += int(hit.any(0).sum())


def roi_mask(dets: list[Detection], shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for d in dets:
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        mask[max(0, y1):max(0, y2), max(0, x1):max(0, x2)] = True
    return mask
