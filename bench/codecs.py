"""Codecs under comparison, behind one small interface.

Each codec encodes a clip (a list of RGB frames with timestamps) at one
setting and hands back the number of bytes and the decoded frames, one per
input frame (hold-filled where the codec drops frames). A new codec is one
class here and one entry in :data:`CODECS`.
"""

from __future__ import annotations

import io
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclass
class Clip:
    name: str
    frames: list[np.ndarray]
    pts: list[int]
    time_base: Fraction
    fps: Fraction
    path: str

    @property
    def duration(self) -> float:
        return float((self.pts[-1] - self.pts[0]) * self.time_base + 1 / self.fps)


@dataclass
class Encoded:
    bytes: int
    decoded: list[np.ndarray]
    enc_s: float
    dec_s: float
    kept_fraction: float = 1.0


class BenchCodec:
    name = ""
    settings: list[str] = []

    def available(self) -> bool:
        return True

    def sweep(self, points: int) -> list[str]:
        s = self.settings
        if points >= len(s):
            return list(s)
        idx = np.linspace(0, len(s) - 1, points).round().astype(int)
        return [s[i] for i in idx]

    def run(self, clip: Clip, setting: str) -> Encoded:
        raise NotImplementedError


def _value(setting: str) -> float:
    return float(setting.split("=", 1)[1])


class PyAVCodec(BenchCodec):
    """A classical encoder through PyAV's FFmpeg, yuv420p, default GOP.

    Encoders run with one frame thread, as vidsieve's points do: with several, x264's rate control sees
    frames in an order that depends on thread timing (the same CRF gave 3320 to 3717 bytes on one clip
    over six runs), and x265's frame-thread count follows the machine's cores, so a sweep spread over
    machines would not give the same points."""

    encoder = ""
    key = "crf"
    extra: dict = {}

    def available(self) -> bool:
        try:
            av.codec.Codec(self.encoder, "w")
            return True
        except Exception:
            return False

    def options(self, setting: str) -> dict:
        return {self.key: str(int(_value(setting))), **self.extra}

    def run(self, clip: Clip, setting: str) -> Encoded:
        h, w = clip.frames[0].shape[:2]
        buf = io.BytesIO()
        t0 = time.perf_counter()
        nbytes = 0
        with av.open(buf, mode="w", format="matroska") as out:
            st = out.add_stream(self.encoder, rate=clip.fps)
            st.width, st.height = w - w % 2, h - h % 2
            st.pix_fmt = "yuv420p"
            st.time_base = clip.time_base
            st.options = self.options(setting)
            for rgb, p in zip(clip.frames, clip.pts):
                f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: st.height, : st.width]), format="rgb24")
                f.pts, f.time_base = p, clip.time_base
                for pkt in st.encode(f):
                    nbytes += pkt.size
                    out.mux(pkt)
            for pkt in st.encode(None):
                nbytes += pkt.size
                out.mux(pkt)
        enc_s = time.perf_counter() - t0
        buf.seek(0)
        t0 = time.perf_counter()
        dec = []
        with av.open(buf, mode="r") as c:
            for f in c.decode(c.streams.video[0]):
                rgb = f.to_ndarray(format="rgb24")
                if rgb.shape[:2] != (h, w):
                    rgb = np.pad(rgb, ((0, h - rgb.shape[0]), (0, w - rgb.shape[1]), (0, 0)), mode="edge")
                dec.append(rgb)
        dec_s = time.perf_counter() - t0
        return Encoded(nbytes, dec, enc_s, dec_s)


class X265(PyAVCodec):
    name, encoder = "x265", "libx265"
    settings = ["crf=22", "crf=27", "crf=32", "crf=37", "crf=42", "crf=47"]
    extra = {"preset": "medium", "x265-params": "log-level=error:frame-threads=1"}


class X265LowDelay(X265):
    """Low-delay configuration as in CompressAI's video benchmark: no B-frames, zerolatency."""

    name = "x265-lowdelay"
    extra = {"preset": "medium", "tune": "zerolatency", "x265-params": "bframes=0:log-level=error:frame-threads=1"}


class X264(PyAVCodec):
    name, encoder = "x264", "libx264"
    settings = ["crf=18", "crf=23", "crf=28", "crf=33", "crf=38", "crf=43"]
    extra = {"preset": "medium", "threads": "1"}


class X264LowDelay(X264):
    name = "x264-lowdelay"
    extra = {"preset": "medium", "tune": "zerolatency", "bf": "0", "threads": "1"}


class SvtAv1(PyAVCodec):
    name, encoder = "svtav1", "libsvtav1"
    settings = ["crf=25", "crf=33", "crf=41", "crf=49", "crf=57"]
    extra = {"preset": "8"}

    def run(self, clip, setting):
        import os

        os.environ.setdefault("SVT_LOG", "1")  # errors only; SVT prints its whole config otherwise
        return super().run(clip, setting)


class Jpeg(BenchCodec):
    """Every frame as a baseline JPEG (Pillow, 4:2:0)."""

    name = "jpeg"
    settings = ["q=10", "q=25", "q=45", "q=65", "q=80", "q=92"]

    def run(self, clip: Clip, setting: str) -> Encoded:
        from PIL import Image

        q = int(_value(setting))
        t0 = time.perf_counter()
        blobs = []
        for rgb in clip.frames:
            b = io.BytesIO()
            Image.fromarray(rgb).save(b, format="JPEG", quality=q)
            blobs.append(b.getvalue())
        enc_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        dec = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs]
        return Encoded(sum(map(len, blobs)), dec, enc_s, time.perf_counter() - t0)


class Vidsieve(BenchCodec):
    """Our pipeline: detection-driven selection + the learned codec, frames predicted from the ones
    before them (``quality`` = active quality)."""

    name = "vidsieve"
    settings = ["quality=1", "quality=2.5", "quality=4", "quality=5.5", "quality=7", "quality=8"]
    keep_all = False
    predict = True

    def __init__(self, detector: str = "auto", model: str | None = None):
        self.detector, self.model = detector, model

    def run(self, clip: Clip, setting: str) -> Encoded:
        from ..pipeline import CompressOptions, compress, decoded_frames

        opts = CompressOptions(quality=_value(setting), keep_all=self.keep_all, detector=self.detector,
                               max_frames=len(clip.frames), predict=self.predict)
        if self.model:
            opts.model = self.model
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "c.vsv"
            t0 = time.perf_counter()
            s = compress(clip.path, out, opts, progress=False)
            enc_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            dec = [f.rgb for f in decoded_frames(out, self.model)]
            dec_s = time.perf_counter() - t0
            return Encoded(out.stat().st_size, dec, enc_s, dec_s, s.kept_fraction)


class VidsieveKeepAll(Vidsieve):
    """Every frame coded, predicted from the ones before it (no selection)."""

    name = "vidsieve-keepall"
    keep_all = True


class VidsieveIntra(Vidsieve):
    """Selection, and every kept frame coded alone: what vidsieve did before predicted frames."""

    name = "vidsieve-intra"
    predict = False


CODECS = {c.name: c for c in (Vidsieve, VidsieveKeepAll, VidsieveIntra, X265, X265LowDelay, X264, X264LowDelay,
                              Jpeg, SvtAv1)}
