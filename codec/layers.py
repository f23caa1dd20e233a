"""Inference forms of CompressAI layers."""

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
    run in place. The output is the same, bit for bit (tested).
    """

    def __init__(self, gdn: GDN):
        super().__init__()
        with torch.no_grad():
            c = gdn.beta.numel()
            self.inverse = gdn.inverse
            self.register_buffer("beta", gdn.beta_reparam(gdn.beta).detach().clone())
            self.register_buffer("gamma", gdn.gamma_reparam(gdn.gamma).detach().reshape(c, c, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = F.conv2d(x * x, self.gamma, self.beta)
        norm = norm.sqrt_() if self.inverse else norm.rsqrt_()
        return norm.mul_(x)


def freeze_gdn(module: nn.Module) -> nn.Module:
    """Replace every GDN inside ``module`` by its :class:`FrozenGDN`, in place."""
    for name, child in module.named_children():
        if isinstance(child, GDN):
            setattr(module, name, FrozenGDN(child))
        else:
            freeze_gdn(child)
    return module


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
        # Output row s*u + a takes input row u + d through kernel row a + p - s*d.
        taps = {a: {d: a + p - s * d for d in range(-k, k + 1) if 0 <= a + p - s * d < k} for a in range(s)}
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


class ExactHyperSynthesis:
    """A trained hyper-synthesis transform whose scale output is the same on every machine.

    The decoder must pick the entropy model of every latent element from the scale
    it predicts exactly as the encoder did: a scale that lands one rounding error on
    the other side of a scale-table boundary selects another table and the rest of
    the stream decodes as garbage. Float convolutions round differently with the
    thread count, the instruction set and the library, and over the ~4 * 10^5 scales
    of a 720p frame one of them crossing a boundary is no rare event (measured:
    a textured 720p frame coded with two threads decoded as noise with one or
    three). Ballé, Johnston, Minnen, "Integer Networks
    for Data Compression with Latent-Variable Models" (ICLR 2019) fix it with
    integer arithmetic; here the trained float weights are used in fixed point:
    activations with ``ACT_BITS`` fractional bits, weights with ``WEIGHT_BITS``, each
    held as an integer in float64. Every product and partial sum of a convolution
    is then an integer below 2**53, so any summation order gives the same exact
    result; the activation's negative slope is one IEEE multiplication, and the
    rescaling between layers a division by a power of two and a floor.

    Only the scales need this. The means half of the last layer runs in float32 on
    the exact hidden activations: a mean that differs in its last bit moves a
    reconstruction by as much, and the stream stays in step. The object holds the
    weights as they were when it was built: for trained models at inference.
    """

    ACT_BITS = 16
    WEIGHT_BITS = 16
    LIMIT = 2.0**52

    def __init__(self, h_s: nn.Sequential, scale_channels: int):
        self.steps: list[tuple] = []
        convs = [m for m in h_s if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        if not convs or type(convs[-1]) is not nn.Conv2d:
            raise TypeError("ExactHyperSynthesis needs a hyper-synthesis that ends in a convolution")
        for m in h_s:
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                w, b = m.weight.detach().double(), m.bias.detach().double()
                if m is convs[-1]:
                    # The means' part stays float32 (see above).
                    self.means = (m.weight.detach()[scale_channels:].clone(), m.bias.detach()[scale_channels:].clone(),
                                  m.stride, m.padding)
                    w, b = w[:scale_channels], b[:scale_channels]
                w_int = torch.round(w * 2.0**self.WEIGHT_BITS)
                b_int = torch.round(b * 2.0 ** (self.ACT_BITS + self.WEIGHT_BITS))
                per_out = (0, 2, 3) if isinstance(m, nn.ConvTranspose2d) else (1, 2, 3)
                # Integer sums of integers below 2**53: exact, whatever the order.
                l1 = float(w_int.abs().sum(per_out).max())
                self.steps.append(("deconv" if isinstance(m, nn.ConvTranspose2d) else "conv", m, w_int, b_int, l1,
                                   float(b_int.abs().max())))
            elif isinstance(m, nn.LeakyReLU):
                self.steps.append(("leaky", float(m.negative_slope)))
            elif isinstance(m, nn.ReLU):
                self.steps.append(("leaky", 0.0))
            else:
                raise TypeError(f"ExactHyperSynthesis cannot compute {type(m).__name__}")

    def __call__(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scales (float64, exact) and means (float32) for a decoded hyper latent.

        Raises ``OverflowError`` when a sum could pass 2**52 (a hyper latent thousands
        of times larger than any a trained model produces)."""
        x = torch.round(z_hat.double() * 2.0**self.ACT_BITS)
        wide = False  # whether x is at the scale of a layer's sums (ACT_BITS + WEIGHT_BITS)
        hidden = x
        for step in self.steps:
            if step[0] == "leaky":
                slope = step[1]
                x = torch.where(x >= 0, x, x * slope)
                continue
            kind, m, w_int, b_int, l1, b_max = step
            if wide:
                x = torch.floor(x * 2.0**-self.WEIGHT_BITS)
                wide = False
            if float(x.abs().max()) * l1 + b_max >= self.LIMIT:
                raise OverflowError("hyper latent out of the range the exact hyper-synthesis can compute")
            hidden = x
            if kind == "deconv":
                x = F.conv_transpose2d(x, w_int, b_int, m.stride, m.padding, m.output_padding)
            else:
                x = F.conv2d(x, w_int, b_int, m.stride, m.padding)
            wide = True
        scales = x * 2.0 ** -(self.ACT_BITS + self.WEIGHT_BITS)
        w, b, stride, padding = self.means
        means = F.conv2d((hidden * 2.0**-self.ACT_BITS).float(), w, b, stride, padding)
        return scales, means
