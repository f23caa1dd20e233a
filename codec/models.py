"""Learned image codecs used to code kept frames.

The default model is a mean-scale hyperprior (Minnen, Ballé, Toderici,
"Joint Autoregressive and Hierarchical Priors for Learned Image Compression",
NeurIPS 2018) *without* the autoregressive context model, which is far too slow
on a CPU. It is made variable-rate with per-channel gain units (Cui et al.,
"Asymmetric Gained Deep Image Compression With Continuous Rate Adaptation",
CVPR 2021): one learned gain vector and one inverse-gain vector per quality
level, interpolated geometrically for fractional qualities, so a single set of
weights covers qualities 1..8 and everything between.

Determinism matters more than throughput here: an entropy-model index computed
from a scale that differs by one ulp between encoder and decoder corrupts the
rANS stream. So the hyper path runs one frame at a time in both (CPU
convolutions can round differently for different batch shapes), the scales
come from a fixed-point form of h_s whose result does not depend on the machine
(:class:`~.fixed_point.ExactHyperSynthesis`), and the gains a coder uses come
from basic arithmetic only (:meth:`GainedMeanScaleHyperprior.coding_gains`,
:mod:`.exact`); the float ``exp`` of :meth:`GainedMeanScaleHyperprior.gains`
serves training.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from compressai.layers import GDN
from compressai.models import MeanScaleHyperprior
from compressai.models.utils import conv, deconv
from compressai.ops import quantize_ste

from . import exact
from .entropy import LatentCoder
from .fixed_point import ExactHyperSynthesis
from .layers import PolyphaseDeconv, freeze_gdn

#: Rate-distortion trade-offs (MSE, images in [0, 1], loss = lambda * 255^2 * MSE + bpp)
#: from CompressAI's training table, one per quality level 1..8.
LAMBDAS: tuple[float, ...] = (0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18)
QUALITY_MIN = 1.0
QUALITY_MAX = float(len(LAMBDAS))


def check_quality(quality: float) -> float:
    q = float(quality)
    if not math.isfinite(q) or q < QUALITY_MIN or q > QUALITY_MAX:
        raise ValueError(f"quality must be between {QUALITY_MIN:g} and {QUALITY_MAX:g}, got {quality!r}")
    return q


def quality_lambda(quality: float) -> float:
    """The rate-distortion trade-off a (fractional) quality stands for: the
    training table's lambdas interpolated geometrically, as the gains are."""
    t = check_quality(quality) - 1.0
    lo = min(int(t), len(LAMBDAS) - 2)
    f = t - lo
    return math.exp((1 - f) * math.log(LAMBDAS[lo]) + f * math.log(LAMBDAS[lo + 1]))


def widths(state: dict) -> tuple[int, int]:
    """``(N, M)`` of a :class:`GainedMeanScaleHyperprior` state dict: its hyper-latent and latent channels."""
    return state["h_a.0.weight"].shape[0], state["g_a.6.weight"].shape[0]


