"""Codecs under comparison, behind one small interface: one table for video and still images.

Each codec encodes a clip (a list of RGB frames with timestamps) at one
setting and hands back the number of bytes and the decoded frames, one per
input frame (hold-filled where the codec drops frames). A codec that also codes
a still image lists its ``still_settings`` and codes one in :meth:`BenchCodec.code_still`
(``vidsieve bench-image``). A new codec is one class here and one entry in :data:`CODECS`.
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

from ..codec import DEFAULT_BLOCK_PX, DEFAULT_LOOKAHEAD


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
    coded_fraction: float = 1.0  # of the input frames, those with a coded frame of their own
    selected_fraction: float | None = None  # those a selector picked (None: no selector)


class BenchCodec:
    """``detector``: what codecs that use a detector run (vidsieve's selection and maps, x265-roi's boxes)."""

    name = ""
    settings: list[str] = []
    #: Settings for a still image (empty: a video-only codec).
    still_settings: list[str] = []
    #: Whether its points make a rate curve (BD-rate, the fixed-rate table); a sanity row's single point does not.
    curve = True

    def __init__(self, detector: str = "auto"):
        self.detector = detector

    @property
    def still_name(self) -> str:
        """What its still-image curve is called."""
        return self.name

    def code_still(self, img: np.ndarray, setting: str) -> Encoded:
        """One picture at ``setting``: its coded size, the decoded picture (the one item of ``decoded``), times."""
        raise NotImplementedError

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


def _timed(encode, decode) -> Encoded:
    """One picture: ``encode()`` gives its bytes, ``decode(bytes)`` the picture."""
    t0 = time.perf_counter()
    data = encode()
    t1 = time.perf_counter()
    dec = decode(data)
    return Encoded(len(data), [dec], t1 - t0, time.perf_counter() - t1)


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
    #: What the encoder codes: 4:2:0 (even sizes; an odd edge is cropped, then repeated back) or RGB.
    pix_fmt = "yuv420p"

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
            sub = self.pix_fmt == "yuv420p"
            st.width, st.height = (w - w % 2, h - h % 2) if sub else (w, h)
            st.pix_fmt = self.pix_fmt
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


class Lossless(PyAVCodec):
    """Every frame losslessly (FFV1, RGB): the sanity row. Its detection survival must read 1.0, since the
    decoded pictures are the originals; anything less is the measurement, not a codec."""

    name, encoder = "ffv1-lossless", "ffv1"
    settings = ["lossless"]
    curve = False
    pix_fmt = "bgr0"

    def options(self, setting: str) -> dict:
        return {}


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


#: The JPEG qualities of every JPEG curve, video frames and still images alike.
JPEG_QUALITIES = (10, 20, 30, 45, 60, 75, 85, 92)
#: WebP's, for still images.
WEBP_QUALITIES = (5, 15, 30, 50, 70, 85, 95)


def pil_encode(img: np.ndarray, fmt: str, quality: int) -> bytes:
    """One picture through Pillow: ``JPEG`` (baseline, 4:2:0) or ``WEBP`` (method 6, its slowest and best)."""
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(img).save(b, format=fmt, quality=int(quality), **({"method": 6} if fmt == "WEBP" else {}))
    return b.getvalue()


def pil_decode(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


class PilCodec(BenchCodec):
    """Every frame as a still image through Pillow (:func:`pil_encode`)."""

    fmt = ""

    def code_still(self, img: np.ndarray, setting: str) -> Encoded:
        return _timed(lambda: pil_encode(img, self.fmt, int(_value(setting))), pil_decode)

    def run(self, clip: Clip, setting: str) -> Encoded:
        q = int(_value(setting))
        t0 = time.perf_counter()
        blobs = [pil_encode(rgb, self.fmt, q) for rgb in clip.frames]
        enc_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        dec = [pil_decode(b) for b in blobs]
        return Encoded(sum(map(len, blobs)), dec, enc_s, time.perf_counter() - t0)


class Jpeg(PilCodec):
    """Baseline JPEG, 4:2:0."""

    name, fmt = "jpeg", "JPEG"
    settings = still_settings = [f"q={q}" for q in JPEG_QUALITIES]


class WebP(PilCodec):
    """WebP (lossy, method 6)."""

    name, fmt = "webp", "WEBP"
    settings = still_settings = [f"q={q}" for q in WEBP_QUALITIES]


class ZooCodec(BenchCodec):
    """A CompressAI zoo model (every frame alone), where its pretrained weights are on this machine."""

    arch = ""

    def _qualities(self) -> list[int]:
        from ..codec.zoo import zoo_available

        return [q for q in range(1, 9) if zoo_available(self.arch, q)]

    def available(self) -> bool:
        return bool(self._qualities())

    @property
    def settings(self) -> list[str]:  # type: ignore[override]
        return [f"quality={q}" for q in self._qualities()]

    still_settings = settings

    def _codec(self):
        if getattr(self, "_loaded", None) is None:
            from ..codec.registry import load_codec

            self._loaded = load_codec(self.arch)
        return self._loaded

    def code_still(self, img: np.ndarray, setting: str) -> Encoded:
        return _timed(lambda: self._codec().encode(img, int(_value(setting))), self._codec().decode)

    def run(self, clip: Clip, setting: str) -> Encoded:
        t0 = time.perf_counter()
        blobs = [self._codec().encode(f, int(_value(setting))) for f in clip.frames]
        enc_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        dec = [self._codec().decode(b) for b in blobs]
        return Encoded(sum(map(len, blobs)), dec, enc_s, time.perf_counter() - t0)


def _zoo_codecs() -> list[type]:
    from ..codec.zoo import ZOO_ARCHS

    return [type(f"Zoo_{a.replace('-', '_')}", (ZooCodec,), {"name": a, "arch": a, "__doc__": ZooCodec.__doc__})
            for a in ZOO_ARCHS]


class Vidsieve(BenchCodec):
    """Our pipeline: detection-driven selection + the learned codec, frames predicted from the ones
    before them (``quality`` = active quality)."""

    name = "vidsieve"
    settings = ["quality=1", "quality=2.5", "quality=4", "quality=5.5", "quality=7", "quality=8"]
    keep_all = False
    predict = True
    roi_boost: float | None = None  # None: the product's defaults
    roi_background: float | None = None
    block_px = DEFAULT_BLOCK_PX
    scale = 1.0  # coded at this fraction of the clip's size
    motion = False  # predicted frames move their references by vectors
    lookahead = DEFAULT_LOOKAHEAD  # frames looked ahead to raise the blocks later frames copy
    conditional: str | None = None  # the conditional model of predicted frames (None: the shipped default)
    stabilise = True  # frames that moved as a whole coded aligned and shown moved

    still_settings = [f"quality={q}" for q in range(1, 9)]

    def __init__(self, detector: str = "auto", model: str | None = None, precision: str = "float"):
        super().__init__(detector)
        self.model, self.precision = model, precision
        self._frame_codec = None

    @property
    def still_name(self) -> str:
        from ..codec import DEFAULT_MODEL

        return self.model or DEFAULT_MODEL

    def code_still(self, img: np.ndarray, setting: str) -> Encoded:
        """The frame codec alone, as ``vidsieve compress IMAGE`` codes a still (docs/RESULTS.md)."""
        if self._frame_codec is None:
            from ..codec.registry import load_codec

            self._frame_codec = load_codec(self.still_name, precision=self.precision)
        return _timed(lambda: self._frame_codec.encode(img, _value(setting)), self._frame_codec.decode)

    def run(self, clip: Clip, setting: str) -> Encoded:
        from ..pipeline import CompressOptions, compress, decoded_frames

        opts = CompressOptions(quality=_value(setting), keep_all=self.keep_all, detector=self.detector,
                               max_frames=len(clip.frames), predict=self.predict,
                               roi_boost=self.roi_boost, roi_background=self.roi_background,
                               precision=self.precision, block_px=self.block_px, scale=self.scale,
                               motion=self.motion, lookahead=self.lookahead, conditional=self.conditional,
                               stabilise=self.stabilise)
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
            return Encoded(out.stat().st_size, dec, enc_s, dec_s, s.coded_fraction,
                           None if self.keep_all else s.selected_fraction)


class VidsieveNoRoi(Vidsieve):
    """Selection and predicted frames, one quality per frame (no quality map)."""

    still_settings: list[str] = []  # stills are the frame codec's, listed once under vidsieve

    name = "vidsieve-noroi"
    roi_boost = 0.0
    roi_background = 0.0


class VidsieveKeepAll(Vidsieve):
    """Every frame coded, predicted from the ones before it (no selection)."""

    still_settings: list[str] = []  # stills are the frame codec's, listed once under vidsieve

    name = "vidsieve-keepall"
    keep_all = True


class VidsieveKeepAll16(VidsieveKeepAll):
    """Every frame coded and predicted, modes down to 16-pixel blocks (an ablation of finer blocks)."""

    name = "vidsieve-keepall-16px"
    block_px = 16


class VidsieveKeepAllHalf(VidsieveKeepAll):
    """Every frame coded and predicted at half the clip's width and height, scaled back up by the decoder:
    the low rates (20-50 kbps) of long archives."""

    name = "vidsieve-keepall-half"
    scale = 0.5
    settings = ["quality=1", "quality=2.5", "quality=4", "quality=5.5"]


class VidsieveKeepAllMotion(VidsieveKeepAll):
    """Every frame coded, predicted frames moving their references by a vector per block (an ablation)."""

    name = "vidsieve-keepall-motion"
    motion = True


class VidsieveKeepAllNoLookahead(VidsieveKeepAll):
    """Every frame coded and predicted, without the look-ahead that raises the blocks later frames copy
    (an ablation; live ingest codes this way)."""

    name = "vidsieve-keepall-nolookahead"
    lookahead = 0


class VidsieveKeepAllContext(VidsieveKeepAll):
    """Every frame coded and predicted, the difference in two checkerboard passes with the conditional model
    with context, ``vidsieve-inter-ctx`` (an ablation: the default codes it in one)."""

    name = "vidsieve-keepall-ctx"
    conditional = "vidsieve-inter-ctx"


class VidsieveKeepAllNoStabilise(VidsieveKeepAll):
    """Every frame coded and predicted, frames that moved as a whole coded as they are (an ablation of the
    camera-shake handling)."""

    name = "vidsieve-keepall-nostab"
    stabilise = False


class VidsieveIntra(Vidsieve):
    """Selection, and every kept frame coded alone: what vidsieve did before predicted frames."""

    still_settings: list[str] = []  # stills are the frame codec's, listed once under vidsieve

    name = "vidsieve-intra"
    predict = False
    roi_boost = 0.0  # maps need predicted-frame streams
    roi_background = 0.0


CODECS = {c.name: c for c in (Vidsieve, VidsieveNoRoi, VidsieveKeepAll, VidsieveKeepAll16, VidsieveKeepAllHalf,
                              VidsieveKeepAllMotion, VidsieveKeepAllNoLookahead, VidsieveKeepAllContext,
                              VidsieveKeepAllNoStabilise, VidsieveIntra,
                              X265, X265Roi,
                              X265LowDelay, X264, X264LowDelay, Jpeg, WebP, SvtAv1, Lossless, *_zoo_codecs())}
#: Codecs ``vidsieve bench`` runs unless told: the zoo's intra-only models and WebP are for still images.
VIDEO_DEFAULT = [n for n, c in CODECS.items() if not issubclass(c, (ZooCodec, WebP))]
