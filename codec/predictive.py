"""Predicted streams: the state both sides hold, and the decoder.

The stream coder keeps two references in the latent domain, exactly as the
decoder keeps them: the previous decoded frame's latent and a long-term
**background latent** (the scene without what moves: in the spirit of the
background pictures of AVS2 / IEEE 1857, which surveillance coding uses to
predict what a moving object uncovers). Every frame is cut into blocks of 4 x 4
latent positions (64 x 64 pixels), each of which may split into quarters and
those into single positions (a quadtree down to 16 x 16 pixels); each leaf copies one reference (*skip*, no
bits but its mode), codes its difference from one reference with the
:class:`~.conditional.ConditionalEntropyModel`, or is coded alone with the intra
model's entropy model (new content no reference holds). The encoder's choices
are :mod:`.predictive_encoder`'s; how each frame's bits are written and read is
:mod:`.latent_codecs`'.

Exactness: every latent a reference holds is computed the same on every machine
(intra frames with exact means; predicted frames from exact means and integer
symbols; a quality change rescales the references with gains from basic
arithmetic, :mod:`.exact`), and each predicted frame carries a check value of
the latents it leaves, so a decoder whose state differs stops at that frame
(:class:`~.latent_codecs.DivergenceError`) instead of showing garbage.

Intra frames come at the start, at scene cuts, on ``reset`` and every
``intra_period`` seconds, so a file can be cut and seeked and a reader that
meets damage resumes at the next one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import FormatError
from .conditional import ConditionalEntropyModel
from .frame_codec import GainedCodec
from .incremental import Picture
from .latent_codecs import DivergenceError, decode_intra_exact, decode_predicted, picture_shift, rescaled
from .payload import INTRA_EXACT, PREDICTED, PREDICTED_VERSIONS, unpack
from .quality_map import QualityMap, payload_quality
from .stabilise import shown


@dataclass
class PredictionStats:
    """What the stream coder did, for ``vidsieve info`` and the benchmarks."""

    intra: int = 0
    predicted: int = 0
    mapped: int = 0  # frames coded with a quality map
    blocks: int = 0  # latent positions (16 x 16 pixels) of predicted frames: the finest a mode is chosen for
    skipped: int = 0  # of them, copied from a reference
    from_background: int = 0  # of them, predicted from (or copied from) the background
    alone: int = 0  # of them, coded with the intra model (new content)
    shifted: int = 0  # predicted frames coded aligned with their references and shown moved (camera shake)


class References:
    """What both sides hold: the previous latent, the background latent (exact float64) and their quality."""

    def __init__(self):
        self.prev: torch.Tensor | None = None
        self.bg: torch.Tensor | None = None
        self.quality: QualityMap | None = None

    def at_quality(self, model, quality: QualityMap, version: int = PREDICTED) -> tuple[torch.Tensor, torch.Tensor]:
        """Both references at ``quality``, rescaled by the rule of payload ``version``
        (:func:`~.latent_codecs.rescaled`) when they were coded at another."""
        if not quality.same(self.quality):
            self.prev, self.bg = rescaled((self.prev, self.bg), self.quality, quality, model, version)
            self.quality = quality
        return self.prev, self.bg

    def set_intra(self, y_hat: torch.Tensor, quality: QualityMap) -> None:
        self.prev, self.bg, self.quality = y_hat, y_hat.clone(), quality

    def set_predicted(self, y_hat: torch.Tensor, bg: torch.Tensor) -> None:
        self.prev, self.bg = y_hat, bg

    def clear(self) -> None:
        self.prev = self.bg = self.quality = None


class PredictiveStreamDecoder:
    """Decodes what :class:`PredictiveStreamEncoder` writes (a :class:`~.stream.StreamDecoder`); reads
    intra-only streams too."""

    def __init__(self, codec: GainedCodec, conditional: ConditionalEntropyModel | None):
        self.codec, self.model = codec, codec.model
        self.cond = conditional
        self.exact = conditional.exact() if conditional is not None else None
        self.refs = References()
        self.picture = Picture()
        self.last_pts: int | None = None

    @property
    def latent(self) -> torch.Tensor | None:
        """The last decoded frame's latent (exact float64): what the next predicted frame refers to."""
        return self.refs.prev

    def reset(self) -> None:
        self.refs.clear()
        self.picture.clear()

    @torch.inference_mode()
    def decode(self, data: bytes, pts: int, intra: bool = True, ref_pts: int | None = None) -> np.ndarray:
        p = unpack(data)
        if p.version not in (INTRA_EXACT, *PREDICTED_VERSIONS):
            self.reset()  # a frame of an intra-only stream: nothing to predict from
            return self.codec.decode(data)
        qm = payload_quality(p)
        shift = (0, 0)
        if p.version == INTRA_EXACT:
            y_hat = decode_intra_exact(self.model, p)
            self.refs.set_intra(y_hat, qm)
            self.picture.clear()
        else:
            if self.refs.prev is None or (ref_pts is not None and ref_pts != self.last_pts):
                raise FormatError(f"predicted frame at pts {pts} has no reference (the frame it refers to, "
                                  f"pts {ref_pts}, was not decoded before it)")
            if self.exact is None:
                raise FormatError("this stream has predicted frames, and no conditional model is loaded for it")
            shift = picture_shift(p)
            prev, bg = self.refs.at_quality(self.model, qm, p.version)
            try:
                y_hat, bg_after, _ = decode_predicted(self.model, self.cond, self.exact, p, prev, bg)
            except DivergenceError as exc:
                self.reset()  # nothing after this frame decodes until the next intra frame
                raise DivergenceError(f"predicted frame at pts {pts}: {exc}") from None
            self.refs.set_predicted(y_hat, bg_after)
        self.last_pts = pts
        return shown(self.picture.synthesise(self.model, y_hat, qm, p.height, p.width), shift)
