"""The entropy model of predicted frames: a latent coded against what the decoder already holds.

A predicted frame's latent ``y`` (the intra model's analysis, gained) is
coded as a difference from a reference latent the decoder holds (the previous
decoded frame's, or the background's): ``y_hat = ref + mu + round(y - ref - mu)``.
The means ``mu`` and scales of that difference come from a small network that
reads the reference and a hyper latent of the difference itself (Ballé et al.'s
side information, here about *where* the picture changed and by how much), in
the spirit of the conditional coding of DCVC (Li, Li and Lu, "Deep Contextual
Video Compression", NeurIPS 2021), with the context taken in the latent domain
so that no motion or synthesis runs in the entropy model.

Both sides must compute the same means and scales to the last bit, so at
inference the network runs in fixed point (:class:`~.entropy.FixedPointNet`)
and outputs a table index directly: its ``v`` output is a position on the
Gaussian scale table's log-spaced grid, and the index is ``v`` rounded.
"""

from __future__ import annotations

import math

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models.utils import conv, deconv
from torch import nn

from .fixed_point import FixedPointNet, Window, cut

#: CompressAI's Gaussian scale table (64 scales, log-spaced from 0.11 to 256): the grid a conditional model
#: trains on until it is bound to its intra model's own table (:meth:`ConditionalEntropyModel.use_scale_table`).
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64


class ScaleGrid:
    """Positions on a log-spaced scale table: position ``v`` is the scale ``min * step**v``, and the
    entropy table a coded symbol uses is ``v`` rounded (table index)."""

    def __init__(self, lo: float = SCALE_MIN, hi: float = SCALE_MAX, levels: int = SCALE_LEVELS):
        self.lo, self.hi, self.levels = float(lo), float(hi), int(levels)
        self.log_step = (math.log(self.hi) - math.log(self.lo)) / (self.levels - 1)

    @classmethod
    def of_table(cls, table: torch.Tensor) -> "ScaleGrid":
        """The grid of a ``GaussianConditional``'s scale table; ``ValueError`` when it is not log-spaced."""
        t = table.detach().double().reshape(-1)
        if t.numel() < 2 or not bool((t > 0).all()):
            raise ValueError("its intra model's scale table is not a table of positive scales")
        grid = cls(float(t[0]), float(t[-1]), t.numel())
        steps = torch.diff(torch.log(t))
        if float((steps - grid.log_step).abs().max()) > 1e-4 * grid.log_step:
            raise ValueError("its intra model's scale table is not log-spaced")
        return grid

    def scale(self, v: torch.Tensor) -> torch.Tensor:
        """The scale at (fractional) position ``v`` (float work: training and the encoder's estimates)."""
        return torch.exp(math.log(self.lo) + v.clamp(0, self.levels - 1) * self.log_step)


