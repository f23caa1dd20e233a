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
