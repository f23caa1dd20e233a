"""Frame codecs: one RGB frame in, bytes out, and back.

A :class:`FrameCodec` hides the model: frames of any size (1x1 to 4K and
beyond) are padded by edge replication to a multiple of 64 (the total
down-sampling of a hyperprior: 16 in ``g_a`` times 4 in ``h_a``) and cropped
back after decoding.

The bytes of one frame are laid out by :mod:`.payload`.

The encoder returns the reconstruction the decoder will produce, bit for bit
on the same machine and to float rounding on any other (see :mod:`.models`
for how the entropy model stays in step), so PSNR reported at encode time is
the PSNR the user gets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..errors import FormatError
from .models import check_quality
from .payload import INTRA_EXACT, PAYLOAD_VERSION, PREDICTED_VERSIONS, Payload, pack, unpack
from .pixels import PAD, as_rgb, pad, to_tensor, to_uint8



def set_threads() -> int:
    """Use every core this process may run on (affinity-aware, container-aware)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    n = int(os.environ.get("VIDSIEVE_THREADS", n))
    if torch.get_num_threads() != n:
        torch.set_num_threads(max(1, n))
    return n


@dataclass
class Encoded:
    data: bytes
    recon: np.ndarray | None  # what decode(data) returns (None when not asked for)


class FrameCodec:
    """Interface shared by every frame codec.

    Attributes:
        name: registry name, stored in container headers.
        weights_sha256: identifies the exact weights; decoding checks it.
        variable_rate: whether fractional qualities are meaningful.
        precision: what the transforms compute in (``float``, or ``int8``: :mod:`.int8`).
    """

    name: str = ""
    weights_sha256: str = ""
    variable_rate: bool = False
    precision: str = "float"

    def encode(self, frame: np.ndarray, quality: float) -> bytes:
        return self.encode_batch([frame], [quality], recon=False)[0].data

    def decode(self, data: bytes) -> np.ndarray:
        return self.decode_batch([data])[0]

    def encode_batch(self, frames: Sequence[np.ndarray], qualities: Sequence[float],
                     recon: bool = True) -> list[Encoded]:
        """Code frames; with ``recon`` also return what the decoder will output (costs a synthesis)."""
        raise NotImplementedError

    def decode_batch(self, payloads: Sequence[bytes]) -> list[np.ndarray]:
        raise NotImplementedError


