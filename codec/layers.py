"""Inference forms of CompressAI layers (transforms that only make pixels: fast, not exact)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.layers import GDN
from torch import nn


class FrozenGDN(nn.Module):
    """A trained (inverse) GDN (Ballé, Laparra, Simoncelli, "Density Modeling of Images
    Using a Generalized Normalization Transformation", ICLR 2016) for inference only.

    CompressAI's layer re-derives ``beta`` and ``gamma`` from their non-negative
    parametrisation on every call and allocates a new tensor for each step of
    ``x * rsqrt(beta + gamma * x^2)``; here the two are derived once and the steps
    run in place (tile by tile on channels-last inputs). The output is the same,
    bit for bit (tested).
    """

    def __init__(self, gdn: GDN):
        super().__init__()
        with torch.no_grad():
            c = gdn.beta.numel()
            self.inverse = gdn.inverse
            self.register_buffer("beta", gdn.beta_reparam(gdn.beta).detach().clone())
            self.register_buffer("gamma", gdn.gamma_reparam(gdn.gamma).detach().reshape(c, c, 1, 1).clone())

    #: Rows (pixels) per tile of a channels-last input: a tile (2 MB at 64 channels) stays in cache.
    TILE_ROWS = 8192

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last):
            norm = F.conv2d(x * x, self.gamma, self.beta)
            norm = norm.sqrt_() if self.inverse else norm.rsqrt_()
            return norm.mul_(x)
        # Channels-last, the 1x1 convolution is a matrix product over pixels. At full
        # resolution the tensor is tens of MB and each whole-tensor step (square, product,
        # root, multiply) streams it through memory; tile by tile they run from cache,
        # about 1.5x faster for the layers next to the image.
        b, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)
        out = torch.empty_like(rows)
        gamma_t = self.gamma.reshape(c, c).t()
        for start in range(0, rows.shape[0], self.TILE_ROWS):
            tile = rows[start : start + self.TILE_ROWS]
            norm = torch.addmm(self.beta, tile * tile, gamma_t, out=out[start : start + self.TILE_ROWS])
            norm = norm.sqrt_() if self.inverse else norm.rsqrt_()
            norm.mul_(tile)
        return out.reshape(b, h, w, c).permute(0, 3, 1, 2)


def freeze_gdn(module: nn.Module) -> nn.Module:
    """Replace every GDN inside ``module`` by its :class:`FrozenGDN`, in place."""
    for name, child in module.named_children():
        if isinstance(child, GDN):
            setattr(module, name, FrozenGDN(child))
        else:
            freeze_gdn(child)
    return module


def phase_taps(k: int, s: int, p: int) -> dict[int, dict[int, int]]:
    """Which kernel taps feed each output phase of a stride-``s`` transposed convolution.

    Output row ``s * u + a`` takes input row ``u + d`` through kernel row
    ``taps[a][d]`` (the same holds for columns); valid when the output is exactly
    ``s`` times the input, i.e. ``k - 2 * p - s + output_padding == 0``.
    """
    return {a: {d: a + p - s * d for d in range(-k, k + 1) if 0 <= a + p - s * d < k} for a in range(s)}


class PolyphaseDeconv(nn.Module):
    """A trained stride-``s`` transposed convolution as one stride-1 convolution and a
    pixel shuffle, for inference only.

    Each of the ``s * s`` output phases of a transposed convolution is an ordinary
    convolution of the input with the kernel taps of that phase (the sub-pixel
    convolution of Shi et al., "Real-Time Single Image and Video Super-Resolution
    Using an Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016). For the
    synthesis transform's last layer (64 channels to 3 at full resolution) oneDNN
    runs this form about twice as fast as the transposed convolution on a CPU.
    The sums are the same taps in another order: equal to float rounding, not bit
    for bit, which is why it is used only where encoder and decoder both use it.
    """

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        (k, kw), (s, sw), (p, pw), (op, opw) = deconv.kernel_size, deconv.stride, deconv.padding, deconv.output_padding
        if (k, s, p, op) != (kw, sw, pw, opw) or deconv.groups != 1 or deconv.dilation != (1, 1):
            raise ValueError("PolyphaseDeconv needs a square, ungrouped, undilated transposed convolution")
        if k - 2 * p - s + op != 0:
            raise ValueError("PolyphaseDeconv needs an output exactly stride times the input")
        taps = phase_taps(k, s, p)
        ds = [d for t in taps.values() for d in t]
        self.pad = max(max(ds), -min(ds))
        size = 2 * self.pad + 1
        w = deconv.weight.detach()  # [in, out, k, k]
        cin, cout = w.shape[:2]
        kern = w.new_zeros(cout, s, s, cin, size, size)
        for a, rows in taps.items():
            for b, cols in taps.items():
                for dy, ky in rows.items():
                    for dx, kx in cols.items():
                        kern[:, a, b, :, dy + self.pad, dx + self.pad] = w[:, :, ky, kx].t()
        self.stride = s
        self.register_buffer("weight", kern.reshape(cout * s * s, cin, size, size))
        bias = deconv.bias.detach() if deconv.bias is not None else w.new_zeros(cout)
        self.register_buffer("bias", bias.repeat_interleave(s * s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(F.conv2d(x, self.weight, self.bias, padding=self.pad), self.stride)
