"""Rate: which quality each segment gets, and the one owner of the quality offset.

A segment's quality is the policy's base for active or idle time, plus a
per-class bonus for the most valuable class seen, plus one offset. The offset
belongs to :class:`RateController` alone: it holds the part that meets
``--target-kbps`` (solved up front by the two-pass planner, corrected by the
bits actually coded) and, separately, the part a live source's lag guard takes
away while the encoder runs behind, so neither overwrites the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .codec.models import QUALITY_MAX, QUALITY_MIN

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


#: Offsets never go further than this from the policy's qualities.
MAX_OFFSET = 7.0


class RateController:
    """The one owner of the quality offset added to the policy's segment qualities.

    Args:
        policy: the segment qualities before any offset.
        target_kbps: the rate to meet, or None for the policy's qualities as they are.
        time_base: of the pts passed to :meth:`segment_closed`.
    """

    #: What the lag guard takes off every quality while the encoder cannot keep up (level >= 2).
    DEGRADED_OFFSET = -1.5

    def __init__(self, policy: RatePolicy, target_kbps: float | None = None, time_base=None):
        self.policy = policy
        self.target_kbps = target_kbps
        self.tb = time_base
        self.feedback = FeedbackController()
        self.target_offset = 0.0  # meets the target; moved by the plan and by feedback
        self.degrade_offset = 0.0  # taken off while a live source runs behind
        self.bits = 0
        self.first_pts: int | None = None
        self.plan_bits: list[float] | None = None  # planned bits per segment (two-pass)

    @property
    def offset(self) -> float:
        return max(-MAX_OFFSET, min(MAX_OFFSET, self.target_offset + self.degrade_offset))

    def segment_quality(self, active: bool, classes=()) -> float:
        return clip_quality(self.policy.base(active, classes) + self.offset)

    def set_plan(self, offset: float, plan_bits: list[float]) -> None:
        """Start from a two-pass plan: its offset, and the bits it plans per segment."""
        self.target_offset, self.plan_bits = float(offset), list(plan_bits)

    def start(self, pts: int) -> None:
        if self.first_pts is None:
            self.first_pts = pts

    def on_coded(self, bits: int) -> None:
        self.bits += bits

    def segment_closed(self, pts: int, segments_done: int) -> None:
        """Correct the target offset by what the closed segments really cost."""
        if not self.target_kbps or self.first_pts is None:
            return
        if self.plan_bits is not None:
            # Two-pass: hold the spend to the plan, which already favours activity.
            planned = sum(self.plan_bits[:segments_done])
        else:
            # One pass (live): the budget accrues evenly with time.
            elapsed = float((pts - self.first_pts) * self.tb)
            if elapsed <= 0:
                return
            planned = self.target_kbps * 1000 * elapsed
        self.target_offset += self.feedback.correction(self.bits, planned)
        self.target_offset = max(-MAX_OFFSET, min(MAX_OFFSET, self.target_offset))

    def degrade(self, level: int) -> None:
        """The lag guard's level (:class:`LagGuard`): from level 2 on, qualities drop by a fixed step."""
        self.degrade_offset = self.DEGRADED_OFFSET if level >= LagGuard.LOWER_QUALITY else 0.0


class LagGuard:
    """Real time first: how far a live encoder degrades when it falls behind its source.

    Levels, each including the ones below: 1 keep fewer frames, 2 lower the
    quality, 3 analyse fewer frames, 4 skip frames unanalysed. Past ``soft``
    seconds of lag it goes one level down per frame (to 3); past ``hard``
    straight to 4; below a quarter of ``soft`` it recovers one level per frame.
    """

    FEWER_FRAMES, LOWER_QUALITY, FEWER_ANALYSES, SKIPPING = 1, 2, 3, 4
    WORDS = ("back to normal", "keeping fewer frames", "lowering quality", "analysing fewer frames",
             "skipping frames")

    def __init__(self, soft: float = 1.0, hard: float = 4.0):
        self.soft, self.hard = soft, hard
        self.level = 0

    def update(self, lag: float) -> bool:
        """Takes the current lag in seconds; True when the level changed."""
        want = self.level
        if lag > self.hard:
            want = self.SKIPPING
        elif lag > self.soft:
            want = min(self.FEWER_ANALYSES, self.level + 1)
        elif lag < self.soft / 4 and self.level > 0:
            want = self.level - 1
        changed, self.level = want != self.level, want
        return changed
