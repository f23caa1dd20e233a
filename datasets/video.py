"""Reading and writing video with PyAV.

Every source becomes a stream of :class:`Frame` (RGB uint8 plus its pts in a
known time base), whatever its pixel format (grayscale, 10-bit, YUV 4:2:0 ...):
``VideoFrame.to_ndarray(format="rgb24")`` lets FFmpeg's swscale do the
conversion. A still image opens as a one-frame video.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from ..errors import InputError, OutputError

log = logging.getLogger(__name__)

STILL_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
MAX_PIXELS = 8192 * 8192


@dataclass
class Frame:
    rgb: np.ndarray  # HxWx3 uint8
    pts: int  # in the reader's time base
    index: int


class VideoReader:
    """Frames of a file or URL that PyAV opens.

    Args:
        source: path or URL.
        options: FFmpeg demuxer options (e.g. ``{"rtsp_transport": "tcp"}``).
        timeout: seconds before a network read gives up.
    """

    def __init__(self, source: str | os.PathLike, options: dict | None = None,
                 timeout: float | None = None):
        self.source = str(source)
        is_url = "://" in self.source
        if not is_url:
            p = Path(self.source)
            if not p.exists():
                raise InputError(f"input not found: {self.source}")
            if p.is_dir():
                raise InputError(f"input is a directory, not a video: {self.source}")
            if not os.access(p, os.R_OK):
                raise InputError(f"input is not readable: {self.source}")
            if p.stat().st_size == 0:
                raise InputError(f"input is empty: {self.source}")
        self._still = (not is_url) and Path(self.source).suffix.lower() in STILL_EXTS
        try:
            kw = {"options": options or {}}
            if timeout is not None:
                kw["timeout"] = timeout
            self.container = av.open(self.source, **kw)
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot open {self.source} as a video: {_reason(exc)}") from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"no video stream in {self.source}")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        cc = self.stream.codec_context
        self.width, self.height = int(cc.width or 0), int(cc.height or 0)
        if self.width * self.height > MAX_PIXELS:
            self.container.close()
            raise InputError(f"frame size {self.width}x{self.height} is larger than supported")
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        self.fps = Fraction(rate) if rate else Fraction(25)
        if self._still or self.fps <= 0:
            self.fps = Fraction(1) if self._still else Fraction(25)
        tb = self.stream.time_base
        self.time_base = Fraction(tb) if tb else Fraction(1, 1000)
        if self._still:
            self.time_base = Fraction(1, 1)

    # Frames may lack pts (raw streams, some AVI); synthesize from the rate.
    def __iter__(self) -> Iterator[Frame]:
        index = 0
        last_pts = None
        step = max(1, round(1 / (self.fps * self.time_base))) if self.fps else 1
        try:
            for frame in self.container.decode(self.stream):
                pts = frame.pts
                if self._still:
                    pts = index
                elif pts is None:
                    pts = 0 if last_pts is None else last_pts + step
                elif last_pts is not None and pts <= last_pts:
                    # Non-increasing pts (broken muxers): keep order, keep monotonic.
                    pts = last_pts + 1
                rgb = frame.to_ndarray(format="rgb24")
                if self.width == 0:
                    self.height, self.width = rgb.shape[:2]
                yield Frame(rgb=rgb, pts=int(pts), index=index)
                last_pts = int(pts)
                index += 1
        except av.error.FFmpegError as exc:
            if index == 0:
                raise InputError(f"cannot decode {self.source}: {_reason(exc)}") from None
            log.warning("stopped reading %s after %d frames: %s", self.source, index, _reason(exc))

    def frame_count_hint(self) -> int:
        """Frames the file says it holds: the stream's count where the container keeps one (MP4), else its
        duration times its rate (Matroska, AVI); 0 when neither is known (live streams)."""
        if self._still:
            return 1
        if self.stream.frames:
            return int(self.stream.frames)
        if "://" in self.source:
            return 0
        duration = self.duration_hint()
        return max(0, round(duration * float(self.fps))) if duration else 0

    def duration_hint(self) -> float | None:
        if self.stream.duration and self.time_base:
            return float(self.stream.duration * self.time_base)
        if self.container.duration:
            return self.container.duration / av.time_base
        return None

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _reason(exc: BaseException) -> str:
    s = getattr(exc, "strerror", None) or str(exc)
    return s.strip().splitlines()[0] if s else type(exc).__name__


class VideoWriter:
    """Writes RGB frames with given pts to a video file through a temp name.

    ``codec``: "h264" (x264, CRF 16, for viewing), "ffv1" (lossless) or any
    PyAV encoder. The file appears under its final name only after ``close()``.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, time_base: Fraction,
                 fps: Fraction, codec: str = "h264", options: dict | None = None):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.part{self.path.suffix}")
        try:
            self.container = av.open(str(self.tmp), mode="w", format=_format_for(self.path))
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot write {self.path}: {_reason(exc)}") from None
        name = {"h264": "libx264", "ffv1": "ffv1"}.get(codec, codec)
        self.stream = self.container.add_stream(name, rate=fps)
        # x264/yuv420p needs even sizes; FFV1 keeps everything (RGB, any size).
        if name == "ffv1":
            self.stream.pix_fmt = "bgr0"
            self.stream.options = {"level": "3", **(options or {})}
        else:
            self.stream.pix_fmt = "yuv444p" if (width % 2 or height % 2) else "yuv420p"
            self.stream.options = {"crf": "16", "preset": "medium", **(options or {})}
        self.stream.width, self.stream.height = width, height
        self.stream.time_base = time_base
        self.stream.codec_context.time_base = time_base
        self.width, self.height = width, height
        self.time_base = time_base  # the muxer may change stream.time_base after the header
        self.count = 0

    def write(self, rgb: np.ndarray, pts: int) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = int(pts)
        frame.time_base = self.time_base
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {_reason(exc)}") from None
        self.count += 1

    def close(self) -> None:
        try:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            self.container.close()
        except (av.error.FFmpegError, OSError) as exc:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {_reason(exc)}") from None
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass
        self.tmp.unlink(missing_ok=True)


def _format_for(path: Path) -> str | None:
    return {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov", ".avi": "avi", ".ts": "mpegts"}.get(
        path.suffix.lower())
