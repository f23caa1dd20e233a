"""The decompress road: container reader -> stream decoder -> hold-fill of dropped frames -> writer.

Dropped frames repeat the last decoded one, so the output has the input's
frame count and timestamps.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from ..codec import DEFAULT_PRECISION
from ..container import ContainerReader, CorruptRecordWarning, FrameRecord, Header, SkipRecord, TruncatedWarning
from ..codec.latent_codecs import DivergenceError
from ..codec.registry import stream_decoder
from ..datasets.video import VideoWriter
from ..errors import FormatError, ModelError, OutputError
from .encoder import load_codec
from .paths import check_output_path

if TYPE_CHECKING:
    from ..codec.frame_codec import FrameCodec

log = logging.getLogger(__name__)


@dataclass
class DecodedFrame:
    rgb: np.ndarray
    pts: int
    kept: bool


def codec_for(header: Header, model: str | None = None, precision: str = DEFAULT_PRECISION) -> "FrameCodec":
    """The codec a file's header names, checked against its weights hash (``model`` overrides the name),
    its transforms at ``precision`` (a stream decodes at either)."""
    if model is None and header.model.startswith("file:"):
        raise ModelError(f"this file was coded with the weights file {header.model[5:]} "
                         f"(sha256 {header.weights_sha256[:12]}...); pass --model with that file")
    codec = load_codec(model or header.model, precision=precision)
    if model is None and codec.weights_sha256 != header.weights_sha256:
        raise ModelError(f"this file was coded with {header.model} weights {header.weights_sha256[:12]}..., "
                         f"but the installed weights are {codec.weights_sha256[:12]}...; pass --model with "
                         f"the original weights file")
    return codec


def iter_decoded(reader: ContainerReader, codec: "FrameCodec", conditional: str | None = None,
                 start_pts: int | None = None) -> Iterable[DecodedFrame]:
    """Frames in display order: coded frames decoded, skipped pts hold the last decoded frame.

    After damage that ``recover`` read past, or a predicted frame whose check value says the
    decoder's references differ from the encoder's, predicted frames have lost their references:
    they hold the last decoded frame too, until the next intra frame (without ``recover``, such a
    frame stops decoding with a one-line error). ``start_pts`` seeks:
    decoding starts at the last intra frame at or before it (from the file's index; a file
    without one is read from its start), and frames before it are decoded but not given."""
    stream = stream_decoder(codec, reader.header.stream, conditional)
    start = None
    if start_pts is not None:
        entries = [e for e in (reader.read_index() or []) if e[0] <= start_pts]
        start = max(entries)[1] if entries else None
    for df in _decoded(reader, stream, start):
        if start_pts is None or df.pts >= start_pts:
            yield df


def _decoded(reader: ContainerReader, stream, start: int | None) -> Iterable[DecodedFrame]:
    last = None
    damaged, lost = 0, False
    for rec in reader.records(start):
        if len(reader.damaged) != damaged:
            damaged, lost = len(reader.damaged), True
            stream.reset()
        if isinstance(rec, FrameRecord):
            if lost and not rec.intra:
                if last is not None:
                    yield DecodedFrame(last, rec.pts, False)
                continue
            try:
                last = stream.decode(rec.payload, rec.pts, rec.intra, None if rec.intra else rec.ref_pts)
            except DivergenceError as exc:
                if not reader.recover:
                    raise DivergenceError(f"{reader.path}: frame at byte {rec.offset}: {exc}; --recover resumes "
                                          "at the next intra frame") from None
                # The decoder's state is not the encoder's: hold the last good picture until an intra frame.
                log.warning("%s: frame at byte %d: %s; resuming at the next intra frame", reader.path, rec.offset, exc)
                stream.reset()
                lost = True
                if last is not None:
                    yield DecodedFrame(last, rec.pts, False)
                continue
            except FormatError as exc:
                raise FormatError(f"{reader.path}: bad frame payload at byte {rec.offset}: {exc}") from None
            lost = False
            yield DecodedFrame(last, rec.pts, True)
        elif isinstance(rec, SkipRecord):
            if last is None:
                continue  # skipped frames before any decoded one (only after recovery)
            for p in rec.pts:
                yield DecodedFrame(last, p, False)


def decoded_frames(path: str | os.PathLike, model: str | None = None,
                   start_s: float | None = None, precision: str = DEFAULT_PRECISION) -> Iterator[DecodedFrame]:
    """Every frame a ``.vsv`` file represents, in display order (the file's own codec unless ``model``),
    from ``start_s`` seconds into the file when given."""
    with ContainerReader(path) as reader:
        yield from iter_decoded(reader, codec_for(reader.header, model, precision), start_pts=_start_pts(reader, start_s))


def _start_pts(reader: ContainerReader, start_s: float | None) -> int | None:
    """The pts ``start_s`` seconds after the file's first frame (None for no start)."""
    return None if not start_s else _first_pts(reader) + int(round(start_s / reader.header.time_base))


def _first_pts(reader: ContainerReader) -> int:
    """The file's first frame's pts: from its index, else its first frame record."""
    entries = reader.read_index()
    if entries:
        return min(p for p, _ in entries)
    return next((r.pts for r in reader.records() if isinstance(r, FrameRecord)), 0)


def frame_total(path: str | os.PathLike, recover: bool = False) -> int | None:
    """How many frames a file represents, from its records alone (no decoding: a fraction of a second
    for an hour of video); None when the file is damaged beyond what ``recover`` reads past."""
    n = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with ContainerReader(path, recover=recover) as reader:
                for rec in reader.records():
                    if isinstance(rec, FrameRecord):
                        n += 1
                    elif isinstance(rec, SkipRecord):
                        n += len(rec.pts)
        except FormatError:
            return None
    return n


@dataclass
class DecompressSummary:
    output: str
    frames: int = 0
    coded: int = 0  # of them, decoded from a frame of their own (the rest held)
    seconds: float = 0.0
    truncated_at: int | None = None
    damaged: list = field(default_factory=list)

    def line(self) -> str:
        extra = ""
        if self.truncated_at is not None:
            extra += f" | input cut off at byte {self.truncated_at}"
        if self.damaged:
            extra += f" | skipped {len(self.damaged)} damaged region(s)"
        return (f"{self.output}: {self.frames} frames ({self.coded} coded, {self.frames - self.coded} held) "
                f"in {self.seconds:.1f} s{extra}")


def decompress(input: str | os.PathLike, output: str | os.PathLike, lossless: bool = False, recover: bool = False,
               model: str | None = None, progress: bool | None = None, start_s: float | None = None,
               duration_s: float | None = None, precision: str = DEFAULT_PRECISION) -> DecompressSummary:
    """Decode a ``.vsv`` into a video file (.mp4/.mkv) or a folder of PNG frames (``DIR/``); ``start_s`` and
    ``duration_s`` cut a stretch out (decoding starts at the intra frame before it, found in the index)."""
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
        codec = codec_for(reader.header, model, precision)
        h = reader.header
        if to_dir:
            tmpdir = out.with_name(f".{out.name}.part")
            shutil.rmtree(tmpdir, ignore_errors=True)
            tmpdir.mkdir(parents=True)
            writer = PngFolderWriter(tmpdir, h.time_base)
        else:
            writer = VideoWriter(out, h.width, h.height, h.time_base, h.fps, codec="ffv1" if lossless else "h264")
        start_pts = _start_pts(reader, start_s)
        end_pts = None if duration_s is None else \
            _first_pts(reader) + int(round(((start_s or 0.0) + duration_s) / h.time_base))
        cut = start_s is not None or duration_s is not None
        total = frame_total(input, recover) if progress is not False and not cut else None
        bar = tqdm(total=total, unit="frame", disable=None if progress is None else not progress, desc="decompress", leave=False)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for df in iter_decoded(reader, codec, start_pts=start_pts):
                    if end_pts is not None and df.pts >= end_pts:
                        break
                    writer.write(df.rgb, df.pts)
                    summary.frames += 1
                    summary.coded += int(df.kept)
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


class PngFolderWriter:
    """Decoded frames as numbered PNGs and a ``timestamps.csv``, in a folder that is renamed into place when complete."""

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
