"""Fixed-point nets: entropy-model parameters computed the same on every machine.

Float convolutions round differently with the thread count, the instruction set
and the library; an entropy-model index computed from a scale that differs by one
ulp between encoder and decoder corrupts the rANS stream. The nets here compute
in integers held in float64 (:class:`IntegerConv`, :class:`FixedPointNet`,
:class:`ExactHyperSynthesis`), whose sums are exact in any order, and can compute
a window of their output alone, bit for bit the whole frame's
(:meth:`FixedPointNet.run`, :func:`exact_in_blocks`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .blocks import BLOCK, tiles
from .layers import phase_taps


class IntegerConv:
    """A (transposed) convolution of integer-valued float64 tensors, as one matrix
    product per kernel tap on shifted views of the padded input.

    When every product and partial sum is an integer below 2**53 (what
    :class:`ExactHyperSynthesis` checks), float64 sums are exact in any order, so
    the order is free to be the fastest one: torch has no oneDNN kernel for float64
    convolutions, and BLAS's float64 matrix product on these views takes about two
    thirds of the time of ``F.conv2d`` / ``F.conv_transpose2d`` for the hyper-synthesis's
    layers on a CPU. A stride-1 convolution is the one-phase case of the transposed
    convolution's phases (:func:`phase_taps`). Other geometries (strided or
    size-changing convolutions, grouped or dilated ones) go to torch.

    Args:
        m: the trained layer, for its geometry.
        weight: its weights as integers (float64), in ``m``'s layout.
        bias: its bias as integers (float64).
    """

    def __init__(self, m: nn.Conv2d | nn.ConvTranspose2d, weight: torch.Tensor, bias: torch.Tensor):
        self.m, self.weight, self.bias = m, weight, bias
        self.transposed = isinstance(m, nn.ConvTranspose2d)
        k, s, p = m.kernel_size[0], m.stride[0], m.padding[0]
        plain = (m.kernel_size, m.stride, m.padding) == ((k, k), (s, s), (p, p)) and m.groups == 1 \
            and m.dilation == (1, 1)
        if self.transposed:
            op = m.output_padding[0]
            self.fast = plain and m.output_padding == (op, op) and k - 2 * p - s + op == 0
        else:
            self.fast = plain and s == 1 and k == 2 * p + 1
        if not self.fast:
            return  # torch's convolution in __call__; no tap table needed
        if self.transposed:
            self.taps = phase_taps(k, s, p)
            per_tap = weight.permute(2, 3, 1, 0)  # [Cin, Cout, k, k] -> [k, k, Cout, Cin]
        else:
            # Output row u takes input row u + d through kernel row d + p.
            self.taps = {0: {d - p: d for d in range(k)}}
            per_tap = weight.permute(2, 3, 0, 1)  # [Cout, Cin, k, k] -> [k, k, Cout, Cin]
        self.per_tap = per_tap.contiguous()
        self.pad = max(abs(d) for t in self.taps.values() for d in t)

    def span(self, lo: int, hi: int, axis: int = 0) -> tuple[int, int]:
        """The input positions along ``axis`` (0: rows, 1: columns) that outputs ``lo .. hi`` read
        (positions outside the input are its zero padding)."""
        m = self.m
        k, s, p, dil = m.kernel_size[axis], m.stride[axis], m.padding[axis], m.dilation[axis]
        if self.transposed:
            # Output s * u + a reads input u + d for the taps d of its phase a.
            ds = [d for taps in phase_taps(k, s, p).values() for d in taps]
            return lo // s + min(ds), hi // s + max(ds)
        return s * lo - p, s * hi - p + dil * (k - 1)

    def out_origin(self, origin: int, axis: int = 0) -> int:
        """Where the output of an input that starts at position ``origin`` starts (a fast layer's
        output is the input's size, or ``stride`` times it for a transposed convolution)."""
        return self.m.stride[axis] * origin if self.transposed else origin

    def out_size(self, size: int, axis: int = 0) -> int:
        """The output's size along ``axis`` for an input ``size`` positions long (a fast layer)."""
        return self.m.stride[axis] * size if self.transposed else size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self.m
        if not self.fast:
            if self.transposed:
                return F.conv_transpose2d(x, self.weight, self.bias, m.stride, m.padding, m.output_padding)
            return F.conv2d(x, self.weight, self.bias, m.stride, m.padding)
        return torch.cat([self._one(x[i : i + 1]) for i in range(x.shape[0])])

    def _one(self, x: torch.Tensor) -> torch.Tensor:
        _, c, h, w = x.shape
        pad, phases, cout = self.pad, len(self.taps), self.per_tap.shape[2]
        wp = w + 2 * pad
        # Row-major over the padded width: the input shifted by (d, e) is one contiguous
        # run of the flattened padded input, and each output row carries 2 * pad columns
        # of spill that are cut off at the end.
        flat = F.pad(x, (pad, pad, pad, pad)).reshape(c, -1)
        n = (h - 1) * wp + w
        out = self.bias[None, None, :, None].repeat(phases, phases, 1, n)  # a copy, even where n == 1
        for a, rows in self.taps.items():
            for b, cols in self.taps.items():
                acc = out[a, b]
                for d, ky in rows.items():
                    for e, kx in cols.items():
                        start = (d + pad) * wp + e + pad
                        acc.addmm_(self.per_tap[ky, kx], flat[:, start : start + n])
        out = F.pad(out, (0, h * wp - n)).reshape(phases, phases, cout, h, wp)[..., :w]
        if phases == 1:
            return out[0, 0][None].contiguous()
        return F.pixel_shuffle(out.permute(2, 0, 1, 3, 4).reshape(1, cout * phases * phases, h, w), phases)


#: Rows and columns of a tensor's positions, each half-open: ``((r0, r1), (c0, c1))``.
Window = tuple[tuple[int, int], tuple[int, int]]


def cut(x: torch.Tensor, origin: tuple[int, int], window: Window) -> tuple[torch.Tensor, tuple[int, int]]:
    """The positions ``window`` (half-open rows and columns) of ``x``, which holds positions from ``origin``
    on; and where the cut starts."""
    (r0, r1), (c0, c1) = window
    top, left = r0 - origin[0], c0 - origin[1]
    if top < 0 or left < 0 or r1 - origin[0] > x.shape[-2] or c1 - origin[1] > x.shape[-1]:
        raise ValueError(f"window {window} is outside the positions held ({origin}, {tuple(x.shape[-2:])})")
    return x[..., top : r1 - origin[0], left : c1 - origin[1]], (r0, c0)


class FixedPointNet:
    """A trained stack of convolutions and (leaky) ReLUs computed in fixed point: the same on every machine.

    Float convolutions round differently with the thread count, the instruction set
    and the library. Ballé, Johnston and Minnen, "Integer Networks for Data
    Compression with Latent-Variable Models" (ICLR 2019) make entropy-model
    parameters reproducible with integer arithmetic; here the trained float weights
    are used in fixed point: activations with ``ACT_BITS`` fractional bits, weights
    with ``WEIGHT_BITS``, each held as an integer in float64. Every product and
    partial sum of a convolution is then an integer below 2**53, so any summation
    order gives the same exact result; a leaky slope is one IEEE multiplication and
    the rescaling between layers a division by a power of two and a floor. The
    object holds the weights as they were when it was built: for trained models at
    inference.

    Args:
        layers: ``nn.Conv2d`` / ``nn.ConvTranspose2d`` / ``nn.LeakyReLU`` / ``nn.ReLU`` modules in order,
            ending in a convolution.
        rows: the output channels of the last convolution to compute (default: all).
    """

    ACT_BITS = 16
    WEIGHT_BITS = 16
    LIMIT = 2.0**52

    def __init__(self, layers, rows: slice | None = None):
        self.steps: list[tuple] = []
        layers = list(layers)
        convs = [m for m in layers if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        if not convs or layers[-1] is not convs[-1]:
            raise TypeError(f"{type(self).__name__} needs layers that end in a convolution")
        for m in layers:
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                w, b = m.weight.detach().double(), m.bias.detach().double()
                if m is convs[-1] and rows is not None:
                    w, b = (w[rows], b[rows]) if isinstance(m, nn.Conv2d) else (w[:, rows], b[rows])
                self.steps.append(("conv", *self.integer_conv(m, w, b)))
            elif isinstance(m, nn.LeakyReLU):
                self.steps.append(("leaky", float(m.negative_slope)))
            elif isinstance(m, nn.ReLU):
                self.steps.append(("leaky", 0.0))
            else:
                raise TypeError(f"{type(self).__name__} cannot compute {type(m).__name__}")

    @classmethod
    def integer_conv(cls, m: nn.Conv2d | nn.ConvTranspose2d, w: torch.Tensor, b: torch.Tensor) -> tuple:
        """The layer with integer weights, and the bounds its sums are checked against."""
        w_int = torch.round(w * 2.0**cls.WEIGHT_BITS)
        b_int = torch.round(b * 2.0 ** (cls.ACT_BITS + cls.WEIGHT_BITS))
        per_out = (0, 2, 3) if isinstance(m, nn.ConvTranspose2d) else (1, 2, 3)
        # Integer sums of integers below 2**53: exact, whatever the order.
        l1 = float(w_int.abs().sum(per_out).max())
        return IntegerConv(m, w_int, b_int), l1, float(b_int.abs().max())

    def to_fixed(self, x: torch.Tensor) -> torch.Tensor:
        """A float input in the fixed point the first layer takes (exact for inputs that are)."""
        return torch.round(x.double() * 2.0**self.ACT_BITS)

    def conv(self, step: tuple, x: torch.Tensor) -> torch.Tensor:
        """One convolution on fixed-point activations; its sums at the scale ``ACT_BITS + WEIGHT_BITS``.

        Raises ``OverflowError`` when a sum could pass 2**52 (an input thousands of times
        larger than any a trained model produces)."""
        _, conv, l1, b_max = step
        if float(x.abs().max()) * l1 + b_max >= self.LIMIT:
            raise OverflowError(f"input out of the range {type(self).__name__} can compute exactly")
        return conv(x)

    @property
    def windowed(self) -> bool:
        """Whether :meth:`run` can compute a window of the output: every layer keeps the positions in
        step (stride-1 convolutions that keep the size, transposed ones that multiply it by their stride)."""
        return all(step[1].fast for step in self.steps if step[0] == "conv")

    def run(self, x: torch.Tensor, wide: bool = False, window: Window | None = None,
            origin: tuple[int, int] = (0, 0), size: tuple[int, int] | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """The last convolution's sums (scale ``ACT_BITS + WEIGHT_BITS``) for fixed-point input ``x``
        (at that scale too with ``wide``: another net's sums), that convolution's own input, and where
        that input starts.

        With ``window`` (``((r0, r1), (c0, c1))``, half-open, inside the output), the sums at those
        positions only: each layer computes just what the layers after it read (:meth:`span`), from
        ``x`` holding the input's positions from ``origin`` on of an input ``size`` large (default:
        ``x`` is the whole input). The sums are exact, so they are the whole input's, bit for bit, at
        the cost of the window and a few positions around it."""
        size = tuple(x.shape[-2:]) if size is None else tuple(size)
        needs: list = [None] * len(self.steps)
        if window is not None:
            if not self.windowed:
                raise ValueError(f"this {type(self).__name__} cannot compute a window of its output")
            want = [(a, b - 1) for a, b in window]
            for i in reversed(range(len(self.steps))):
                if self.steps[i][0] == "conv":
                    want = [self.steps[i][1].span(lo, hi, axis) for axis, (lo, hi) in enumerate(want)]
                    needs[i] = want
        hidden, hidden_origin = x, origin
        for step, need in zip(self.steps, needs):
            if step[0] == "leaky":
                slope = step[1]
                x = torch.where(x >= 0, x, x * slope)
                continue
            if need is not None:
                # Positions past the input's ends are the convolution's zero padding, as for the whole.
                x, origin = cut(x, origin, [(max(lo, 0), min(hi + 1, n)) for (lo, hi), n in zip(need, size)])
            if wide:
                x = torch.floor(x * 2.0**-self.WEIGHT_BITS)
            hidden, hidden_origin = x, origin
            x = self.conv(step, x)
            conv = step[1]
            origin = (conv.out_origin(origin[0], 0), conv.out_origin(origin[1], 1))
            size = (conv.out_size(size[0], 0), conv.out_size(size[1], 1))
            wide = True
        if window is not None:
            x, _ = cut(x, origin, window)
        return x, hidden, hidden_origin

    def span(self, lo: int, hi: int, axis: int = 0) -> tuple[int, int]:
        """The input positions along ``axis`` that outputs ``lo .. hi`` read through every layer.

        Sums are exact, so outputs computed on a crop of the input that holds their span (cut
        only where the whole input ends) are the whole input's, bit for bit."""
        for step in reversed(self.steps):
            if step[0] == "conv":
                lo, hi = step[1].span(lo, hi, axis)
        return lo, hi

    def input_window(self, window: Window, size: tuple[int, int]) -> Window:
        """The part of an input ``size`` large that outputs in ``window`` read (half-open, cut at its ends)."""
        out = []
        for axis, ((a, b), n) in enumerate(zip(window, size)):
            lo, hi = self.span(a, b - 1, axis)
            out.append((max(lo, 0), min(hi + 1, n)))
        return tuple(out)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The output (float64, exact) for a float input, which is first put in fixed point."""
        return self.run(self.to_fixed(x))[0] * 2.0 ** -(self.ACT_BITS + self.WEIGHT_BITS)


class ExactHyperSynthesis(FixedPointNet):
    """A trained hyper-synthesis transform whose scale output is the same on every machine.

    The decoder must pick the entropy model of every latent element from the scale
    it predicts exactly as the encoder did: a scale that lands one rounding error on
    the other side of a scale-table boundary selects another table and the rest of
    the stream decodes as garbage; over the ~4 * 10^5 scales of a 720p frame one of
    them crossing a boundary is no rare event (measured: a textured 720p frame coded
    with two threads decoded as noise with one or three). So the scales are computed
    in fixed point (:class:`FixedPointNet`).

    The means may be exact too (``exact_means``: what a stream whose latents are
    references for predicted frames needs, since the next frame's entropy model reads
    them) or float32 on the exact hidden activations (frame payloads of version 2: a
    mean that differs in its last bit moves a reconstruction by as much, and the
    stream stays in step).
    """

    def __init__(self, h_s: nn.Sequential, scale_channels: int):
        super().__init__(h_s, rows=slice(0, scale_channels))
        last = list(h_s)[-1]
        if type(last) is not nn.Conv2d:
            raise TypeError("ExactHyperSynthesis needs a hyper-synthesis that ends in a convolution")
        w, b = last.weight.detach(), last.bias.detach()
        self.means = (w[scale_channels:].clone(), b[scale_channels:].clone(), last.stride, last.padding)
        self.exact_means = self.integer_conv(last, w[scale_channels:].double(), b[scale_channels:].double())

    def __call__(self, z_hat: torch.Tensor, exact_means: bool = False,
                 window: Window | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Scales (float64, exact) and means (float64 and exact with ``exact_means``, else float32)
        for a decoded hyper latent; with ``window``, at those latent positions only (:meth:`run`).

        Raises ``OverflowError`` when a sum could pass 2**52 (a hyper latent thousands
        of times larger than any a trained model produces)."""
        x, hidden, origin = self.run(self.to_fixed(z_hat), window=window)
        unit = 2.0 ** -(self.ACT_BITS + self.WEIGHT_BITS)
        scales = x * unit
        if exact_means:
            means = self.conv(("conv", *self.exact_means), hidden) * unit
        else:
            w, b, stride, padding = self.means
            means = F.conv2d((hidden * 2.0**-self.ACT_BITS).float(), w, b, stride, padding)
        if window is not None:
            means, _ = cut(means, origin, window)  # the last layer keeps positions in step (windowed)
        return scales, means


#: Above this share of a frame's blocks, entropy parameters are computed for the whole frame at once.
WINDOWS_MAX_SHARE = 0.5


def exact_in_blocks(needed: np.ndarray, compute, windowed: bool = True) -> tuple[torch.Tensor, ...]:
    """The outputs of an exact entropy-model net at the blocks ``needed`` marks (zeros elsewhere):
    ``compute(window)`` gives them for a window of latent positions (None: the whole frame, what a
    net that is not ``windowed`` always computes).

    The nets' sums are exact, so each window, computed with just the positions around it that its
    layers read (:meth:`FixedPointNet.run`), holds the whole frame's values bit for bit: the few
    blocks of a predicted frame that use an entropy model cost about their own area, on both sides."""
    rects = tiles(needed)
    area = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in rects)
    if not windowed or not rects or area > WINDOWS_MAX_SHARE * needed.size:
        return compute(None)
    B = BLOCK
    outs = None
    for r0, r1, c0, c1 in rects:
        part = compute(((r0 * B, r1 * B), (c0 * B, c1 * B)))
        if outs is None:
            outs = tuple(p.new_zeros(*p.shape[:2], needed.shape[0] * B, needed.shape[1] * B) for p in part)
        for out, p in zip(outs, part):
            out[..., r0 * B : r1 * B, c0 * B : c1 * B] = p
    return outs


def inputs_read(needed: np.ndarray, input_window, shape: tuple[int, int], windowed: bool = True) -> np.ndarray:
    """Which positions of an input ``shape`` large (a hyper latent) the outputs at the blocks ``needed``
    marks read: the union of ``input_window(window)`` over the windows :func:`exact_in_blocks` computes
    them in (everything where the net is not ``windowed``). Outputs there depend on nothing else, so a
    coder may send the input at these positions only."""
    read = np.zeros(shape, dtype=bool)
    if not needed.any():
        return read
    if not windowed:
        read[:] = True
        return read
    B = BLOCK
    for r0, r1, c0, c1 in tiles(needed):
        (a, b), (c, d) = input_window(((r0 * B, r1 * B), (c0 * B, c1 * B)))
        read[a:b, c:d] = True
    return read
