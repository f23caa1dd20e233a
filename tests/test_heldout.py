"""``python tools/analyse.py heldout``: the held-out comparison that decides which trained weights are shipped."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, load_tool, run_tool
from vidsieve.codec.zoo import load_shipped
from vidsieve.datasets.synthetic import background
from vidsieve.training.rd import likelihood_point


@pytest.fixture(scope="module")
def shipped():
    state, _ = load_shipped("vidsieve-hyperprior")
    return state


@pytest.fixture(scope="module")
def images():
    # Sizes that are not multiples of 64, so the edge padding is exercised.
    return [background(170, 190, seed=s).astype(np.uint8) for s in (3, 4)]


def test_same_weights_score_zero(shipped, images):
    res = analyse.compare(shipped, shipped, images, (1, 4, 8))
    assert res["anchor"] == res["test"]
    assert res["bd_rate_psnr_rgb"] == pytest.approx(0.0, abs=1e-6)
    bpp = [p["bpp"] for p in res["anchor"]]
    psnr = [p["psnr_rgb"] for p in res["anchor"]]
    assert bpp == sorted(bpp) and psnr == sorted(psnr)


def test_damaged_synthesis_costs_bits(shipped, images):
    worse = {k: v.clone() for k, v in shipped.items()}
    # Shrinking the last synthesis layer leaves the latent (so the rate) as it
    # was and darkens every reconstruction: same bits, lower PSNR.
    worse["g_s.6.weight"] *= 0.98
    res = analyse.compare(shipped, worse, images, (1, 4, 8))
    assert [p["bpp"] for p in res["anchor"]] == [p["bpp"] for p in res["test"]]
    assert all(t["psnr_rgb"] < a["psnr_rgb"] for a, t in zip(res["anchor"], res["test"]))
    assert res["bd_rate_psnr_rgb"] > 5
    back = analyse.compare(worse, shipped, images, (1, 4, 8))
    assert back["bd_rate_psnr_rgb"] < 0


def test_likelihood_rate_matches_the_bitstream(shipped):
    model = analyse.load_model(shipped)
    img = background(256, 320, seed=7).astype(np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255)
    for q in (2.0, 7.0):
        est = likelihood_point(model, img, q)["bpp"] * img.shape[0] * img.shape[1]
        strings, _, _ = model.code_latent(model.gained_latent(x, [q]))
        real = 8 * sum(len(s) for s in strings)
        assert real == pytest.approx(est, rel=0.03), (q, real, est)


analyse = load_tool("analyse")


def _heldout(*args) -> subprocess.CompletedProcess:
    return run_tool("analyse", "heldout", *args)


def test_cli_writes_json_and_refuses_bad_input(tmp_path, images):
    from PIL import Image
    from vidsieve.codec.zoo import MANIFEST

    w = MANIFEST.parent / "vidsieve-hyperprior.pth"
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(images[0]).save(d / "a.png")
    out = tmp_path / "r.json"
    r = _heldout(w, w, "--images", d, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "+0.00 %" in r.stdout
    assert json.loads(out.read_text())["bd_rate_psnr_rgb"] == 0
    assert_clean_error(_heldout(w, w, "--images", tmp_path / "absent"), "absent")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert_clean_error(_heldout(tmp_path / "junk.pth", w, "--images", d), "junk.pth", "not a PyTorch weights file")
    (d / "b.png").write_bytes(b"not an image")
    assert_clean_error(_heldout(w, w, "--images", d), "b.png")
    assert_clean_error(_heldout(w, w, "--images", d, "--qualities", "1", "8"), "three qualities")