class GainedCodec(FrameCodec):
    """Codec around :class:`~.models.GainedMeanScaleHyperprior` (continuous quality)."""

    variable_rate = True
    #: Whether the entropy coder's tables came with the weights (registry: predicted streams need them).
    tables_shipped = True

    def __init__(self, model, name: str, weights_sha256: str, precision: str = "float"):
        from .int8 import check_precision, load
        from .models import analysis_sha256

        set_threads()
        #: What the latents depend on (the conditional model of predicted frames is found by it).
        self.analysis_sha256 = analysis_sha256(model.state_dict())
        self.model = model.for_inference()
        self.name, self.weights_sha256 = name, weights_sha256
        if check_precision(precision) == "int8":
            self.model.use_int8(load(name, weights_sha256))

    @property
    def precision(self) -> str:
        """What the analysis and synthesis compute in (``float`` or ``int8``); streams decode with either."""
        return self.model.precision

    @torch.inference_mode()
    def encode_batch(self, frames, qualities, recon=True):
        if len(frames) != len(qualities):
            raise ValueError("one quality per frame")
        qs = [check_quality(q) for q in qualities]
        out: list[Encoded] = []
        # Frames of equal size share one analysis pass; the rest stays per frame.
        groups: dict[tuple, list[int]] = {}
        rgbs = [as_rgb(f) for f in frames]
        for i, f in enumerate(rgbs):
            groups.setdefault(f.shape, []).append(i)
        results: dict[int, Encoded] = {}
        for shape, idx in groups.items():
            h, w = shape[:2]
            x = torch.cat([pad(to_tensor(rgbs[i])) for i in idx])
            y = self.model.gained_latent(x, [qs[i] for i in idx])
            for j, i in enumerate(idx):
                version = PAYLOAD_VERSION
                try:
                    strings, zhw, y_hat = self.model.code_latent(y[j : j + 1])
                except OverflowError:
                    # A hyper latent far outside anything trained: code this frame with the
                    # float hyper path rather than fail (it decodes on machines like this one).
                    version = 1
                    strings, zhw, y_hat = self.model.code_latent(y[j : j + 1], exact=False)
                rec = to_uint8(self.model.synthesis(y_hat, qs[i]), h, w) if recon else None
                results[i] = Encoded(pack(w, h, qs[i], zhw, strings, version), rec)
        out = [results[i] for i in range(len(frames))]
        return out

    @torch.inference_mode()
    def decode_latent(self, data: bytes) -> torch.Tensor:
        """The dequantised latent a payload holds (what the synthesis receives)."""
        symbols, means = self._symbols(unpack(data))
        return (symbols.to(means.dtype) + means).float()

    @torch.inference_mode()
    def decode_symbols(self, data: bytes) -> torch.Tensor:
        """The latent's integer symbols, ``round(y - means)``: for version 2 payloads the same on every machine."""
        return self._symbols(unpack(data))[0]

    def _symbols(self, p: Payload) -> tuple[torch.Tensor, torch.Tensor]:
        if p.version in PREDICTED_VERSIONS:
            raise FormatError("a predicted frame decodes only in its stream, after the frames it refers to")
        if len(p.strings) != 2 and not (p.version == INTRA_EXACT and len(p.strings) == 3):  # 3: with a map
            raise FormatError("frame payload has the wrong number of streams for this model")
        check_quality(p.quality)
        try:
            return self.model.decode_symbols(p.strings[:2], p.latent_hw, exact=p.version >= 2,
                                             exact_means=p.version == INTRA_EXACT)
        except OverflowError:
            raise FormatError("frame payload's hyper latent is out of range (damaged data?)") from None

    @torch.inference_mode()
    def decode_batch(self, payloads):
        frames = []
        for data in payloads:
            p = unpack(data)
            symbols, means = self._symbols(p)
            y_hat = (symbols.to(means.dtype) + means).float()
            inv_gain = None
            if p.version == INTRA_EXACT:
                from .quality_map import payload_quality

                qm = payload_quality(p)
                inv_gain = None if qm.uniform else qm.gains(self.model, y_hat.shape[-2:])[1]
            frames.append(to_uint8(self.model.synthesis(y_hat, p.quality, inv_gain), p.height, p.width))
        return frames


class ZooCodec(FrameCodec):
    """A CompressAI zoo architecture: one fixed-rate model per integer quality."""

    variable_rate = False

    def __init__(self, arch: str, loader):
        set_threads()
        self.name = arch
        self.weights_sha256 = f"compressai-zoo:{arch}"
        # The factorized prior has no hyper latent: its stored shape is y's (1/16).
        self.latent_stride = 16 if arch == "bmshj2018-factorized" else PAD
        self._loader = loader
        self._models: dict[int, torch.nn.Module] = {}

    def model(self, quality: float):
        q = check_quality(quality)
        if q != int(q):
            from ..errors import ModelError

            raise ModelError(f"{self.name} is fixed-rate: quality must be an integer 1..8, got {quality}")
        if int(q) not in self._models:
            self._models[int(q)] = self._loader(int(q))
        return self._models[int(q)]

    @torch.inference_mode()
    def encode_batch(self, frames, qualities, recon=True):
        out = []
        for f, q in zip(frames, qualities):
            rgb = as_rgb(f)
            h, w = rgb.shape[:2]
            m = self.model(q)
            r = m.compress(pad(to_tensor(rgb)))
            strings = [s[0] for s in r["strings"]]
            # CompressAI's own float hyper path: version 1.
            data = pack(w, h, q, tuple(int(v) for v in r["shape"]), strings, version=1)
            out.append(Encoded(data, self.decode(data) if recon else None))
        return out

    @torch.inference_mode()
    def decode_batch(self, payloads):
        frames = []
        for data in payloads:
            p = unpack(data, self.latent_stride)
            m = self.model(p.quality)
            x = m.decompress([[s] for s in p.strings], list(p.latent_hw))["x_hat"]
            frames.append(to_uint8(x, p.height, p.width))
        return frames
