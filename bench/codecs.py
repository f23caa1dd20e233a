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
    """``detector``: what codecs that use a detector run (vidsieve's selection and maps, x265-roi's boxes)."""

    name = ""
    settings: list[str] = []

    def __init__(self, detector: str = "auto"):
        self.detector = detector

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

    def regions(self, clip: Clip) -> list[list[tuple[int, int, int, int, float]]] | None:
        """Per frame (every frame, when any), regions ``(x, y, w, h, qoffset)`` handed to the encoder as
        FFmpeg's region-of-interest side data (None: none)."""
        return None

    def run(self, clip: Clip, setting: str) -> Encoded:
        h, w = clip.frames[0].shape[:2]
        buf = io.BytesIO()
        t0 = time.perf_counter()
        regions = self.regions(clip)
        nbytes = 0
        with av.open(buf, mode="w", format="matroska") as out:
            st = out.add_stream(self.encoder, rate=clip.fps)
            st.width, st.height = w - w % 2, h - h % 2
            st.pix_fmt = "yuv420p"
            st.time_base = clip.time_base
            st.options = self.options(setting)
            for i, (rgb, p) in enumerate(zip(clip.frames, clip.pts)):
                f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: st.height, : st.width]), format="rgb24")
                f.pts, f.time_base = p, clip.time_base
                if regions is not None:
                    # In the encoder's format already: a conversion on the way would drop the side data.
                    f = with_regions(f.reformat(format="yuv420p"), regions[i])
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


class X265Roi(X265):
    """x265 told where the objects are: the boxes vidsieve's detector finds, as per-block QP offsets
    (FFmpeg's ``addroi`` filter writes region-of-interest side data; libx265 turns it into its adaptive
    quantisation offsets). Each box (with half vidsieve's margin) gets the QP offset that stands for
    vidsieve's ``--roi-boost`` for its class, and the rest of a frame with boxes the one for the
    policy's ``--roi-background``: 3 QP per quality step (vidsieve's lambdas double per step; HEVC's
    lambda doubles every 3 QP)."""

    name = "x265-roi"

    def regions(self, clip: Clip):
        from ..detection.base import DEFAULT_CLASSES
        from ..detection.registry import load_detector
        from ..rate import RatePolicy
        from ..selection.roi import RoiMap
        from ..selection.score import ScoreConfig

        # The boxes vidsieve's selection would make its maps from (the same classes, confidence and size).
        roi = RoiMap(class_weights=RatePolicy().class_weights, min_score=ScoreConfig().appear_conf)
        det = load_detector(self.detector)
        classes = set(DEFAULT_CLASSES) | {"motion"}
        h, w = clip.frames[0].shape[:2]
        out = []
        for rgb in clip.frames:
            regs = []
            for d in roi.boxes([d for d in det.detect(rgb) if d.cls in classes], (h, w)):
                m = roi.margin / 2
                x1, y1 = max(0, int(d.box[0] - m)), max(0, int(d.box[1] - m))
                x2, y2 = min(w, int(d.box[2] + m + 1)), min(h, int(d.box[3] + m + 1))
                if x2 > x1 and y2 > y1:
                    regs.append((x1, y1, x2 - x1, y2 - y1, -QP_PER_STEP * roi.boost_of(d.cls) / QP_RANGE))
            # Every frame carries regions, a neutral one when it has no boxes: FFmpeg's libx265 wrapper
            # crashes when regions appear after a first frame without any.
            regs.append((0, 0, w, h, -QP_PER_STEP * roi.background / QP_RANGE if regs else 0.0))
            out.append(regs)
        return out


#: x265's QP offsets per vidsieve quality step, and the QP range FFmpeg scales a region's qoffset by (8-bit).
QP_PER_STEP, QP_RANGE = 3.0, 51.0


def with_regions(frame: av.VideoFrame, regions) -> av.VideoFrame:
    """``frame`` with region-of-interest side data (the first region listed wins where they overlap),
    through FFmpeg's ``addroi`` filter."""
    graph = av.filter.Graph()
    last = graph.add_buffer(template=frame)
    for x, y, w, h, q in regions:
        node = graph.add("addroi", f"x={x}:y={y}:w={w}:h={h}:qoffset={max(-1.0, min(1.0, q)):.4f}")
        last.link_to(node)
        last = node
    sink = graph.add("buffersink")
    last.link_to(sink)
    graph.configure()
    graph.push(frame)
    return graph.pull()


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
    roi_boost: float | None = None  # None: the product's defaults
    roi_background: float | None = None

    def __init__(self, detector: str = "auto", model: str | None = None, precision: str = "float"):
        super().__init__(detector)
        self.model, self.precision = model, precision

    def run(self, clip: Clip, setting: str) -> Encoded:
        from ..pipeline import CompressOptions, compress, decoded_frames

        opts = CompressOptions(quality=_value(setting), keep_all=self.keep_all, detector=self.detector,
                               max_frames=len(clip.frames), predict=self.predict,
                               roi_boost=self.roi_boost, roi_background=self.roi_background,
                               precision=self.precision)
        if self.model:
            opts.model = self.model
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "c.vsv"
            t0 = time.perf_counter()
            s = compress(clip.path, out, opts, progress=False)
            enc_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            dec = [f.rgb for f in decoded_frames(out, self.model, precision=self.precision)]
            dec_s = time.perf_counter() - t0
            return Encoded(out.stat().st_size, dec, enc_s, dec_s, s.kept_fraction)


class VidsieveNoRoi(Vidsieve):
    """Selection and predicted frames, one quality per frame (no quality map)."""

    name = "vidsieve-noroi"
    roi_boost = 0.0
    roi_background = 0.0


class VidsieveKeepAll(Vidsieve):
    """Every frame coded, predicted from the ones before it (no selection)."""

    name = "vidsieve-keepall"
    keep_all = True


class VidsieveIntra(Vidsieve):
    """Selection, and every kept frame coded alone: what vidsieve did before predicted frames."""

    name = "vidsieve-intra"
    predict = False
    roi_boost = 0.0  # maps need predicted-frame streams
    roi_background = 0.0


CODECS = {c.name: c for c in (Vidsieve, VidsieveNoRoi, VidsieveKeepAll, VidsieveIntra, X265, X265Roi, X265LowDelay,
                              X264, X264LowDelay, Jpeg, SvtAv1)}
