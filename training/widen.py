"""Grow a trained model's latent to more channels without changing what it decodes.

A narrow latent caps quality at high rates: with M=96 channels at 1/16 of the
resolution the transforms keep one value per eight input values, and even
without quantisation the reconstruction stops near 31 dB on Kodak. Training a
wider model from scratch throws away everything the narrow one has learnt, so
this embeds the narrow model in the wide one, function-preserving in the spirit
of Net2Net (Chen, Goodfellow, Shlens, ICLR 2016): the new latent channels and
hyper-synthesis units start with zero weight on every path into what the old
model computes, and training then teaches them to carry the detail the old
latent could not.
"""

from __future__ import annotations

import torch

from ..codec.models import GainedMeanScaleHyperprior


def widen_latent(state: dict, M: int, seed: int = 0) -> dict:
    """A state dict for ``GainedMeanScaleHyperprior(N, M)`` built from a narrower one.

    Args:
        state: weights of a trained ``GainedMeanScaleHyperprior(N, M0)``.
        M: the new latent width, at least ``M0``.
        seed: seed for the new channels' initial weights.
    """
    N, M0 = state["g_a.0.weight"].shape[0], state["g_a.6.weight"].shape[0]
    if M < M0:
        raise ValueError(f"cannot narrow the latent from {M0} to {M} channels")
    with torch.random.fork_rng():  # the caller's RNG stream is left as it was
        torch.manual_seed(seed)
        new = GainedMeanScaleHyperprior(N, M).state_dict()
    H0, H = M0 * 3 // 2, M * 3 // 2
    out = {}
    for k, v in new.items():
        old = state.get(k)
        if old is not None and old.shape == v.shape:
            out[k] = old.clone()
        else:
            out[k] = v.clone()
    # Analysis: new latent channels start small, so they cost few bits.
    out["g_a.6.weight"][:M0] = state["g_a.6.weight"]
    out["g_a.6.weight"][M0:] *= 0.1
    out["g_a.6.bias"][:M0] = state["g_a.6.bias"]
    out["g_a.6.bias"][M0:] = 0
    # Synthesis and hyper-analysis ignore the new channels until trained.
    out["g_s.0.weight"][:M0] = state["g_s.0.weight"]
    out["g_s.0.weight"][M0:] = 0
    out["h_a.0.weight"][:, :M0] = state["h_a.0.weight"]
    out["h_a.0.weight"][:, M0:] = 0
    # Hyper-synthesis: old units keep their weights, new units feed nothing old.
    out["h_s.0.weight"][:, :M0] = state["h_s.0.weight"]
    out["h_s.0.bias"][:M0] = state["h_s.0.bias"]
    out["h_s.2.weight"][:M0, :H0] = state["h_s.2.weight"]
    out["h_s.2.weight"][M0:] = 0
    out["h_s.2.bias"][:H0] = state["h_s.2.bias"]
    w4, b4 = state["h_s.4.weight"], state["h_s.4.bias"]
    out["h_s.4.weight"][:, H0:] = 0
    # Output is (scales, means), each M wide: the old halves move to their new places.
    out["h_s.4.weight"][:M0, :H0] = w4[:M0]
    out["h_s.4.weight"][M:M + M0, :H0] = w4[M0:]
    out["h_s.4.bias"][:M0] = b4[:M0]
    out["h_s.4.bias"][M:M + M0] = b4[M0:]
    out["h_s.4.bias"][M + M0:] = 0
    for name in ("log_gain", "log_inv_gain"):
        out[name][:, :M0] = state[name]
        out[name][:, M0:] = state[name].mean(1, keepdim=True)
    assert out["h_s.2.weight"].shape == (M, H, 5, 5)
    return out
