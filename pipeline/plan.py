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


#: Kept frames per segment the first pass codes, at each quality, to learn this footage's rate.
SAMPLES = 3


def sample_bits(codec, frames, qualities, time_base, opts):
    """At each quality: bits of the first frame coded alone, the mean bits of the next ones predicted
    (None where frames are not predicted), and the bits of a predicted frame that repeats the last one (what
    a frame selection drops costs, at least). A fresh stream per quality, as the file will have."""
    from ..codec.registry import stream_encoder
    from ..codec.stream import stream_predicts

    alone, predicted, still = [], [], []
    size = (frames[0].shape[1], frames[0].shape[0])
    for q in qualities:
        enc = stream_encoder(codec, time_base, intra_period=0.0, predict=opts.predict,
                             conditional=opts.conditional, block_px=opts.block_px, stabilise=opts.stabilise,
                             scale=opts.scale, size=size, motion=opts.motion)
        sizes = [len(enc.encode(f, q, i).data) * 8 for i, f in enumerate(frames)]
        alone.append(float(sizes[0]))
        predicted.append(float(np.mean(sizes[1:])) if len(sizes) > 1 else float(sizes[0]))
        still.append(float(len(enc.encode(frames[-1], q, len(frames)).data) * 8))
    if not stream_predicts(enc):  # an intra-only coder: every kept frame costs what a frame alone does
        return [float(np.mean([a, p])) for a, p in zip(alone, predicted)], None, still
    return alone, predicted, still


def intras_between(start: float, end: float, period: float) -> int:
    """How many multiples of ``period`` seconds (after 0) fall in ``[start, end)``."""
    if period <= 0:
        return 0
    return max(0, int(np.ceil(end / period - 1e-9)) - max(1, int(np.ceil(start / period - 1e-9))))


@dataclass
class RatePlan:
    offset: float  # added to every segment's base quality
    segment_bits: list[float]  # planned bits per segment, in order


def plan_target(input, opts: CompressOptions, codec: "FrameCodec",
                log_fn: Callable[[str], None] | None = None) -> RatePlan | None:
    """The offset and per-segment bit plan that meet ``opts.target_kbps`` on this file (None: nothing to plan)."""
    plans, samples_by_seg, spans = [], [], []
    with VideoReader(input, options=opts.input_options) as reader:
        sel = make_selector(opts, reader.time_base)
        tb = reader.time_base
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
                spans.append([frame.pts, frame.pts])
            cur.frames += 1
            spans[-1][1] = frame.pts
            if d.keep:
                cur.kept += 1
                # Its first kept frames, in order, stand for the segment: the first as coded alone, the
                # next ones as predicted from the frames before them.
                if len(samples_by_seg[-1]) < SAMPLES:
                    samples_by_seg[-1].append(frame.rgb)
            first = frame.pts if first is None else first
            last = frame.pts
            n += 1
            if opts.max_frames and n >= opts.max_frames:
                break
        duration = float((last - first) * tb + 1 / reader.fps) if n else 0.0
    if not plans or duration <= 0:
        return None
    qs = [1.0, 2.5, 4.0, 5.5, 7.0, 8.0] if codec.variable_rate else [1, 2, 3, 4, 5, 6, 7, 8]
    from ..codec.registry import stream_encoder
    from ..codec.stream import stream_predicts

    code_dropped = opts.code_dropped and stream_predicts(stream_encoder(codec, tb, predict=opts.predict))
    # Frames coded alone: the first, then one every intra period (none more where frames are predicted).
    period = opts.intra_period if opts.predict else 0.0
    intra_at = [float((a - first) * tb) for a, _ in spans]
    ends = intra_at[1:] + [duration]
    # Measure the segments that spend the most; the rest share their pooled model.
    order = sorted(range(len(plans)), key=lambda i: -plans[i].kept)[:12]
    models: dict[int, RateModel] = {}
    pooled = np.zeros(len(qs))
    for i in order:
        picks = samples_by_seg[i]
        alone, predicted, still = sample_bits(codec, picks, qs, tb, opts)
        p = plans[i]
        n_alone = p.kept if not period or predicted is None else \
            min(p.kept, intras_between(intra_at[i], ends[i], period) + (i == 0))
        n_alone = max(n_alone, 1 if predicted is None else 0)
        dropped = p.frames - p.kept if code_dropped else 0  # coded as predicted frames, mostly copies
        totals = [n_alone * a + (p.kept - n_alone) * (a if predicted is None else b) + dropped * c
                  for a, b, c in zip(alone, predicted or alone, still)]
        bpps = [t / max(p.kept + dropped, 1) / p.pixels for t in totals]
        models[i] = RateModel(qs, bpps)
        pooled += np.log(np.maximum(bpps, 1e-6)) * p.kept
    if code_dropped:
        for p in plans:  # predicted streams code the frames selection drops too
            p.kept = p.frames
    weight = sum(plans[i].kept for i in order) or 1
    shared = RateModel(qs, np.exp(pooled / weight))
    for i, p in enumerate(plans):
        p.model = models.get(i, shared)
    frames = sum(p.frames for p in plans)
    # Container overhead: a frame record's framing and head (34 bytes: docs/FORMAT.md) per kept frame, skip
    # lists, segment markers, header and index.
    overhead = 8 * (700 + 34 * sum(p.kept for p in plans) + 8 * frames + 300 * len(plans))
    off = solve_offset(plans, shared, opts.target_kbps * 1000 * duration, overhead)
    if log_fn:
        log_fn(f"vidsieve: target {opts.target_kbps:g} kbps: quality offset {off:+.2f} "
               f"over {len(plans)} segments")
    if off <= -7.9:
        log.warning("target %g kbps is below what quality 1 reaches on this video; expect more",
                    opts.target_kbps)
    return RatePlan(off, [p.kept * p.pixels * p.model.bpp(clip_quality(p.base + off)) for p in plans])
