"""Detection-driven frame selection and segmentation: which frames to keep, and where segments start.

The :class:`DetectionSelector` is fed frames in order and answers, for each, whether to
keep it and at which quality. It keeps a frame when the change score against
the last kept frame passes the threshold, when ``max_gap`` seconds passed, at a
scene cut, and at the start of every segment (so each segment, and every seek
point, starts with a frame that stands alone). The first frame is always kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Callable

import numpy as np

from ..detection.base import DEFAULT_CLASSES, Detection, Detector
from ..rate import LagGuard, RateController, RatePolicy
from .base import FrameDecision, Segment
from .roi import DEFAULT_BACKGROUND, DEFAULT_BOOST, RoiMap
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


class DetectionSelector:
    """The :class:`~.base.Selector` that runs a detector and scores change against the last kept frame.

    Args:
        detector: the backend (:mod:`vidsieve.detection.registry`).
        rate: the owner of segment qualities and of their offset.
        time_base: of the pts it is given.
        cfg: thresholds and segment rules.
        score_cfg: the change score's weights.
        roi: builds each frame's quality map from its boxes (None: one quality per frame).
    """

    name = "detect"

    def __init__(self, detector: Detector, rate: RateController, time_base: Fraction,
                 cfg: SelectionConfig | None = None, score_cfg: ScoreConfig | None = None,
                 roi: RoiMap | None = None):
        self.detector = detector
        self.detector_name = detector.name
        self.rate = rate
        self.tb = time_base
        # Copies: the lag guard changes them for this selector alone.
        self.cfg = replace(cfg) if cfg is not None else SelectionConfig()
        self.base_cfg = replace(self.cfg)
        self.score_cfg = score_cfg or ScoreConfig()
        self.roi = roi if roi is not None and roi.active else None
        self.classes = set(self.cfg.classes) | {"motion"}
        self.index = 0
        self.segment: Segment | None = None
        self.segments = 0
        self.ref_dets: list[Detection] = []
        self.ref_luma: np.ndarray | None = None
        self.last_kept_pts: int | None = None
        self.last_active_pts: int | None = None
        self.dets: list[Detection] = []
        self.last_score = ChangeScore()

    def describe(self) -> dict:
        return {"name": self.name, "detector": self.detector_name, "policy": self.rate.policy.preset,
                "sensitivity": self.cfg.sensitivity, "max_gap": self.cfg.max_gap,
                "segment_seconds": self.cfg.segment_seconds, "detect_every": self.cfg.detect_every,
                "classes": sorted(self.cfg.classes), "target_kbps": self.rate.target_kbps,
                "roi": self.roi.describe() if self.roi else None}

    def _seconds(self, a: int, b: int) -> float:
        return float((a - b) * self.tb)

    def decide(self, rgb: np.ndarray, pts: int) -> FrameDecision:
        cfg = self.cfg
        self.rate.start(pts)
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
        want = self.rate.segment_quality(active, present)
        seg = self.segment
        opened = False
        if (seg is None or seg.active != active or reason == "scene-cut"
                or self._seconds(pts, seg.start_pts) >= cfg.segment_seconds
                or want >= seg.quality + cfg.upgrade_step):
            if seg is not None:
                closed.append(seg)
                self.rate.segment_closed(pts, self.segments)
                want = self.rate.segment_quality(active, present)
            self.segment = seg = Segment(index=self.segments, start_pts=pts, end_pts=pts, quality=want,
                                         active=active, base_quality=self.rate.policy.base(active, present))
            self.segments += 1
            opened = True
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
            seg.selected += 1
            self.ref_dets = list(dets)
            self.ref_luma = luma
            self.last_kept_pts = pts
        roi = self.roi.offsets(dets, rgb.shape[:2]) if self.roi else None
        return FrameDecision(keep=keep, quality=seg.quality, reason=reason, score=sc.total, detections=dets,
                             closed=closed, segment=seg, new_segment=opened, roi=roi)

    def on_coded(self, bits: int) -> None:
        self.rate.on_coded(bits)

    def degrade(self, level: int) -> None:
        base = self.base_cfg
        self.cfg.sensitivity = base.sensitivity * (0.5 if level >= LagGuard.FEWER_FRAMES else 1.0)
        self.cfg.detect_every = base.detect_every * (3 if level >= LagGuard.FEWER_ANALYSES else 1)
        self.rate.degrade(level)

    def finish(self) -> list[Segment]:
        s, self.segment = self.segment, None
        return [s] if s else []


def build_selector(opts, time_base: Fraction, log_fn: Callable[[str], None] | None = None,
                   detector: Detector | None = None, plan=None) -> DetectionSelector:
    """The detection-driven selector ``opts`` (:class:`vidsieve.pipeline.options.CompressOptions`) describe,
    its rate controller started from ``plan`` (:class:`vidsieve.pipeline.plan.RatePlan`) when given."""
    from ..detection.registry import load_detector

    classes = tuple(opts.classes) if opts.classes else DEFAULT_CLASSES
    det = detector or load_detector(opts.detector, opts.detector_format, opts.detect_size, classes, log_fn)
    policy = RatePolicy(preset=opts.policy, quality=opts.quality, class_weights=opts.class_weights or {})
    cfg = SelectionConfig(sensitivity=opts.sensitivity or 1.0, max_gap=opts.max_gap,
                          segment_seconds=opts.segment_seconds, detect_every=opts.detect_every, classes=classes)
    rate = RateController(policy, opts.target_kbps, time_base)
    if plan is not None:
        rate.set_plan(plan.offset, plan.segment_bits)
    background = DEFAULT_BACKGROUND[opts.policy] if opts.roi_background is None else opts.roi_background
    roi = RoiMap(boost=DEFAULT_BOOST if opts.roi_boost is None else opts.roi_boost, background=background, class_weights=policy.class_weights,
                 min_score=ScoreConfig().appear_conf)
    return DetectionSelector(det, rate, time_base, cfg, roi=roi)
