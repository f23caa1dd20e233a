"""Arithmetic that decides how bits are read (codec/exact.py): basic operations, close to the true values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidsieve.codec import exact


def test_exp_is_within_a_few_ulp_of_the_true_value_over_the_gains_range():
    x = np.concatenate([np.linspace(-20, 20, 20001), np.random.default_rng(0).uniform(-5, 5, 20000), [0.0, -0.0]])
    got = exact.exp(x)
    want = np.array([math.exp(v) for v in x])
    ulps = np.abs(got - want) / np.spacing(want)
    assert ulps.max() <= 4, ulps.max()
    assert exact.exp(0.0) == 1.0 and exact.exp(1.0) == pytest.approx(math.e, rel=1e-15)
    with pytest.raises(ValueError):
        exact.exp([800.0])


def test_exact_gains_are_the_models_gains_to_float32_rounding(codec):
    """The coders' gains (basic operations) and training's (torch's exp) are the same function."""
    m = codec.model
    qs = [1.0, 1.25, 3.7, 4.0, 6.5, 7.999, 8.0]
    g, ig = m.coding_gains(qs)
    tg, tig = m.gains(torch.tensor(qs))
    assert g.dtype == torch.float64 and g.shape == tg.shape
    assert torch.allclose(g, tg.double(), rtol=1e-6) and torch.allclose(ig, tig.double(), rtol=1e-6)
    # Qualities are read as float32, as payloads store them.
    assert torch.equal(m.coding_gains([4.1])[0], m.coding_gains([float(np.float32(4.1))])[0])


def test_grid_and_check_values():
    x = np.array([1.0 + 2.0**-20, -3.5, 2.0**-17 * 3])
    assert np.array_equal(exact.to_grid(x), [1.0, -3.5, 2.0**-16 * 2])
    a = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    b = a.clone()
    assert exact.check_value(a, a) == exact.check_value(b, b)
    b.view(-1)[5] = torch.nextafter(b.view(-1)[5], torch.tensor(math.inf, dtype=torch.float64))
    assert exact.check_value(a, a) != exact.check_value(a, b)
    assert 0 <= exact.check_value(a) < 2**32