class ConditionalEntropyModel(nn.Module):
    """Means and scales of a predicted frame's latent difference from its reference.

    Args:
        M (int): latent channels (the intra model's).
        N (int): channels of the hyper path and of the fusion.
        Z (int): channels of the difference's hyper latent (at 1/4 of the latent's resolution).
    """

    def __init__(self, M: int = 192, N: int = 64, Z: int = 32):
        super().__init__()
        self.M, self.N, self.Z = M, N, Z
        self.h_a = nn.Sequential(conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N, 5, 2),
                                 nn.LeakyReLU(inplace=True), conv(N, Z, 5, 2))
        self.entropy_bottleneck = EntropyBottleneck(Z)
        self.h_s = nn.Sequential(deconv(Z, N, 5, 2), nn.LeakyReLU(inplace=True), deconv(N, N, 5, 2),
                                 nn.LeakyReLU(inplace=True), conv(N, N, 3, 1))
        self.ref = nn.Sequential(conv(M, N, 3, 1))
        self.fuse = nn.Sequential(nn.LeakyReLU(), conv(2 * N, N, 3, 1), nn.LeakyReLU(), conv(N, 2 * M, 1, 1))
        with torch.no_grad():  # start with mid-table scales and zero means
            self.fuse[-1].bias[:M].fill_(20.0)
            self.fuse[-1].bias[M:].zero_()
        self.likelihood = GaussianConditional(None)
        #: The scale table its ``v`` output indexes: the intra model's, once bound to it.
        self.grid = ScaleGrid()
        #: Whether its bottleneck's coding tables came with its weights (only then do its streams decode
        #: the same everywhere: computing them is float work).
        self.tables_shipped = False
        #: Pixel energy (images in [0, 1], summed over the three colours) per unit of error in each
        #: channel of the synthesis's input: turns a latent error into the distortion it causes.
        self.register_buffer("synthesis_energy", torch.ones(M))
        self._exact: ExactConditional | None = None

    def load_state_dict(self, state_dict, strict: bool = True):
        # The bottleneck's coding tables are sized by the weights that come with them (as CompressAI's
        # models do on loading).
        from compressai.models.utils import update_registered_buffers

        update_registered_buffers(self.entropy_bottleneck, "entropy_bottleneck",
                                  ["_quantized_cdf", "_offset", "_cdf_length"], state_dict)
        out = super().load_state_dict(state_dict, strict=strict)
        self.tables_shipped = self.entropy_bottleneck._quantized_cdf.numel() > 0
        return out

    def use_scale_table(self, table: torch.Tensor) -> "ConditionalEntropyModel":
        """Index the scale table of the intra model whose latent coder codes this model's symbols.
        ``ValueError`` when it is not a log-spaced table (what this model's ``v`` output assumes)."""
        self.grid = ScaleGrid.of_table(table)
        self._exact = None
        return self

    def params(self, z_hat: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(v, mu)``: scale-table positions and means of the difference (float: training, decisions)."""
        h = torch.cat([self.h_s(z_hat), self.ref(ref)], 1)
        out = self.fuse(h)
        return out[:, : self.M], out[:, self.M :]

    def forward(self, diff: torch.Tensor, ref: torch.Tensor) -> dict:
        """Likelihoods of ``diff = y - ref`` (noise for the rate in training, as in CompressAI)."""
        z = self.h_a(diff)
        z_hat, z_lik = self.entropy_bottleneck(z)
        v, mu = self.params(z_hat, ref)
        noisy = diff + torch.empty_like(diff).uniform_(-0.5, 0.5) if self.training else torch.round(diff - mu) + mu
        lik = self.likelihood._likelihood(noisy, self.grid.scale(v), mu)
        lik = self.likelihood.likelihood_lower_bound(lik)
        return {"likelihoods": {"y": lik, "z": z_lik}, "v": v, "mu": mu}

    def exact(self) -> ExactConditional:
        """The fixed-point form (built once; the model is at inference from then on)."""
        if self._exact is None:
            self.eval().requires_grad_(False)
            # Coding tables ship with the weights (computing them is float work that could differ between
            # machines); only a model that was never exported builds its own, and the registry's stream
            # coders refuse it (tables_shipped).
            if self.entropy_bottleneck._quantized_cdf.numel() == 0:
                self.entropy_bottleneck.update(force=True)
            self._exact = ExactConditional(self)
        return self._exact


class ExactConditional:
    """:class:`ConditionalEntropyModel`'s means and table indexes in fixed point: the same on every machine.

    Its inputs must be the same on every machine too: a decoded hyper latent (integers
    plus the bottleneck's medians) and a reference latent computed exactly (intra
    frames with exact means, predicted frames from exact means); each is put in fixed
    point by one rounding."""

    def __init__(self, model: ConditionalEntropyModel):
        self.M = model.M
        self.levels = model.grid.levels
        self.h_s = FixedPointNet(model.h_s)
        self.ref = FixedPointNet(model.ref)
        self.fuse = FixedPointNet(model.fuse)

    def spans(self, lo: int, hi: int, axis: int = 0) -> tuple[tuple[int, int], tuple[int, int]]:
        """The positions along ``axis`` of the hyper latent and of the reference that outputs ``lo .. hi``
        read (:meth:`~.entropy.FixedPointNet.span`)."""
        lo, hi = self.fuse.span(lo, hi, axis)
        return self.h_s.span(lo, hi, axis), self.ref.span(lo, hi, axis)

    def hyper_window(self, window: Window, size: tuple[int, int], z_size: tuple[int, int]) -> Window:
        """The positions of the hyper latent (``z_size``) that outputs in ``window`` of a latent ``size``
        large read."""
        return self.h_s.input_window(self.fuse.input_window(window, size), z_size)

    @property
    def windowed(self) -> bool:
        """Whether a window of the output can be computed alone (:meth:`~.entropy.FixedPointNet.run`)."""
        return self.h_s.windowed and self.ref.windowed and self.fuse.windowed

    def __call__(self, z_hat: torch.Tensor, ref: torch.Tensor,
                 window: Window | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Table indexes (int32) and means (float64, exact) of the difference from ``ref``; with ``window``
        (latent positions, :meth:`~.entropy.FixedPointNet.run`), there only."""
        net = self.fuse
        if window is None:
            h = torch.cat([self.h_s.run(self.h_s.to_fixed(z_hat))[0], self.ref.run(self.ref.to_fixed(ref))[0]], 1)
            out = net.run(h, wide=True)[0]
        else:
            size = tuple(ref.shape[-2:])
            need = net.input_window(window, size)  # what the fusion reads of both branches
            near = self.ref.input_window(need, size)
            h = torch.cat([self.h_s.run(self.h_s.to_fixed(z_hat), window=need)[0],
                           self.ref.run(self.ref.to_fixed(cut(ref, (0, 0), near)[0]), window=need,
                                        origin=(near[0][0], near[1][0]), size=size)[0]], 1)
            out = net.run(h, wide=True, window=window, origin=(need[0][0], need[1][0]), size=size)[0]
        out = out * 2.0 ** -(net.ACT_BITS + net.WEIGHT_BITS)
        v, mu = out[:, : self.M], out[:, self.M :]
        indexes = torch.floor(v + 0.5).clamp_(0, self.levels - 1).to(torch.int32)
        return indexes, mu


@torch.no_grad()
def measure_synthesis_energy(synthesis: nn.Module, u: torch.Tensor, step: float = 0.5) -> torch.Tensor:
    """Pixel energy (images in [0, 1], summed over colours) per unit of error in each input channel of
    ``synthesis``, linearised around a real input ``u`` [1, M, h, w]: each channel is moved by
    ``±step`` (random signs) at every fourth position, and the change of the output measured."""
    base = synthesis(u)
    energy = torch.empty(u.shape[1])
    g = torch.Generator().manual_seed(0)
    grid = torch.zeros_like(u[:, :1])
    grid[..., 2::4, 2::4] = 1
    n = float(grid.sum())
    for c in range(u.shape[1]):
        signs = torch.randint(0, 2, grid.shape, generator=g).to(u.dtype) * 2 - 1
        du = u.clone()
        du[:, c : c + 1] += step * grid * signs
        energy[c] = float((synthesis(du) - base).square().sum()) / (n * step * step)
    return energy
