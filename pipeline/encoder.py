"""The compress road: source -> selector -> stream encoder -> container.

:class:`Compressor` owns the road for one output file; :func:`compress` drives it
over a file, URL or image, and live ingest (:mod:`vidsieve.ingest.live`) over a
stream, both through its public methods.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..codec import DEFAULT_BLOCK_PX, DEFAULT_INTRA_PERIOD
from ..codec.registry import load_codec
from ..codec.registry import stream_encoder
from ..codec.stream import stream_predicts
from ..container import REC_META, ContainerWriter, Header
from ..datasets.video import VideoReader
from ..errors import InputError, ModelError
from ..metrics import psnr
from ..selection.base import FrameDecision, Segment, Selector
from .lookahead import ReuseTree, block_luma
from .options import CompressOptions, make_selector
from .paths import check_output_path

if TYPE_CHECKING:
    from ..codec.frame_codec import FrameCodec

#: Selection reasons after which a frame is coded alone: nothing before it predicts it.
INTRA_REASONS = ("first", "scene-cut")
#: Most held frames one skip record holds.
SKIP_RECORD_MAX = 4096


@dataclass
class CompressSummary:
    output: str
    frames: int = 0
    coded: int = 0  # frames coded (with a frame record)
    held: int = 0  # frames shown as the coded one before them (no record of their own)
    selected: int = 0  # frames selection picked; where frames are predicted, the others are coded too
    segments: int = 0
    bytes: int = 0
    frame_bytes: int = 0
    duration_s: float = 0.0
    kbps: float = 0.0
    bpp: float = 0.0  # bits per pixel of the coded frames
    psnr_coded: float = 0.0  # mean PSNR-RGB of the coded frames against the input
    seconds: float = 0.0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    detector: str = ""

    @property
    def coded_fraction(self) -> float:
        return self.coded / self.frames if self.frames else 0.0

    @property
    def selected_fraction(self) -> float:
        return self.selected / self.frames if self.frames else 0.0

    def line(self) -> str:
        return (f"{self.output}: {self.frames} frames, {self.coded} coded ({100 * self.coded_fraction:.1f}%), "
                f"{self.held} held, {self.selected} selected, {self.segments} segments | "
                f"{self.bytes / 1024:.1f} KiB, {self.kbps:.1f} kbps, {self.bpp:.4f} bpp, "
                f"PSNR {self.psnr_coded:.2f} dB (coded frames) | "
                f"{self.seconds:.1f} s, {self.fps:.2f} fps")

    def to_json(self) -> dict:
        d = asdict(self)
        d["coded_fraction"] = round(self.coded_fraction, 5)
        d["selected_fraction"] = round(self.selected_fraction, 5)
        return d


@dataclass
class _Pending:
    """A frame to code, held until the next frame's decision (and, with the reuse look-ahead, the frames
    after it) are known."""

    rgb: np.ndarray
    pts: int
    decision: FrameDecision
    referenced: bool | None  # None until the next frame's decision is known
    luma: np.ndarray | None  # the reuse look-ahead's block_luma


class Compressor:
    """Owns the compress road for one output: selector -> stream encoder -> container.

    Feed it frames with :meth:`push` (or :meth:`skip` for frames a live source had
    no time to analyse); :meth:`close` finishes the container (index, rename to
    the final name), :meth:`abort` drops it.

    Args:
        output: the ``.vsv`` to write.
        codec: the frame codec; :func:`vidsieve.codec.registry.stream_encoder` builds the coder of its frames
            (intra only, or intra and predicted frames).
        selector: decides which frames to code and at which quality.
        width, height, fps, time_base: of the source.
        metadata: stored in the header.
        atomic: write under a temporary name until :meth:`close`.
        fsync_interval: seconds between fsyncs (None: only at close).
        skip_flush_s: longest time held frames wait before their record is written (None: they wait for
            the next coded frame or :data:`SKIP_RECORD_MAX` of them, so a file's bytes do not depend on how
            fast it was coded).
        intra_period: seconds between frames coded alone, where frames are predicted.
        predict: predict frames where the codec has a conditional model (False: every frame alone).
        code_dropped: where frames are predicted, code the frames the selector drops too.
        lookahead: code each frame once the next one's decision is known (one frame later), so a frame
            nothing will refer to (a still image, a stream's last frame, one before a scene cut) is coded
            as such (False, for live sources: code at once, taking every frame to be referred to).
        reuse_frames: with ``lookahead``, where frames are predicted under quality maps, hold this many
            frames back and raise the quality of the blocks they will copy (:mod:`.lookahead`; 0: off).
        block_px: the smallest block predicted frames choose a mode for (64, 32 or 16 pixels).
        scale: code frames at this fraction of ``width`` x ``height`` (low rates); a decoder shows them at
            the source's size.
        motion: predicted frames move their references by vectors where that pays (:mod:`..codec.motion`).
        conditional: the conditional model of predicted frames, a shipped name or a weights file (None: the
            one shipped for the codec's weights).
        stabilise: a predicted frame that moved as a whole (camera shake) is coded aligned with its
            references and shown moved (:mod:`..codec.stabilise`).
    """

    def __init__(self, output: str | os.PathLike, codec: "FrameCodec", selector: Selector, width: int, height: int,
                 fps: Fraction, time_base: Fraction, metadata: dict | None = None, atomic: bool = True,
                 fsync_interval: float | None = None, skip_flush_s: float | None = 1.0,
                 intra_period: float = DEFAULT_INTRA_PERIOD, predict: bool = True, code_dropped: bool = True,
                 lookahead: bool = True, block_px: int = DEFAULT_BLOCK_PX, scale: float = 1.0,
                 motion: bool = False, reuse_frames: int = 0, conditional: str | None = None,
                 stabilise: bool = True):
        self.selector = selector
        self.stream = stream_encoder(codec, time_base, intra_period, predict, conditional, block_px=block_px,
                                     scale=scale, size=(width, height), motion=motion, stabilise=stabilise)
        self.tb = time_base
        self.fps = fps
        header = Header(width=width, height=height, fps=fps, time_base=time_base, model=codec.name,
                        weights_sha256=codec.weights_sha256, metadata=metadata or {}, stream=self.stream.describe())
        self.last_coded_pts: int | None = None
        #: Where frames are predicted, code the frames the selector drops too (copying what did not change
        #: costs a few dozen bytes, and what did change is worth its bits: docs/SELECTION.md); a live source
        #: that runs behind turns this off to save the time.
        self.predicts = stream_predicts(self.stream)
        self.code_dropped = code_dropped
        self.lookahead = lookahead
        # Frames coded but not yet written: each waits for the next one's decision (whether it is referred
        # to) and, with the reuse look-ahead, for the frames after it.
        self._pending: deque[_Pending] = deque()
        self.reuse = ReuseTree() if lookahead and reuse_frames > 0 and self.predicts and self.stream.maps else None
        self._depth = reuse_frames if self.reuse is not None else 0
        self.writer = ContainerWriter(output, header, atomic=atomic, fsync_interval=fsync_interval)
        self.summary = CompressSummary(output=str(output), width=width, height=height,
                                       detector=selector.detector_name)
        self._skipped: list[int] = []
        self._skip_flush = skip_flush_s
        self._last_skip_flush = time.monotonic()
        self._psnr_sum = 0.0
        self._pixels = 0
        self.first_pts: int | None = None
        self.last_pts: int | None = None
        self.segments: list[dict] = []  # the segments written so far, as stored

    @property
    def frames(self) -> int:
        """Frames represented so far (coded and held)."""
        return self.summary.frames

    @property
    def coded(self) -> int:
        """Frames coded so far (each with a frame record, or waiting for the next frame's decision)."""
        return self.summary.coded

    @property
    def bytes_written(self) -> int:
        return self.writer.bytes_written

    def push(self, rgb: np.ndarray, pts: int) -> FrameDecision:
        """One source frame: the selector decides, a kept frame is coded and written (with a look-ahead,
        when the next frame's decision is known)."""
        d = self.selector.decide(rgb, pts)
        self.summary.selected += d.keep
        coded = d.keep or (self.code_dropped and self.predicts)
        # Whether the last coded frame is referred to: unless this one starts afresh, it (or, if this one is
        # dropped, the next coded one) is predicted from it.
        self._decided(referenced=d.reason not in INTRA_REASONS)
        for seg in d.closed:
            self._write_segment(seg)
        if coded:
            self._flush_skips()
            self._pending.append(_Pending(rgb, pts, d, None if self.lookahead else True,
                                          block_luma(rgb) if self.reuse is not None else None))
            self._settle_ready()
            self.summary.coded += 1
        else:
            self._skipped.append(pts)
            self._flush_skips_if_due()
        self._count(pts)
        return d

    def _decided(self, referenced: bool) -> None:
        """The next frame's decision is known: whether the last frame waiting is referred to."""
        if self._pending and self._pending[-1].referenced is None:
            self._pending[-1].referenced = referenced
        self._settle_ready()

    def _settle_ready(self) -> None:
        """Code and write the frames waiting whose successor's decision is known, but for the last
        ``reuse_frames`` (the look-ahead of the frames before them)."""
        while len(self._pending) > self._depth and self._pending[0].referenced is not None:
            p = self._pending.popleft()
            self._code(p, p.referenced)

    def _settle(self) -> None:
        """Code and write every frame waiting (one whose successor is not known yet is taken to be referred to)."""
        while self._pending:
            p = self._pending.popleft()
            self._code(p, True if p.referenced is None else p.referenced)

    def _code(self, p: "_Pending", referenced: bool) -> None:
        rgb, pts, d = p.rgb, p.pts, p.decision
        # Boxes tell the stream coder what must not become background; no detector, no boxes to tell.
        boxes = None if self.selector.detector_name == "none" else [det.box for det in d.detections]
        reuse = None
        if self.reuse is not None:
            reuse = self.reuse.offsets(p.luma, [q.luma for q in self._pending])
        enc = self.stream.encode(rgb, d.quality, pts, boxes=boxes, intra=d.reason in INTRA_REASONS,
                                 roi=d.roi if self.stream.maps else None, referenced=referenced, reuse=reuse)
        if enc.intra and self.reuse is not None:
            self.reuse.restart()
        self.writer.write_frame(pts, d.quality, enc.data, ref_pts=None if enc.intra else self.last_coded_pts)
        self.last_coded_pts = pts
        self._psnr_sum += psnr(rgb, enc.recon)
        self._pixels += rgb.shape[0] * rgb.shape[1]
        self.selector.on_coded(len(enc.data) * 8)

    def skip(self, pts: int) -> None:
        """A frame held: represented by the last coded one (left by the selector, or never analysed)."""
        self._skipped.append(pts)
        self._flush_skips_if_due()
        self._count(pts)

    def _flush_skips_if_due(self) -> None:
        if len(self._skipped) >= SKIP_RECORD_MAX or (
                self._skip_flush is not None and time.monotonic() - self._last_skip_flush >= self._skip_flush):
            self._flush_skips()

    def _count(self, pts: int) -> None:
        self.summary.frames += 1
        if self.first_pts is None:
            self.first_pts = pts
        self.last_pts = pts

    def mark_gap(self, start_pts: int | None, end_pts: int | None, reason: str) -> None:
        self._settle()
        self._flush_skips()
        self.writer.write_gap({"start_pts": start_pts, "end_pts": end_pts, "reason": reason,
                               "wall_time": time.time()})

    def _flush_skips(self) -> None:
        # Skipped frames are shown as the last coded one, which must be written before them; whether a
        # later frame refers to it is not known yet, so it is taken to be.
        if self._skipped:
            self._settle()
            self.writer.write_skip(self._skipped)
            self._skipped = []
        self._last_skip_flush = time.monotonic()

    def _write_segment(self, seg: Segment) -> None:
        self._settle()  # a segment's record follows its frames'
        self._flush_skips()
        d = seg.to_json(self.tb)
        self.writer.write_segment(d)
        self.segments.append(d)
        self.summary.segments += 1

    def close(self, seconds: float | None = None) -> CompressSummary:
        self._decided(referenced=False)  # the last coded frame: nothing refers to it
        self._settle()
        for seg in self.selector.finish():
            self._write_segment(seg)
        self._flush_skips()
        s = self.summary
        s.held = s.frames - s.coded
        if self.first_pts is not None:
            s.duration_s = float((self.last_pts - self.first_pts) * self.tb) + float(1 / self.fps)
        s.frame_bytes = self.writer.frame_bytes
        s.psnr_coded = self._psnr_sum / s.coded if s.coded else 0.0
        s.bpp = s.frame_bytes * 8 / self._pixels if self._pixels else 0.0
        # Size and rate are only known after the index is written; `info` computes them from the file.
        meta = {"summary": {k: v for k, v in s.to_json().items()
                            if k not in ("output", "seconds", "fps", "bytes", "kbps", "detector")}}
        self.writer.write_json(REC_META, meta)
        self.writer.close()
        s.bytes = Path(s.output).stat().st_size
        s.kbps = s.bytes * 8 / 1000 / s.duration_s if s.duration_s > 0 else 0.0
        if seconds is not None:
            s.seconds = seconds
            s.fps = s.frames / seconds if seconds > 0 else 0.0
        return s

    def abort(self) -> None:
        self.writer.abort()


def compress(input: str | os.PathLike, output: str | os.PathLike, opts: CompressOptions | None = None,
             progress: bool | None = None, codec: "FrameCodec | None" = None,
             log_fn: Callable[[str], None] | None = None) -> CompressSummary:
    """Compress a video file, URL or still image into a ``.vsv`` container.

    Args:
        input: file, URL or image.
        output: the ``.vsv`` to write (appears only when complete).
        opts: what to do (defaults: detection-driven selection, the default model).
        progress: a progress bar on stderr (None: when stderr is a terminal).
        codec: a loaded frame codec (default: ``opts.model``).
        log_fn: receives one-line notes for the user (detector chosen, rate plan).
    """
    from tqdm import tqdm

    opts = opts or CompressOptions()
    check_output_path(output)
    t0 = time.monotonic()
    codec = codec or load_codec(opts.model, precision=opts.precision)
    if opts.quality is not None and not codec.variable_rate and opts.quality != int(opts.quality):
        raise ModelError(f"{codec.name} is fixed-rate: use an integer --quality")
    plan = None
    if opts.target_kbps and not opts.keep_all and "://" not in str(input):
        from .plan import plan_target

        plan = plan_target(input, opts, codec, log_fn)
    with VideoReader(input, options=opts.input_options) as reader:
        selector = make_selector(opts, reader.time_base, log_fn, plan=plan)
        meta = {"source": os.path.basename(str(input)), "selector": selector.describe()}
        comp = None
        total = reader.frame_count_hint() or None
        if opts.max_frames:
            total = min(total or opts.max_frames, opts.max_frames)
        bar = tqdm(total=total, unit="frame", disable=None if progress is None else not progress, dynamic_ncols=True,
                   desc="compress", leave=False)
        try:
            for frame in reader:
                if comp is None:
                    h, w = frame.rgb.shape[:2]
                    comp = Compressor(output, codec, selector, w, h, reader.fps, reader.time_base, meta,
                                      skip_flush_s=None,
                                      intra_period=opts.intra_period, predict=opts.predict,
                                      code_dropped=opts.code_dropped, block_px=opts.block_px,
                                      scale=opts.scale, motion=opts.motion, conditional=opts.conditional,
                                      stabilise=opts.stabilise,
                                      # A target's feedback corrects each segment by the bits of the one
                                      # before, which a look-ahead would still hold back.
                                      reuse_frames=0 if opts.target_kbps else opts.lookahead)
                comp.push(frame.rgb, frame.pts)
                bar.update(1)
                if bar.n % 10 == 0:
                    bar.set_postfix(coded=f"{comp.coded}/{comp.frames}", kib=f"{comp.bytes_written / 1024:.0f}")
                if opts.max_frames and comp.frames >= opts.max_frames:
                    break
        except BaseException:
            if comp is not None:
                comp.abort()
            raise
        finally:
            bar.close()
        if comp is None:
            raise InputError(f"{input} has no video frames")
        return comp.close(seconds=time.monotonic() - t0)
