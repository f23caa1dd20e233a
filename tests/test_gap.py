"""``python tools/analyse.py gap``: where the shipped codec's bits go (encoder, quantiser, synthesis)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, load_tool, run_tool
from vidsieve.codec import DEFAULT_MODEL
from vidsieve.codec.models import LAMBDAS
from vidsieve.codec.zoo import load_shipped
from vidsieve.datasets.synthetic import background
from vidsieve.metrics import psnr
from vidsieve.codec.models import quality_lambda


@pytest.fixture(scope="module")
def measured():
    state, _ = load_shipped(DEFAULT_MODEL)
    return analyse.Gap(state)


@pytest.fixture(scope="module")
def image():
    # Not a multiple of 64 either way, so padding and cropping are exercised.
    return background(130, 170, seed=4).astype(np.uint8)


def rd_cost(point: dict, quality: float) -> float:
    mse = 255**2 / 10 ** (point["psnr_rgb"] / 10)
    return quality_lambda(quality) * mse + point["bpp"]


def test_quality_lambdas_are_the_training_table_between_levels():
    assert [quality_lambda(q) for q in range(1, 9)] == pytest.approx(LAMBDAS, rel=1e-12)
    lams = [quality_lambda(q) for q in np.linspace(1, 8, 29)]
    assert lams == sorted(lams) and len(set(lams)) == len(lams)
    assert quality_lambda(2.5) == pytest.approx((LAMBDAS[1] * LAMBDAS[2]) ** 0.5)
    with pytest.raises(ValueError):
        quality_lambda(9)


def test_coded_point_is_the_products_bitstream(measured, codec, image):
    for q in (1.0, 6.5):
        p = measured.coded(image, q)
        data = codec.encode(image, q)
        h, w = image.shape[:2]
        assert p["bpp"] == 8 * len(data) / (h * w)
        assert p["psnr_rgb"] == pytest.approx(psnr(image, codec.decode(data)), abs=1e-9)


def test_refined_latent_lowers_the_real_rate_distortion_cost(measured, image):
    torch.manual_seed(0)
    for q in (1.0, 4.5, 8.0):
        before = measured.coded(image, q)
        after = measured.coded(image, q, measured.refine(image, q, 15))
        # Real bitstreams decoded by the unchanged decoder, judged by the loss the codec was trained on.
        assert rd_cost(after, q) < rd_cost(before, q), (q, before, after)


def test_ceilings_bound_what_is_coded(measured, image):
    ceiling = measured.ceiling(image, 10)
    for q in (1.0, 8.0):
        coded = measured.coded(image, q)["psnr_rgb"]
        unrounded = measured.unrounded(image, q)
        assert unrounded > coded
        # Float rounding between the two copies of the synthesis is far below 0.05 dB.
        assert ceiling > unrounded - 0.05


analyse = load_tool("analyse")


def _gap(*args) -> subprocess.CompletedProcess:
    return run_tool("analyse", "gap", *args)


def test_cli_writes_json_and_refuses_bad_input(tmp_path, image):
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(image[:70, :90]).save(d / "a.png")
    out = tmp_path / "gap.json"
    r = _gap(d, "--qualities", "1", "4", "8", "--refine", "3", "--ceiling", "3", "--out", out)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert [p["quality"] for p in res["qualities"]] == [1, 4, 8]
    assert res["n_images"] == 1 and "ceiling_psnr_rgb" in res and "bd_rate_refined_vs_coded" in res
    assert "synthesis ceiling" in r.stdout
    assert not list(tmp_path.glob(".*.tmp"))
    assert_clean_error(_gap(tmp_path / "absent"), "absent")
    (d / "b.png").write_text("not an image")
    assert_clean_error(_gap(d, "--refine", "0", "--ceiling", "0"), "b.png")


@pytest.mark.parametrize("args, needle, code", [
    (["--refine", "-1"], "--refine", 2),
    (["--model", "none.pth"], "none.pth", 4),
    (["--qualities", "0.5"], "quality", 2),
    (["--model", "junk.pth"], "not a PyTorch weights file", 4),
    (["--model", "bogus"], "bogus", 4),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, image, args, needle, code):
    """The exit codes are the CLI's: 2 for bad input, 4 for weights that cannot be loaded."""
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "a.png")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    args = [str(tmp_path / a) if a.endswith(".pth") else a for a in args]
    assert analyse.main(["gap", str(tmp_path / "a.png"), *args]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vidsieve: error") and needle in err[0], err
