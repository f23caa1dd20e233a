"""Stream coders: the stateful side of the codec, one per ``.vsv`` stream.

A :class:`~.frame_codec.FrameCodec` codes one picture and forgets it. A
stream encoder codes a sequence and may hold state that its decoder holds too
(reference latents for predicted frames); each coded frame says whether it
stands alone (``intra``); a predicted one refers to the frame coded before it,
whose pts the container records, so readers can seek to and recover at intra
frames.

:class:`IntraStreamEncoder` / :class:`IntraStreamDecoder` code every frame
alone, the behaviour every existing file has. The registry
(:func:`~.registry.stream_encoder`, :func:`~.registry.stream_decoder`) picks a
file's coders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from . import SCALE_MIN
from .frame_codec import FrameCodec


@dataclass
class StreamFrame:
    """One coded frame of a stream."""

    data: bytes
    recon: np.ndarray | None  # what the stream decoder will output for it
    intra: bool = True  # False: predicted from the frame coded before it


class StreamEncoder(Protocol):
    """Codes the frames of one stream in order, holding what its decoder will hold."""

    name: str
    weights_sha256: str

    #: Whether :meth:`encode` honours ``roi`` (quality maps).
    maps: bool

    def encode(self, frame: np.ndarray, quality: float, pts: int, boxes=None, intra: bool = False,
               roi: np.ndarray | None = None, referenced: bool = True,
               reuse: np.ndarray | None = None) -> StreamFrame:
        """One frame. ``boxes``: pixel boxes (x1, y1, x2, y2) of what the detector saw in it (None: unknown);
        ``intra``: code it alone (a scene cut); ``roi``: quality offsets per 64 x 64 block, in quarter steps
        (:mod:`.quality_map`), for the objects; ``referenced``: whether the next coded frame may be predicted
        from this one (False for a stream's last frame, or one before a scene cut; True where that is not
        known); ``reuse``: offsets like ``roi``'s for the blocks later frames will copy (a predicted frame
        adds them to ``roi``'s; :mod:`vidsieve.pipeline.lookahead`)."""

    def describe(self) -> dict:
        """What a decoder needs to know of this coder (stored in the file's header)."""

    def reset(self) -> None:
        """Forget every reference: the next frame is coded alone (seek points, recovery)."""


class StreamDecoder(Protocol):
    """Decodes the frames of one stream in order."""

    def decode(self, data: bytes, pts: int, intra: bool = True, ref_pts: int | None = None) -> np.ndarray:
        ...

    def reset(self) -> None:
        """Forget every reference (after damage: decoding restarts at the next intra frame)."""


class IntraStreamEncoder:
    """Every frame coded alone by a :class:`~.frame_codec.FrameCodec`, at one quality (no maps)."""

    maps = False

    def __init__(self, codec: FrameCodec):
        self.codec = codec
        self.name, self.weights_sha256 = codec.name, codec.weights_sha256

    def encode(self, frame: np.ndarray, quality: float, pts: int, boxes=None, intra: bool = False,
               roi: np.ndarray | None = None, referenced: bool = True,
               reuse: np.ndarray | None = None) -> StreamFrame:
        enc = self.codec.encode_batch([frame], [quality])[0]
        return StreamFrame(enc.data, enc.recon)

    def describe(self) -> dict:
        return {}  # every frame alone: what files without a description are

    def reset(self) -> None:
        pass


class IntraStreamDecoder:
    """Decodes streams whose frames all stand alone."""

    def __init__(self, codec: FrameCodec):
        self.codec = codec

    def decode(self, data: bytes, pts: int, intra: bool = True, ref_pts: int | None = None) -> np.ndarray:
        if not intra:
            from ..errors import FormatError

            raise FormatError(f"frame at pts {pts} is predicted from pts {ref_pts}, but {self.codec.name} "
                              "codes frames alone")
        return self.codec.decode(data)

    def reset(self) -> None:
        pass


def coded_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The size frames of ``width`` x ``height`` are coded at for ``scale`` (even, at least 16 pixels)."""
    if not SCALE_MIN <= scale <= 1:
        raise ValueError(f"scale must be between {SCALE_MIN:g} and 1, got {scale!r}")
    if scale == 1:
        return width, height

    def side(n: int) -> int:
        return min(n, max(16, 2 * round(n * scale / 2)))

    return side(width), side(height)


def downscale(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` at ``size`` (width, height), area-averaged so nothing aliases."""
    import cv2

    if (frame.shape[1], frame.shape[0]) == size:
        return frame
    return cv2.resize(np.ascontiguousarray(frame), size, interpolation=cv2.INTER_AREA)