def analysis_sha256(state: dict) -> str:
    """A hash of what makes a model's latents: the analysis transform and the gains. Models that share
    it (a model and its pruned hyper-synthesis, :mod:`vidsieve.training.prune`) code the same latents,
    so a conditional model trained for one serves the other."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(k for k in state if k.startswith("g_a.") or k == "log_gain"):
        h.update(k.encode())
        h.update(state[k].detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def hidden_widths(state: dict) -> dict:
    """The hidden widths of a state dict's transforms, as :class:`GainedMeanScaleHyperprior` takes them:
    ``transform`` (the analysis and synthesis layers) and ``hyper`` (the hyper-synthesis's two)."""
    return {"transform": int(state["g_a.0.weight"].shape[0]),
            "hyper": (int(state["h_s.0.weight"].shape[1]), int(state["h_s.2.weight"].shape[1]))}


def likelihood_bits(likelihoods: dict[str, torch.Tensor]) -> torch.Tensor:
    """Bits per batch item that an ideal entropy coder spends on these likelihoods, shape [B]."""
    return sum((-torch.log2(lk.clamp_min(1e-9))).flatten(1).sum(1) for lk in likelihoods.values())


class GainedMeanScaleHyperprior(MeanScaleHyperprior):
    """Variable-rate mean-scale hyperprior with gain units.

    Args:
        N (int): channels of the hyper latent (and of the transforms unless ``transform`` is given).
        M (int): channels of the latent ``y``.
        levels (int): number of trained quality levels (default: 8).
        transform (int): hidden channels of the analysis and synthesis transforms (default: ``N``).
        hyper (tuple[int, int]): hidden channels of the hyper-synthesis (default: ``(M, 3 * M // 2)``,
            CompressAI's). A pruned model (:mod:`vidsieve.training.prune`) has narrower ones.
    """

    def __init__(self, N: int = 64, M: int = 96, levels: int = len(LAMBDAS), transform: int | None = None,
                 hyper: Sequence[int] | None = None, **kwargs):
        super().__init__(N=N, M=M, **kwargs)
        self.N, self.M, self.levels = N, M, levels
        self.transform = int(transform or N)
        self.hyper = tuple(int(h) for h in hyper) if hyper else (M, M * 3 // 2)
        if self.transform != N:
            T = self.transform
            self.g_a = nn.Sequential(conv(3, T), GDN(T), conv(T, T), GDN(T), conv(T, T), GDN(T), conv(T, M))
            self.g_s = nn.Sequential(deconv(M, T), GDN(T, inverse=True), deconv(T, T), GDN(T, inverse=True),
                                     deconv(T, T), GDN(T, inverse=True), deconv(T, 3))
        if self.hyper != (M, M * 3 // 2):
            h1, h2 = self.hyper
            self.h_s = nn.Sequential(deconv(N, h1), nn.LeakyReLU(inplace=True), deconv(h1, h2),
                                     nn.LeakyReLU(inplace=True), conv(h2, M * 2, stride=1, kernel_size=3))
        # Initial gains span a ~8x range of quantisation step, which is roughly
        # what separates CompressAI's lowest and highest lambda models.
        init = torch.linspace(math.log(0.35), math.log(2.8), levels)
        self.log_gain = nn.Parameter(init[:, None].repeat(1, M))
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, M))
        # Built from the trained h_s on first use (by for_inference, or by a coding call).
        self._exact_h_s: ExactHyperSynthesis | None = None
        # The latent's entropy coder, its tables converted once the model is for inference only.
        self._latent_coder: LatentCoder | None = None
        # Integer forms of g_a and g_s (codec.int8) when the model runs at int8 precision.
        self._int8 = None

    @classmethod
    def from_state_dict(cls, state: dict) -> GainedMeanScaleHyperprior:
        """A model with the widths and quality levels of ``state``, loaded from it.

        Raises ``KeyError`` or ``RuntimeError`` when ``state`` is not such a model's."""
        model = cls(*widths(state), levels=state["log_gain"].shape[0], **hidden_widths(state))
        model.load_state_dict(state)
        return model

    # -- gains ---------------------------------------------------------------
    def gains(self, quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gain and inverse gain for qualities in [1, levels], shape [B, M, 1, 1], differentiable: for
        training (coding uses :meth:`coding_gains`)."""
        t = (quality.to(self.log_gain.dtype) - 1.0).clamp(0, self.levels - 1)
        lo = t.floor().long().clamp(max=self.levels - 2)
        frac = (t - lo.to(t.dtype))[:, None]
        g = (1 - frac) * self.log_gain[lo] + frac * self.log_gain[lo + 1]
        ig = (1 - frac) * self.log_inv_gain[lo] + frac * self.log_inv_gain[lo + 1]
        return g.exp()[:, :, None, None], ig.exp()[:, :, None, None]

    def coding_gains(self, qualities, rule: str = "exact") -> tuple[torch.Tensor, torch.Tensor]:
        """Gain and inverse gain (float64, [len(qualities), M, 1, 1]) that coders use: the same bits on
        every machine. ``rule``: ``exact`` (:func:`.exact.gains`), or ``f32`` (the float32 gains of
        payload version 4, :mod:`.legacy`). Qualities are taken as float32, as payloads store them."""
        q = np.asarray(qualities, dtype=np.float32).reshape(-1)
        lg = self.log_gain.detach().cpu().numpy()
        lig = self.log_inv_gain.detach().cpu().numpy()
        if rule == "exact":
            g, ig = exact.gains(lg, lig, q)
        elif rule == "f32":
            from .legacy import gains_f32

            g, ig = gains_f32(lg, lig, q)
        else:
            raise ValueError(f"unknown gain rule {rule!r}")
        return (torch.from_numpy(np.asarray(g, np.float64))[:, :, None, None],
                torch.from_numpy(np.asarray(ig, np.float64))[:, :, None, None])

    # -- training ------------------------------------------------------------
    def forward(self, x: torch.Tensor, quality: torch.Tensor | None = None) -> dict:
        if quality is None:
            quality = torch.full((x.shape[0],), float(self.levels), device=x.device)
        gain, inv_gain = self.gains(quality)
        y = self.g_a(x) * gain
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales_hat, means_hat = self.h_s(z_hat).chunk(2, 1)
        # Noise for the rate term, straight-through rounding for the decoder
        # (Minnen & Singh 2020): the synthesis sees what it will see at test time.
        _, y_likelihoods = self.gaussian_conditional(y, scales_hat, means=means_hat)
        y_hat = quantize_ste(y - means_hat) + means_hat
        x_hat = self.g_s(y_hat * inv_gain)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def rate(self, x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """Bits per pixel of each item under the entropy model (noisy quantisation, as in training),
        with the analysis run without gradients: what training the entropy model alone needs."""
        with torch.no_grad():
            y = self.g_a(x) * self.gains(quality)[0]
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales_hat, means_hat = self.h_s(z_hat).chunk(2, 1)
        _, y_likelihoods = self.gaussian_conditional(y, scales_hat, means=means_hat)
        return likelihood_bits({"y": y_likelihoods, "z": z_likelihoods}) / (x.shape[-2] * x.shape[-1])

    # -- coding ----------------------------------------------------------------
    @property
    def precision(self) -> str:
        """``float`` or ``int8``: what the analysis and synthesis transforms compute in (:mod:`.int8`)."""
        return "float" if self._int8 is None else "int8"

    def use_int8(self, transforms) -> "GainedMeanScaleHyperprior":
        """Run the analysis and synthesis as these :class:`~.int8.Int8Transforms` (None: float again)."""
        self._int8 = transforms
        return self

    @torch.inference_mode()
    def analysis_transform(self, x: torch.Tensor) -> torch.Tensor:
        """The analysis transform ``g_a`` (before the gains) at the model's precision."""
        if self._int8 is not None:
            return self._int8.analysis(x)
        # Channels-last convolutions are ~1.5-2x faster on CPUs (oneDNN).
        return self.g_a(x.contiguous(memory_format=torch.channels_last)).contiguous()

    @torch.inference_mode()
    def gained_latent(self, x: torch.Tensor, quality: Sequence[float]) -> torch.Tensor:
        """Batched analysis transform, already multiplied by the gains."""
        gain, _ = self.coding_gains(list(quality))
        # The hyper path is small and runs per frame (see hyper_synthesis).
        return (self.analysis_transform(x) * gain.to(x.dtype)).contiguous()

    def hyper_synthesis(self, z_hat: torch.Tensor, exact: bool = True,
                        exact_means: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Scales and means of the latent's entropy model from the decoded hyper latent.

        ``exact`` computes the scales in fixed point (:class:`~.entropy.ExactHyperSynthesis`),
        the same on every machine, so a stream decodes wherever it was made; without it,
        CompressAI's float ``h_s`` (frame payloads of version 1, which decode reliably
        only on a machine that computes exactly as the encoder's did). ``exact_means``
        computes the means in fixed point too (float64): latents that predicted frames
        refer to must be the same on every machine."""
        if not exact:
            scales, means = self.h_s(z_hat).chunk(2, 1)
            return scales, means
        return self.exact_hyper_synthesis()(z_hat, exact_means)

    def exact_hyper_synthesis(self) -> ExactHyperSynthesis:
        """The fixed-point form of ``h_s`` (built once from the trained weights: for a model at inference)."""
        if self._exact_h_s is None:
            self._exact_h_s = ExactHyperSynthesis(self.h_s, self.M)
        return self._exact_h_s

    def latent_coder(self) -> LatentCoder:
        """The entropy coder of ``y`` (tables converted once for a model at inference, else built per call)."""
        if self._latent_coder is not None:
            return self._latent_coder
        return LatentCoder(self.gaussian_conditional)

    def scale_indexes(self, scales: torch.Tensor) -> torch.Tensor:
        """The entropy coder's table index for every predicted scale (:meth:`.entropy.LatentCoder.indexes`)."""
        return self.latent_coder().indexes(scales)

    @torch.inference_mode()
    def code_latent(self, y: torch.Tensor, exact: bool = True) -> tuple[list[bytes], tuple[int, int], torch.Tensor]:
        """Entropy-code one gained latent ``y`` [1, M, h, w].

        Returns the two strings (y, z), the z shape and the dequantised latent
        that the decoder will reconstruct (bit for bit on the same machine; with
        ``exact``, to the last bit of the means on any other).
        """
        assert y.shape[0] == 1
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        shape = tuple(z.shape[-2:])
        z_hat = self.entropy_bottleneck.decompress(z_strings, shape)
        scales_hat, means_hat = self.hyper_synthesis(z_hat, exact)
        y_string, y_hat = self.latent_coder().encode(y, scales_hat, means_hat)
        return [y_string, z_strings[0]], shape, y_hat

    @torch.inference_mode()
    def decode_symbols(self, strings: Sequence[bytes], shape: tuple[int, int], exact: bool = True,
                       exact_means: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent's integer symbols (``round(y - means)``: the same on every machine with ``exact``) and
        its means (float32, which may differ in their last bit between machines; float64 and exact with
        ``exact_means``)."""
        z_hat = self.entropy_bottleneck.decompress([strings[1]], shape)
        scales_hat, means_hat = self.hyper_synthesis(z_hat, exact, exact_means)
        return self.latent_coder().decode_symbols(strings[0], scales_hat), means_hat

    @torch.inference_mode()
    def decode_latent(self, strings: Sequence[bytes], shape: tuple[int, int], exact: bool = True) -> torch.Tensor:
        symbols, means = self.decode_symbols(strings, shape, exact)
        return self.gaussian_conditional.dequantize(symbols, means)

    @torch.inference_mode()
    def synthesis(self, y_hat: torch.Tensor, quality: float, inv_gain: torch.Tensor | None = None) -> torch.Tensor:
        """Pixels from a gained latent; ``inv_gain`` (per position, [1, M, h, w]: a quality map's) replaces the
        inverse gains of ``quality``."""
        if inv_gain is None:
            _, inv_gain = self.coding_gains([quality])
        y = (y_hat * inv_gain.to(y_hat.dtype)).float()
        if self._int8 is not None:
            return self._int8.synthesis(y).clamp_(0, 1)
        return self.g_s(y.contiguous(memory_format=torch.channels_last)).clamp_(0, 1).contiguous()

    def transforms_channels_last(self) -> "GainedMeanScaleHyperprior":
        """The two big transforms' weights in channels-last layout, which oneDNN runs fastest on CPUs."""
        self.g_a.to(memory_format=torch.channels_last)
        self.g_s.to(memory_format=torch.channels_last)
        return self

    def for_inference(self) -> "GainedMeanScaleHyperprior":
        """Eval mode, the two big transforms in channels-last layout, their GDNs frozen
        (:class:`~.layers.FrozenGDN`), the synthesis's last layer, the one that writes
        pixels, as a :class:`~.layers.PolyphaseDeconv`, and the entropy coder's tables
        converted once. The model can no longer be trained."""
        self.eval().requires_grad_(False)
        freeze_gdn(self.g_a)
        freeze_gdn(self.g_s)
        if isinstance(self.g_s[-1], nn.ConvTranspose2d):
            self.g_s[-1] = PolyphaseDeconv(self.g_s[-1])
        self._exact_h_s = ExactHyperSynthesis(self.h_s, self.M)
        self._latent_coder = LatentCoder(self.gaussian_conditional)
        return self.transforms_channels_last()
