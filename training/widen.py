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

from ..codec.models import GainedMeanScaleHyperprior, widths


def widen_latent(state: dict, M: int, seed: int = 0, new_scale: float = 0.1,
                 prior_scale: float | None = None) -> dict:
    """A state dict for ``GainedMeanScaleHyperprior(N, M)`` built from a narrower one.

    Args:
        state: weights of a trained ``GainedMeanScaleHyperprior(N, M0)``.
        M: the new latent width, at least ``M0``.
        seed: seed for the new channels' initial weights.
        new_scale: the new analysis rows' share of their initial scale. Small
            rows cost few bits, but their channels die: the synthesis reads none
            of them at first, so the rate term is all the gradient they get. A run
            that waives their rate while the synthesis learns to read them
            (``TrainConfig.new_rate_ramp``) starts them at full scale (1.0).
        prior_scale: when given, the entropy model predicts this one scale for
            every new channel (hyper-synthesis rows at zero) instead of what
            random rows say, which is near the scale bound and prices the
            new channels at several bits an element.
    """
    N, M0 = widths(state)
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
    # Analysis: new latent rows at new_scale of their initial size (small ones cost few bits).
    out["g_a.6.weight"][:M0] = state["g_a.6.weight"]
    out["g_a.6.weight"][M0:] *= new_scale
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
    if prior_scale is not None:
        out["h_s.4.weight"][M0:M] = 0
        out["h_s.4.bias"][M0:M] = prior_scale
    for name in ("log_gain", "log_inv_gain"):
        out[name][:, :M0] = state[name]
        out[name][:, M0:] = state[name].mean(1, keepdim=True)
    assert out["h_s.2.weight"].shape == (M, H, 5, 5)
    return out


def new_elements(state: dict, M0: int) -> dict[str, torch.Tensor]:
    """Which elements of a widened model's parameters :func:`widen_latent` created.

    Returns a boolean mask (True = new) for every parameter that holds new
    elements; parameters absent from the result are entirely old. A run can
    then train the new channels faster than the settled old ones.

    Args:
        state: the wide model's state dict (only shapes are read).
        M0: the latent width the model was widened from.
    """
    _, M = widths(state)
    H0 = M0 * 3 // 2
    if not 0 < M0 <= M:
        raise ValueError(f"a model with {M} latent channels cannot have been widened from {M0}")
    masks = {}

    def mark(name: str, *index) -> None:
        m = masks.setdefault(name, torch.zeros(state[name].shape, dtype=torch.bool))
        m[index] = True

    mark("g_a.6.weight", slice(M0, None))
    mark("g_a.6.bias", slice(M0, None))
    mark("g_s.0.weight", slice(M0, None))
    mark("h_a.0.weight", slice(None), slice(M0, None))
    mark("h_s.0.weight", slice(None), slice(M0, None))
    mark("h_s.0.bias", slice(M0, None))
    mark("h_s.2.weight", slice(M0, None))
    mark("h_s.2.weight", slice(None), slice(H0, None))
    mark("h_s.2.bias", slice(H0, None))
    mark("h_s.4.weight", slice(None), slice(H0, None))
    for rows in (slice(M0, M), slice(M + M0, None)):
        mark("h_s.4.weight", rows)
        mark("h_s.4.bias", rows)
    for name in ("log_gain", "log_inv_gain"):
        mark(name, slice(None), slice(M0, None))
    return {k: v for k, v in masks.items() if v.any()}
