"""Frame selection and segmentation: which frames to keep, and where segments start.

The :class:`Selector` is fed frames in order and answers, for each, whether to
keep it and at which quality. It keeps a frame when the change score against
the last kept frame passes the threshold, when ``max_gap`` seconds passed, at a
scene cut, and at the start of every segment (so each segment, and every seek
point, starts with a frame that stands alone). The first frame is always kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

from .base import DEFAULT_CLASSES, Detection, Detector, FrameDecision, Segment
from .policy import FeedbackController, RatePolicy
from .score import ChangeScore, ScoreConfig, change_score, small_luma

log = logging.getLogger(__name__)


@dataclass
class SelectionConfig:
    sensitivity: float = 1.0
    max_gap: float = 4.0  # seconds
    segment_seconds: float = 30.0
    detect_every: int = 1
    idle_after: float = 1.0  # seconds without objects before a segment counts as idle
    classes: tuple[str, ...] = DEFAULT_CLASSES
    upgrade_step: float = 0.25  # start a new segment when the wanted quality rises by this much


class Selector:
    name = "detect"

    def __init__(self, detector: Detector, policy: RatePolicy, time_base: Fraction, fps: Fraction,
                 cfg: SelectionConfig = SelectionConfig(), score_cfg: ScoreConfig = ScoreConfig(),
                 rate_target_kbps: float | None = None):
        self.detector = detector
        self.detector_name = getattr(detector, "name", type(detector).__name__)
        self.policy = policy
        self.tb = time_base
        self.fps = fps
        self.cfg = cfg
        self.score_cfg = score_cfg
        self.classes = set(cfg.classes) | {"motion"}
        self.target_kbps = rate_target_kbps
        self.feedback = FeedbackController()
        self.index = 0
        self.segment: Segment | None = None
        self.segments = 0
        self.ref_dets: list[Detection] = []
        self.ref_luma: np.ndarray | None = None
        self.last_kept_pts: int | None = None
        self.last_active_pts: int | None = None
        self.dets: list[Detection] = []
        self.last_score = ChangeScore()
        # Rate control bookkeeping (target kbps, one pass): bits spent vs. the budget so far.
        self.bits = 0
        self.first_pts: int | None = None
        self.plan_bits: list[float] | None = None  # planned bits per segment (two-pass)

    def describe(self) -> dict:
        return {"name": self.name, "detector": self.detector_name, "policy": self.policy.preset,
                "sensitivity": self.cfg.sensitivity, "max_gap": self.cfg.max_gap,
                "segment_seconds": self.cfg.segment_seconds, "detect_every": self.cfg.detect_every,
                "classes": sorted(self.cfg.classes), "target_kbps": self.target_kbps}

    def _seconds(self, a: int, b: int) -> float:
        return float((a - b) * self.tb)

    def decide(self, rgb: np.ndarray, pts: int) -> FrameDecision:
        cfg = self.cfg
        if self.first_pts is None:
            self.first_pts = pts
        if self.index % cfg.detect_every == 0:
            self.dets = [d for d in self.detector.detect(rgb) if d.cls in self.classes]
        self.index += 1
        dets = self.dets
        luma = small_luma(rgb, self.score_cfg.luma_width)
        if any(d.score >= self.score_cfg.appear_conf for d in dets):
            self.last_active_pts = pts
        active = self.last_active_pts is not None and self._seconds(pts, self.last_active_pts) <= cfg.idle_after
        present = {d.cls for d in dets if d.score >= self.score_cfg.appear_conf}

        keep, reason = False, ""
        if self.ref_luma is None or luma.shape != self.ref_luma.shape:
            keep, reason, sc = True, "first", ChangeScore()
        else:
            sc = change_score(dets, self.ref_dets, luma, self.ref_luma, rgb.shape[:2], self.score_cfg)
            if sc.scene_cut:
                keep, reason = True, "scene-cut"
            elif sc.total * cfg.sensitivity >= 1.0:
                keep, reason = True, "change"
            elif self._seconds(pts, self.last_kept_pts) >= cfg.max_gap - 1e-9:
                keep, reason = True, "max-gap"
        self.last_score = sc

        closed = []
        want = self.policy.segment_quality(active, present)
        seg = self.segment
        if (seg is None or seg.active != active or reason == "scene-cut"
                or self._seconds(pts, seg.start_pts) >= cfg.segment_seconds
                or want >= seg.quality + cfg.upgrade_step):
            if seg is not None:
                closed.append(seg)
                self._rate_feedback(pts)
                want = self.policy.segment_quality(active, present)
            self.segment = seg = Segment(index=self.segments, start_pts=pts, end_pts=pts, quality=want,
                                         active=active)
            self.segments += 1
            if not keep:
                keep, reason = True, "segment"
        seg.end_pts = pts
        seg.frames += 1
        counts: dict[str, int] = {}
        for d in dets:
            if d.score >= self.score_cfg.appear_conf:
                counts[d.cls] = counts.get(d.cls, 0) + 1
        for c, n in counts.items():
            seg.classes[c] = max(seg.classes.get(c, 0), n)
        if counts:
            seg.first_event_pts = pts if seg.first_event_pts is None else seg.first_event_pts
            seg.last_event_pts = pts
        if keep:
            seg.kept += 1
            self.ref_dets = list(dets)
            self.ref_luma = luma
            self.last_kept_pts = pts
        return FrameDecision(keep=keep, quality=seg.quality, reason=reason, score=sc.total, detections=dets,
                             closed=closed)

    def on_rate(self, bits: int, pixels: int, quality: float) -> None:
        self.bits += bits

    def _rate_feedback(self, pts: int) -> None:
        if not self.target_kbps or self.first_pts is None:
            return
        if self.plan_bits is not None:
            # Two-pass: hold the spend to the plan, which already favours activity.
            planned = sum(self.plan_bits[: self.segments])
        else:
            # One pass (live): the budget accrues evenly with time.
            elapsed = self._seconds(pts, self.first_pts)
            if elapsed <= 0:
                return
            planned = self.target_kbps * 1000 * elapsed
        self.policy.offset += self.feedback.correction(self.bits, planned)
        self.policy.offset = max(-7.0, min(7.0, self.policy.offset))

    def finish(self) -> list[Segment]:
        s, self.segment = self.segment, None
        return [s] if s else []


def build_selector(opts, time_base: Fraction, fps: Fraction, width: int, height: int,
                   duration_s: float | None = None, log_fn: Callable[[str], None] | None = None,
                   detector: Detector | None = None) -> Selector:
    from .registry import load_detector

    classes = tuple(opts.classes) if opts.classes else DEFAULT_CLASSES
    det = detector or load_detector(opts.detector, opts.detector_format, opts.detect_size, classes, log_fn)
    policy = RatePolicy(preset=opts.policy, quality=opts.quality, class_weights=opts.class_weights or {})
    cfg = SelectionConfig(sensitivity=opts.sensitivity or 1.0, max_gap=opts.max_gap,
                          segment_seconds=opts.segment_seconds, detect_every=opts.detect_every, classes=classes)
    return Selector(det, policy, time_base, fps, cfg, rate_target_kbps=opts.target_kbps)
