"""The compress and decompress roads, as a Python API.

``compress``, ``ingest`` and ``bench`` all drive :class:`Compressor`; the CLI
only parses arguments and calls the functions here.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from .codec import DEFAULT_MODEL
from .codec.container import (REC_GAP, REC_META, REC_SEGMENT, ContainerReader, ContainerWriter, CorruptRecordWarning,
                              FrameRecord, Header, IndexRecord, JsonRecord, SkipRecord, TruncatedWarning)

from .datasets.video import VideoReader, VideoWriter
from .detection.base import FrameDecision, Segment
from .errors import FormatError, InputError, ModelError, OutputError

if TYPE_CHECKING:
    from .codec.frame_codec import FrameCodec

log = logging.getLogger(__name__)


def load_codec(name: str = DEFAULT_MODEL, quality=None, pretrained: bool = True) -> "FrameCodec":
    from .codec.registry import load_codec as _load

    return _load(name, quality=quality, pretrained=pretrained)


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for 8-bit data (capped at 100 dB for identical images)."""
    return 100.0 if mse <= 1e-10 else min(100.0, 10 * math.log10(255.0**2 / mse))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images."""
    return psnr_from_mse(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@dataclass
class CompressSummary:
    output: str
    frames: int = 0
    kept: int = 0
    dropped: int = 0
    segments: int = 0
    bytes: int = 0
    frame_bytes: int = 0
    duration_s: float = 0.0
    kbps: float = 0.0
    bpp: float = 0.0  # bits per pixel of the coded (kept) frames
    psnr_kept: float = 0.0  # mean PSNR-RGB of the kept frames against the input
    seconds: float = 0.0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    detector: str = ""

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.frames if self.frames else 0.0

    def line(self) -> str:
        return (f"{self.output}: {self.frames} frames, kept {self.kept} ({100 * self.kept_fraction:.1f}%), "
                f"dropped {self.dropped}, {self.segments} segments | {self.bytes / 1024:.1f} KiB, "
                f"{self.kbps:.1f} kbps, {self.bpp:.4f} bpp, PSNR {self.psnr_kept:.2f} dB (kept frames) | "
                f"{self.seconds:.1f} s, {self.fps:.2f} fps")

    def to_json(self) -> dict:
        d = asdict(self)
        d["kept_fraction"] = round(self.kept_fraction, 5)
        return d


class KeepAllSelector:
    """Keeps every frame at one quality; segments only mark time (``--keep-all``)."""

    name = "keep-all"

    def __init__(self, quality: float, time_base: Fraction, segment_seconds: float = 60.0):
        self.quality = quality
        self.tb = time_base
        self.seg_len = segment_seconds
        self.segment: Segment | None = None
        self.count = 0

    def decide(self, rgb: np.ndarray, pts: int) -> FrameDecision:
        closed = []
        if self.segment is not None and float((pts - self.segment.start_pts) * self.tb) >= self.seg_len:
            closed.append(self.segment)
            self.segment = None
        if self.segment is None:
            self.segment = Segment(index=self.count, start_pts=pts, end_pts=pts, quality=self.quality, active=False)
            self.count += 1
        self.segment.end_pts = pts
        self.segment.frames += 1
        self.segment.kept += 1
        return FrameDecision(keep=True, quality=self.quality, reason="keep-all", closed=closed)

    def finish(self) -> list[Segment]:
        s, self.segment = self.segment, None
        return [s] if s else []

    def on_rate(self, bits: int, pixels: int, quality: float) -> None:
        pass


class Compressor:
    """Owns the compress road for one output: selector -> codec -> container.

    Feed it frames with :meth:`push`; :meth:`close` finishes the container
    (index, rename to the final name), :meth:`abort` drops it.
    """

    def __init__(self, output: str | os.PathLike, codec: "FrameCodec", selector, width: int, height: int,
                 fps: Fraction, time_base: Fraction, metadata: dict | None = None, atomic: bool = True,
                 fsync_interval: float | None = None, skip_flush_s: float = 1.0):
        self.codec = codec
        self.selector = selector
        self.tb = time_base
        self.fps = fps
        header = Header(width=width, height=height, fps=fps, time_base=time_base, model=codec.name,
                        weights_sha256=codec.weights_sha256, metadata=metadata or {})
        self.writer = ContainerWriter(output, header, atomic=atomic, fsync_interval=fsync_interval)
        self.summary = CompressSummary(output=str(output), width=width, height=height)
        self._skipped: list[int] = []
        self._skip_flush = skip_flush_s
        self._last_skip_flush = time.monotonic()
        self._psnr_sum = 0.0
        self._pixels = 0
        self.first_pts: int | None = None
        self.last_pts: int | None = None
        self.last_decision: FrameDecision | None = None
        self.last_recon: np.ndarray | None = None
        self.written_segments: list[dict] = []

    def push(self, rgb: np.ndarray, pts: int) -> FrameDecision:
        d = self.selector.decide(rgb, pts)
        for seg in d.closed:
            self._write_segment(seg)
        if d.keep:
            self._flush_skips()
            enc = self.codec.encode_batch([rgb], [d.quality])[0]
            self.writer.write_frame(pts, d.quality, enc.data)
            self.summary.kept += 1
            self._psnr_sum += psnr(rgb, enc.recon)
            self._pixels += rgb.shape[0] * rgb.shape[1]
            self.selector.on_rate(len(enc.data) * 8, rgb.shape[0] * rgb.shape[1], d.quality)
            self.last_recon = enc.recon
        else:
            self._skipped.append(pts)
            if time.monotonic() - self._last_skip_flush >= self._skip_flush:
                self._flush_skips()
        self.summary.frames += 1
        if self.first_pts is None:
            self.first_pts = pts
        self.last_pts = pts
        self.last_decision = d
        return d

    def mark_gap(self, start_pts: int | None, end_pts: int | None, reason: str) -> None:
        self._flush_skips()
        self.writer.write_gap({"start_pts": start_pts, "end_pts": end_pts, "reason": reason,
                               "wall_time": time.time()})

    def _flush_skips(self) -> None:
        if self._skipped:
            self.writer.write_skip(self._skipped)
            self._skipped = []
        self._last_skip_flush = time.monotonic()

    def _write_segment(self, seg: Segment) -> None:
        self._flush_skips()
        d = seg.to_json(self.tb)
        self.writer.write_segment(d)
        self.written_segments.append(d)
        self.summary.segments += 1

    def close(self, seconds: float | None = None) -> CompressSummary:
        for seg in self.selector.finish():
            self._write_segment(seg)
        self._flush_skips()
        s = self.summary
        s.dropped = s.frames - s.kept
        if self.first_pts is not None:
            s.duration_s = float((self.last_pts - self.first_pts) * self.tb) + float(1 / self.fps)
        s.frame_bytes = self.writer.frame_bytes
        s.psnr_kept = self._psnr_sum / s.kept if s.kept else 0.0
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


@dataclass
class CompressOptions:
    quality: float | None = None  # None: the policy decides (4.0 with --keep-all)
    keep_all: bool = False
    model: str = DEFAULT_MODEL
    detector: str = "auto"
    detector_format: str | None = None
    detect_size: int | None = None
    detect_every: int = 1
    classes: tuple[str, ...] | None = None
    sensitivity: float | None = None
    max_gap: float = 4.0
    segment_seconds: float = 30.0
    policy: str = "balanced"
    class_weights: dict | None = None
    target_kbps: float | None = None
    max_frames: int | None = None
    input_options: dict = field(default_factory=dict)


def make_selector(opts: CompressOptions, reader: VideoReader, log_fn: Callable[[str], None] | None = None):
    if opts.keep_all:
        q = 4.0 if opts.quality is None else opts.quality
        return KeepAllSelector(q, reader.time_base, opts.segment_seconds)
    from .detection.selection import build_selector

    return build_selector(opts, reader.time_base, reader.fps, reader.width, reader.height,
                          duration_s=reader.duration_hint(), log_fn=log_fn)


def compress(input: str | os.PathLike, output: str | os.PathLike, opts: CompressOptions | None = None,
             progress: bool | None = None, codec: "FrameCodec | None" = None,
             log_fn: Callable[[str], None] | None = None) -> CompressSummary:
    """Compress a video file, URL or still image into a ``.vsv`` container."""
    from tqdm import tqdm

    opts = opts or CompressOptions()
    check_output_path(output)
    t0 = time.monotonic()
    codec = codec or load_codec(opts.model)
    if opts.quality is not None and not codec.variable_rate and opts.quality != int(opts.quality):
        raise ModelError(f"{codec.name} is fixed-rate: use an integer --quality")
    plan_offset = None
    if opts.target_kbps and not opts.keep_all and "://" not in str(input):
        plan_offset = plan_target_offset(input, opts, codec, log_fn)
    with VideoReader(input, options=opts.input_options) as reader:
        selector = make_selector(opts, reader, log_fn)
        if plan_offset is not None:
            selector.policy.offset, selector.plan_bits = plan_offset
        meta = {"source": os.path.basename(str(input)), "selector": getattr(selector, "describe", lambda: {
            "name": getattr(selector, "name", "")})()}
        comp = None
        total = reader.frame_count_hint() or None
        if opts.max_frames:
            total = min(total or opts.max_frames, opts.max_frames)
        bar = tqdm(total=total, unit="frame", disable=(progress is False) or None, dynamic_ncols=True,
                   desc="compress", leave=False)
        try:
            for frame in reader:
                if comp is None:
                    h, w = frame.rgb.shape[:2]
                    comp = Compressor(output, codec, selector, w, h, reader.fps, reader.time_base, meta)
                comp.push(frame.rgb, frame.pts)
                bar.update(1)
                if bar.n % 10 == 0:
                    s = comp.summary
                    bar.set_postfix(kept=f"{s.kept}/{s.frames}", kib=f"{comp.writer.bytes_written / 1024:.0f}")
                if opts.max_frames and comp.summary.frames >= opts.max_frames:
                    break
        except BaseException:
            if comp is not None:
                comp.abort()
            raise
        finally:
            bar.close()
        if comp is None:
            raise InputError(f"{input} has no video frames")
        summary = comp.close(seconds=time.monotonic() - t0)
        summary.detector = getattr(selector, "detector_name", "none")
        return summary


def plan_target_offset(input, opts: CompressOptions, codec: "FrameCodec",
                       log_fn: Callable[[str], None] | None = None, samples: int = 4):
    """First pass for ``--target-kbps`` on files: select frames, measure rate, solve the quality offset.

    Selection depends only on the input, so the second pass keeps the same
    frames; a few kept frames are coded at several qualities to learn how
    bits grow with quality on *this* footage, and the offset that makes the
    planned total meet the target is found by bisection.
    """
    from .detection.policy import RateModel, SegmentPlan, solve_offset

    plans, samples_by_seg = [], []
    with VideoReader(input, options=opts.input_options) as reader:
        sel = make_selector(opts, reader, None)
        cur = None
        first = last = None
        n = 0
        for frame in reader:
            d = sel.decide(frame.rgb, frame.pts)
            if d.closed or cur is None:
                cur = SegmentPlan(kept=0, pixels=frame.rgb.shape[0] * frame.rgb.shape[1],
                                  base=sel.policy.base(sel.segment.active, set(sel.segment.classes)), frames=0)
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
    from .detection.policy import clip_quality

    per_seg = [p.kept * p.pixels * p.model.bpp(clip_quality(p.base + off)) for p in plans]
    return off, per_seg


def check_output_path(output: str | os.PathLike, is_dir: bool = False) -> None:
    p = Path(output)
    parent = p if is_dir and p.exists() else p.parent
    parent = parent if str(parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {parent}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {parent}")
    if p.exists() and p.is_dir() and not is_dir:
        raise OutputError(f"output is a directory: {p}")


# -- reading containers ------------------------------------------------------------------
@dataclass
class DecodedFrame:
    rgb: np.ndarray
    pts: int
    kept: bool


def codec_for(header: Header, model: str | None = None) -> "FrameCodec":
    if model is None and header.model.startswith("file:"):
        raise ModelError(f"this file was coded with the weights file {header.model[5:]} "
                         f"(sha256 {header.weights_sha256[:12]}...); pass --model with that file")
    codec = load_codec(model or header.model)
    if model is None and codec.weights_sha256 != header.weights_sha256:
        raise ModelError(f"this file was coded with {header.model} weights {header.weights_sha256[:12]}..., "
                         f"but the installed weights are {codec.weights_sha256[:12]}...; pass --model with "
                         f"the original weights file")
    return codec


def iter_decoded(reader: ContainerReader, codec: "FrameCodec") -> Iterable[DecodedFrame]:
    """Frames in display order: kept frames decoded, skipped pts hold the last kept frame."""
    last = None
    for rec in reader.records():
        if isinstance(rec, FrameRecord):
            try:
                last = codec.decode(rec.payload)
            except FormatError as exc:
                raise FormatError(f"{reader.path}: bad frame payload at byte {rec.offset}: {exc}") from None
            yield DecodedFrame(last, rec.pts, True)
        elif isinstance(rec, SkipRecord):
            if last is None:
                continue  # skipped frames before any kept one (only after recovery)
            for p in rec.pts:
                yield DecodedFrame(last, p, False)


@dataclass
class DecompressSummary:
    output: str
    frames: int = 0
    kept: int = 0
    seconds: float = 0.0
    truncated_at: int | None = None
    damaged: list = field(default_factory=list)

    def line(self) -> str:
        extra = ""
        if self.truncated_at is not None:
            extra += f" | input cut off at byte {self.truncated_at}"
        if self.damaged:
            extra += f" | skipped {len(self.damaged)} damaged region(s)"
        return (f"{self.output}: {self.frames} frames ({self.kept} decoded, {self.frames - self.kept} held) "
                f"in {self.seconds:.1f} s{extra}")


def decompress(input: str | os.PathLike, output: str | os.PathLike, lossless: bool = False, recover: bool = False,
               model: str | None = None, progress: bool | None = None) -> DecompressSummary:
    """Decode a ``.vsv`` into a video file (.mp4/.mkv) or a folder of PNG frames (``DIR/``)."""
    from tqdm import tqdm

    t0 = time.monotonic()
    out = Path(output)
    to_dir = str(output).endswith(("/", os.sep)) or out.is_dir()
    if not to_dir and out.suffix.lower() not in (".mp4", ".mkv", ".mov", ".avi"):
        raise OutputError(f"output must be .mp4, .mkv or a folder ending in '/': {output}")
    if lossless and not to_dir and out.suffix.lower() != ".mkv":
        raise OutputError("--lossless writes FFV1, which needs a .mkv output")
    check_output_path(out, is_dir=to_dir)
    summary = DecompressSummary(output=str(output))
    with ContainerReader(input, recover=recover) as reader:
        codec = codec_for(reader.header, model)
        h = reader.header
        if to_dir:
            tmpdir = out.with_name(f".{out.name}.part")
            shutil.rmtree(tmpdir, ignore_errors=True)
            tmpdir.mkdir(parents=True)
            writer = _PngFolderWriter(tmpdir, h.time_base)
        else:
            writer = VideoWriter(out, h.width, h.height, h.time_base, h.fps, codec="ffv1" if lossless else "h264")
        bar = tqdm(unit="frame", disable=(progress is False) or None, desc="decompress", leave=False)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for df in iter_decoded(reader, codec):
                    writer.write(df.rgb, df.pts)
                    summary.frames += 1
                    summary.kept += int(df.kept)
                    bar.update(1)
            for w in caught:
                if issubclass(w.category, (TruncatedWarning, CorruptRecordWarning)):
                    log.warning("%s", w.message)
            if summary.frames == 0:
                raise FormatError(f"{input} holds no complete frame")
            writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
        if to_dir:
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmpdir, out)
        summary.truncated_at = reader.truncated_at
        summary.damaged = reader.damaged
    summary.seconds = time.monotonic() - t0
    return summary


class _PngFolderWriter:
    def __init__(self, folder: Path, time_base: Fraction):
        import cv2

        self._cv2 = cv2
        self.folder = folder
        self.tb = time_base
        self.rows = ["index,pts,seconds"]
        self.count = 0

    def write(self, rgb: np.ndarray, pts: int) -> None:
        path = self.folder / f"frame_{self.count:06d}.png"
        if not self._cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
            raise OutputError(f"cannot write {path}")
        self.rows.append(f"{self.count},{pts},{float(pts * self.tb):.6f}")
        self.count += 1

    def close(self) -> None:
        (self.folder / "timestamps.csv").write_text("\n".join(self.rows) + "\n")

    def abort(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def info(path: str | os.PathLike, recover: bool = False) -> dict:
    """Everything a user or program wants to know about a ``.vsv`` file."""
    with ContainerReader(path, recover=recover) as reader:
        h = reader.header
        frames = kept = payload = 0
        segments, gaps, meta = [], [], {}
        first = last = None
        index_entries = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                for rec in reader.records():
                    if isinstance(rec, FrameRecord):
                        kept += 1
                        frames += 1
                        payload += len(rec.payload)
                        first = rec.pts if first is None else min(first, rec.pts)
                        last = rec.pts if last is None else max(last, rec.pts)
                    elif isinstance(rec, SkipRecord):
                        frames += len(rec.pts)
                        if rec.pts:
                            last = max(last if last is not None else rec.pts[-1], max(rec.pts))
                    elif isinstance(rec, JsonRecord):
                        if rec.kind == REC_SEGMENT:
                            segments.append(rec.data)
                        elif rec.kind == REC_GAP:
                            gaps.append(rec.data)
                        elif rec.kind == REC_META:
                            meta.update(rec.data)
                    elif isinstance(rec, IndexRecord):
                        index_entries = len(rec.entries)
                error = None
            except FormatError as exc:
                error = str(exc)
        size = reader.size
        duration = float((last - first) * h.time_base + 1 / h.fps) if first is not None else 0.0
        if error:
            integrity = "corrupt"
        elif reader.damaged:
            integrity = "recovered"
        elif reader.truncated_at is not None:
            integrity = "truncated"
        elif reader.has_index:
            integrity = "complete"
        else:
            integrity = "unfinished"
        return {
            "file": str(path),
            "header": h.to_json(),
            "frames": frames, "kept": kept, "dropped": frames - kept,
            "duration_s": round(duration, 4),
            "bytes": size, "frame_bytes": payload,
            "kbps": round(size * 8 / 1000 / duration, 3) if duration > 0 else 0.0,
            "segments": segments, "gaps": gaps, "summary": meta.get("summary"),
            "integrity": integrity, "error": error,
            "truncated_at": reader.truncated_at,
            "damaged": [{"offset": o, "reason": r} for o, r in reader.damaged],
            "index_entries": index_entries,
            "warnings": [str(w.message) for w in caught],
        }
