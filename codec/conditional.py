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

With ``context``, the difference is coded in two passes over a checkerboard
(He et al., "Checkerboard Context Model for Efficient Learned Image
Compression", CVPR 2021): the *anchors* (latent positions whose row and column
add up to an even number) are coded first with the parameters above; the others
then also see the decoded anchor differences around them, through a small
branch whose output corrects the first pass's parameters (it starts at zero, so
a model fine-tuned from one without context begins as that model). What moves
is spatially coherent: where a neighbour's difference is large, a position's is
likely to be.

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


def anchors(size: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """The checkerboard's first pass [1, 1, h, w] (bool) for positions ``size`` large from ``origin`` of the
    frame's latent: those whose row and column add up to an even number."""
    r = torch.arange(origin[0], origin[0] + size[0])[:, None]
    c = torch.arange(origin[1], origin[1] + size[1])[None, :]
    return ((r + c) % 2 == 0)[None, None]


class ConditionalEntropyModel(nn.Module):
    """Means and scales of a predicted frame's latent difference from its reference.

    Args:
        M (int): latent channels (the intra model's).
        N (int): channels of the hyper path and of the fusion.
        Z (int): channels of the difference's hyper latent (at 1/4 of the latent's resolution).
        context (bool): code the difference in two checkerboard passes, the second seeing the first's
            decoded values (He et al., CVPR 2021).
    """

    def __init__(self, M: int = 192, N: int = 64, Z: int = 32, context: bool = False):
        super().__init__()
        self.M, self.N, self.Z, self.context = M, N, Z, bool(context)
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
        if self.context:
            self.ctx = nn.Sequential(conv(M, N, 5, 1))
            self.refine = nn.Sequential(nn.LeakyReLU(), conv(3 * N, N, 3, 1), nn.LeakyReLU(), conv(N, 2 * M, 1, 1))
            with torch.no_grad():  # the second pass starts as the first
                self.refine[-1].weight.zero_()
                self.refine[-1].bias.zero_()
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

    @classmethod
    def from_state_dict(cls, state: dict) -> "ConditionalEntropyModel":
        """A model of the shape ``state`` holds (widths, context), with its weights."""
        model = cls(state["ref.0.weight"].shape[1], state["ref.0.weight"].shape[0], state["h_a.4.weight"].shape[0],
                    context="ctx.0.weight" in state)
        model.load_state_dict(state)
        return model

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

    def params(self, z_hat: torch.Tensor, ref: torch.Tensor,
               diff: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(v, mu)``: scale-table positions and means of the difference (float: training, decisions).

        With ``context`` and ``diff`` (the difference to be coded), the second pass's parameters where it
        codes: the anchors' decoded values as they would be, ``mu + round(diff - mu)``, as its context."""
        h = torch.cat([self.h_s(z_hat), self.ref(ref)], 1)
        out = self.fuse(h)
        if self.context and diff is not None:
            first = anchors(diff.shape[-2:]).to(diff.dtype)
            mu = out[:, self.M :]
            seen = (torch.round(diff - mu) + mu) * first
            out = out + (1 - first) * self.refine(torch.cat([h, self.ctx(seen)], 1))
        return out[:, : self.M], out[:, self.M :]

    def forward(self, diff: torch.Tensor, ref: torch.Tensor) -> dict:
        """Likelihoods of ``diff = y - ref`` (noise for the rate in training, as in CompressAI)."""
        z = self.h_a(diff)
        z_hat, z_lik = self.entropy_bottleneck(z)
        v, mu = self.params(z_hat, ref, diff)
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
    plus the bottleneck's medians), a reference latent computed exactly (intra
    frames with exact means, predicted frames from exact means) and, for the second
    checkerboard pass, the first pass's decoded differences (exact means plus integer
    symbols); each is put in fixed point by one rounding."""

    def __init__(self, model: ConditionalEntropyModel):
        self.M = model.M
        self.levels = model.grid.levels
        self.context = model.context
        self.h_s = FixedPointNet(model.h_s)
        self.ref = FixedPointNet(model.ref)
        self.fuse = FixedPointNet(model.fuse)
        if self.context:
            self.ctx = FixedPointNet(model.ctx)
            self.refine = FixedPointNet(model.refine)
            if self.refine.span(0, 0) != self.fuse.span(0, 0):
                raise ValueError("the second pass must read the features where the first does")

    def spans(self, lo: int, hi: int, axis: int = 0) -> tuple[tuple[int, int], tuple[int, int]]:
        """The positions along ``axis`` of the hyper latent and of the reference that outputs ``lo .. hi``
        read (:meth:`~.entropy.FixedPointNet.span`)."""
        lo, hi = self.fuse.span(lo, hi, axis)
        return self.h_s.span(lo, hi, axis), self.ref.span(lo, hi, axis)

    def hyper_window(self, window: Window, size: tuple[int, int], z_size: tuple[int, int]) -> Window:
        """The positions of the hyper latent (``z_size``) that outputs in ``window`` of a latent ``size``
        large read (either pass: the second reads the same features as the first)."""
        return self.h_s.input_window(self.fuse.input_window(window, size), z_size)

    @property
    def windowed(self) -> bool:
        """Whether a window of the output can be computed alone (:meth:`~.entropy.FixedPointNet.run`)."""
        nets = [self.h_s, self.ref, self.fuse] + ([self.ctx, self.refine] if self.context else [])
        return all(n.windowed for n in nets)

    @staticmethod
    def _run(net: FixedPointNet, x: torch.Tensor, need: Window | None, size: tuple[int, int],
             wide: bool = False) -> torch.Tensor:
        """``net``'s sums at ``need`` (None: everywhere) from ``x`` (a float input when not ``wide``,
        cut here to what ``need`` reads; else another net's sums at ``net.input_window(need)``)."""
        if need is None:
            return net.run(x if wide else net.to_fixed(x), wide=wide)[0]
        near = net.input_window(need, size)
        if not wide:
            x = net.to_fixed(cut(x, (0, 0), near)[0])
        return net.run(x, wide=wide, window=need, origin=(near[0][0], near[1][0]), size=size)[0]

    def __call__(self, z_hat: torch.Tensor, ref: torch.Tensor, window: Window | None = None,
                 seen: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Table indexes (int32) and means (float64, exact) of the difference from ``ref``; with ``window``
        (latent positions, :meth:`~.entropy.FixedPointNet.run`), there only. With ``seen`` (a model with
        context: the first pass's decoded differences at its anchors, zeros elsewhere), the second pass's."""
        size = tuple(ref.shape[-2:])
        need = None if window is None else self.fuse.input_window(window, size)  # what the fusion reads
        if need is None:
            hyper = self.h_s.run(self.h_s.to_fixed(z_hat))[0]
        else:
            hyper = self.h_s.run(self.h_s.to_fixed(z_hat), window=need)[0]
        h = torch.cat([hyper, self._run(self.ref, ref, need, size)], 1)
        out = self._run(self.fuse, h, window, size, wide=True)
        if seen is not None:
            if not self.context:
                raise ValueError("a second pass needs a conditional model with context")
            # The refinement reads the same positions of the features as the fusion (both 3 x 3, then 1 x 1).
            c = self._run(self.ctx, seen, need, size)
            out = out + self._run(self.refine, torch.cat([h, c], 1), window, size, wide=True)
        out = out * 2.0 ** -(self.fuse.ACT_BITS + self.fuse.WEIGHT_BITS)
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