def upscale(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A decoded picture back at ``size`` (width, height), bicubic."""
    import cv2

    if (frame.shape[1], frame.shape[0]) == size:
        return frame
    return cv2.resize(np.ascontiguousarray(frame), size, interpolation=cv2.INTER_CUBIC)


def scaled_blocks(roi: np.ndarray, shown: tuple[int, int], coded: tuple[int, int], block: int = 64) -> np.ndarray:
    """A per-block map of the shown picture (``block`` pixels a block) on the coded picture's blocks: each
    coded block takes the largest value among the shown blocks it covers, so a boosted object keeps its boost."""
    (sw, sh), (cw, ch) = shown, coded
    hb, wb = -(-ch // block), -(-cw // block)
    out = np.empty((hb, wb), dtype=roi.dtype)
    for i in range(hb):
        r0 = min(roi.shape[0] - 1, i * block * sh // ch // block)
        r1 = max(r0 + 1, min(roi.shape[0], -(-min(ch, (i + 1) * block) * sh // ch // block)))
        for j in range(wb):
            c0 = min(roi.shape[1] - 1, j * block * sw // cw // block)
            c1 = max(c0 + 1, min(roi.shape[1], -(-min(cw, (j + 1) * block) * sw // cw // block)))
            out[i, j] = roi[r0:r1, c0:c1].max()
    return out


class ScaledStreamEncoder:
    """Codes a stream at a fraction of its size (low rates: a surveillance archive's 20-50 kbps); the
    decoder (:class:`ScaledStreamDecoder`) scales each picture back up, so a file shows at its source's size.

    Args:
        inner: the stream encoder of the smaller pictures.
        width, height: the source's size.
        scale: the coded size's fraction of it (see :func:`coded_size`).
    """

    def __init__(self, inner: StreamEncoder, width: int, height: int, scale: float):
        self.inner = inner
        self.name, self.weights_sha256 = inner.name, inner.weights_sha256
        self.maps = inner.maps
        self.shown = (width, height)
        self.coded = coded_size(width, height, scale)

    def encode(self, frame: np.ndarray, quality: float, pts: int, boxes=None, intra: bool = False,
               roi: np.ndarray | None = None, referenced: bool = True,
               reuse: np.ndarray | None = None) -> StreamFrame:
        (sw, sh), (cw, ch) = self.shown, self.coded
        if boxes is not None:
            fx, fy = cw / sw, ch / sh
            boxes = [(x1 * fx, y1 * fy, x2 * fx, y2 * fy) for x1, y1, x2, y2 in boxes]
        if roi is not None:
            roi = scaled_blocks(np.asarray(roi), self.shown, self.coded)
        if reuse is not None:
            reuse = scaled_blocks(np.asarray(reuse), self.shown, self.coded)
        enc = self.inner.encode(downscale(frame, self.coded), quality, pts, boxes=boxes, intra=intra, roi=roi,
                                referenced=referenced, reuse=reuse)
        recon = None if enc.recon is None else upscale(enc.recon, self.shown)
        return StreamFrame(enc.data, recon, enc.intra)

    def describe(self) -> dict:
        return {**self.inner.describe(), "scale": {"coded": list(self.coded), "shown": list(self.shown)}}

    def reset(self) -> None:
        self.inner.reset()


class ScaledStreamDecoder:
    """Decodes what :class:`ScaledStreamEncoder` writes: its inner decoder's pictures, scaled back up."""

    def __init__(self, inner: StreamDecoder, coded: tuple[int, int], shown: tuple[int, int]):
        self.inner, self.coded, self.shown = inner, coded, shown

    @property
    def latent(self):
        """The inner decoder's last latent, where it keeps one (predicted streams)."""
        return getattr(self.inner, "latent", None)

    def decode(self, data: bytes, pts: int, intra: bool = True, ref_pts: int | None = None) -> np.ndarray:
        from ..errors import FormatError

        pic = self.inner.decode(data, pts, intra, ref_pts)
        if (pic.shape[1], pic.shape[0]) != self.coded:
            raise FormatError(f"frame at pts {pts} is {pic.shape[1]}x{pic.shape[0]}, the stream's coded size "
                              f"is {self.coded[0]}x{self.coded[1]}")
        return upscale(pic, self.shown)

    def reset(self) -> None:
        self.inner.reset()


def scaled_sizes(description) -> tuple[tuple[int, int], tuple[int, int]]:
    """The coded and shown sizes (width, height) a scaled stream's description holds, checked."""
    from ..errors import FormatError

    try:
        coded = tuple(int(v) for v in description["coded"])
        shown = tuple(int(v) for v in description["shown"])
    except (KeyError, TypeError, ValueError):
        raise FormatError("invalid .vsv header: a scaled stream without its coded and shown sizes") from None
    if len(coded) != 2 or len(shown) != 2 or not all(0 < c <= s <= 65536 for c, s in zip(coded, shown)):
        raise FormatError(f"invalid .vsv header: coded size {coded} for a shown size {shown}")
    return coded, shown


def stream_predicts(encoder: StreamEncoder) -> bool:
    """Whether ``encoder`` codes predicted frames (its frames depend on the ones before them)."""
    return encoder.describe().get("coder") == "predictive"
