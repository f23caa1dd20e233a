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
               roi: np.ndarray | None = None, referenced: bool = True) -> StreamFrame:
        """One frame. ``boxes``: pixel boxes (x1, y1, x2, y2) of what the detector saw in it (None: unknown);
        ``intra``: code it alone (a scene cut); ``roi``: quality offsets per 64 x 64 block, in quarter steps
        (:mod:`.quality_map`); ``referenced``: whether the next coded frame may be predicted from this one
        (False for a stream's last frame, or one before a scene cut; True where that is not known)."""

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
               roi: np.ndarray | None = None, referenced: bool = True) -> StreamFrame:
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
