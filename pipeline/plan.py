"""The first pass of ``--target-kbps`` on files: plan the quality offset before coding.

Selection depends only on the input, so a first pass over the file sees the
segments and kept frames the second pass will have; a few kept frames per
segment are coded at several qualities to learn how bits grow with quality on
*this* footage, and the offset that makes the planned total meet the target is
found by bisection (:func:`vidsieve.rate.solve_offset`). The compress road hands
the result to the selector's :class:`~vidsieve.rate.RateController`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..datasets.video import VideoReader
from ..rate import RateModel, SegmentPlan, clip_quality, solve_offset
from .options import CompressOptions, make_selector

if TYPE_CHECKING:
    from ..codec.frame_codec import FrameCodec

log = logging.getLogger(__name__)


@dataclass
class RatePlan:
    offset: float  # added to every segment's base quality
    segment_bits: list[float]  # planned bits per segment, in order


def plan_target(input, opts: CompressOptions, codec: "FrameCodec",
                log_fn: Callable[[str], None] | None = None) -> RatePlan | None:
    """The offset and per-segment bit plan that meet ``opts.target_kbps`` on this file (None: nothing to plan)."""
    plans, samples_by_seg = [], []
    with VideoReader(input, options=opts.input_options) as reader:
        sel = make_selector(opts, reader.time_base)
        cur = None
        first = last = None
        n = 0
        for frame in reader:
            d = sel.decide(frame.rgb, frame.pts)
            if d.new_segment:
                cur = SegmentPlan(kept=0, pixels=frame.rgb.shape[0] * frame.rgb.shape[1],
                                  base=d.segment.base_quality, frames=0)
                plans.append(cur)
                samples_by_seg.append([])
            cur.frames += 1
            if d.keep:
                cur.kept += 1
                # Two frames per segment (its first and one from later on) stand for its content.
                sl = samples_by_seg[-1]
                if len(sl) < 2 or cur.kept in (4, 16, 64):
                    sl[1 if len(sl) == 2 else len(sl):] = [frame.rgb]
            first = frame.pts if first is None else first
            last = frame.pts
            n += 1
            if opts.max_frames and n >= opts.max_frames:
                break
        duration = float((last - first) * reader.time_base + 1 / reader.fps) if n else 0.0
    if not plans or duration <= 0:
        return None
    qs = [1.0, 2.5, 4.0, 5.5, 7.0, 8.0] if codec.variable_rate else [1, 2, 3, 4, 5, 6, 7, 8]
    # Measure the segments that spend the most; the rest share their pooled model.
    order = sorted(range(len(plans)), key=lambda i: -plans[i].kept)[:12]
    models: dict[int, RateModel] = {}
    pooled = np.zeros(len(qs))
    for i in order:
        picks = samples_by_seg[i]
        bpps = []
        for q in qs:
            enc = codec.encode_batch(picks, [q] * len(picks), recon=False)
            bpps.append(sum(len(e.data) * 8 for e in enc) / sum(f.shape[0] * f.shape[1] for f in picks))
        models[i] = RateModel(qs, bpps)
        pooled += np.log(np.maximum(bpps, 1e-6)) * plans[i].kept
    weight = sum(plans[i].kept for i in order) or 1
    shared = RateModel(qs, np.exp(pooled / weight))
    for i, p in enumerate(plans):
        p.model = models.get(i, shared)
    frames = sum(p.frames for p in plans)
    # Container overhead: record framing per kept frame, skip lists, segment markers, header and index.
    overhead = 8 * (700 + 70 * sum(p.kept for p in plans) + 8 * frames + 300 * len(plans))
    off = solve_offset(plans, shared, opts.target_kbps * 1000 * duration, overhead)
    if log_fn:
        log_fn(f"vidsieve: target {opts.target_kbps:g} kbps: quality offset {off:+.2f} "
               f"over {len(plans)} segments")
    if off <= -7.9:
        log.warning("target %g kbps is below what quality 1 reaches on this video; expect more",
                    opts.target_kbps)
    return RatePlan(off, [p.kept * p.pixels * p.model.bpp(clip_quality(p.base + off)) for p in plans])
