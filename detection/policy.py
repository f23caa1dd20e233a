"""The rate policy: which quality each segment gets.

A segment's quality is the preset's base for active or idle time, plus a
per-class bonus for the most valuable class seen, plus an offset that the
rate controller moves to meet ``--target-kbps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..codec.models import QUALITY_MAX, QUALITY_MIN

#: (active, idle) base quality per preset.
PRESETS = {
    "evidence": (6.0, 2.0),  # faces and plates matter; empty rooms do not
    "balanced": (4.5, 2.0),
    "archive": (3.0, 1.0),
}
#: Quality bonus per class ("motion" is what the weight-free backend reports).
DEFAULT_CLASS_WEIGHTS = {"person": 1.0, "bicycle": 0.5, "motorcycle": 0.5, "car": 0.0, "bus": 0.0,
                         "truck": 0.0, "motion": 0.5}


def clip_quality(q: float) -> float:
    return float(min(QUALITY_MAX, max(QUALITY_MIN, q)))


@dataclass
class RatePolicy:
    preset: str = "balanced"
    quality: float | None = None  # overrides the preset's active quality; idle keeps the same distance
    class_weights: dict = field(default_factory=lambda: dict(DEFAULT_CLASS_WEIGHTS))
    offset: float = 0.0

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown policy {self.preset!r}; choose from {', '.join(PRESETS)}")
        weights = dict(DEFAULT_CLASS_WEIGHTS)
        weights.update(self.class_weights or {})
        self.class_weights = weights

    def base(self, active: bool, classes=()) -> float:
        act, idle = PRESETS[self.preset]
        if self.quality is not None:
            idle, act = self.quality - (act - idle), self.quality
        if not active:
            return idle
        bonus = max((self.class_weights.get(c, 0.0) for c in classes), default=0.0)
        return act + bonus

    def segment_quality(self, active: bool, classes=()) -> float:
        return clip_quality(self.base(active, classes) + self.offset)


class RateModel:
    """Bits per pixel as a function of quality, log-linearly interpolated from measured points."""

    def __init__(self, qualities, bpps):
        order = np.argsort(qualities)
        self.q = np.asarray(qualities, float)[order]
        self.logb = np.log(np.maximum(np.asarray(bpps, float)[order], 1e-6))

    def bpp(self, q: float) -> float:
        return float(math.exp(np.interp(q, self.q, self.logb)))


@dataclass
class SegmentPlan:
    kept: int
    pixels: int
    base: float
    frames: int
    model: "RateModel | None" = None  # this segment's own rate model, when measured


def solve_offset(plans: list[SegmentPlan], model: RateModel, target_bits: float,
                 overhead_bits: float = 0.0) -> float:
    """Offset added to every segment's base quality so the planned total meets ``target_bits``.

    The total is monotone in the offset, so bisection finds it; clipping to
    1..8 keeps the active/idle ordering while the range allows.
    """
    def total(off):
        return overhead_bits + sum(p.kept * p.pixels * (p.model or model).bpp(clip_quality(p.base + off))
                                   for p in plans)

    lo, hi = -QUALITY_MAX, QUALITY_MAX
    for _ in range(50):
        mid = (lo + hi) / 2
        if total(mid) > target_bits:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


class FeedbackController:
    """Corrects the offset as real bits arrive, so estimation errors do not accumulate.

    ``planned`` maps elapsed kept frames to planned bits; the correction moves
    the offset by the log-ratio of spent to planned, scaled by how quality
    maps to rate (bits roughly double every ``q_per_doubling`` quality steps).
    """

    def __init__(self, gain: float = 0.6, q_per_doubling: float = 1.2, max_step: float = 1.0):
        self.gain, self.qd, self.max_step = gain, q_per_doubling, max_step

    def correction(self, spent_bits: float, planned_bits: float) -> float:
        if spent_bits <= 0 or planned_bits <= 0:
            return 0.0
        step = -self.gain * self.qd * math.log2(spent_bits / planned_bits)
        return float(max(-self.max_step, min(self.max_step, step)))
