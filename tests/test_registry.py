"""Model registry, shipped weights and zoo loading."""

import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from conftest import assert_clean_error, run_cli
from vidsieve.codec import DEFAULT_MODEL
from vidsieve.codec.registry import MODELS, SHIPPED, load_codec, shipped_name
from vidsieve.codec.zoo import MANIFEST, load_shipped, load_state, sha256_file
from vidsieve.datasets.synthetic import background
from vidsieve.errors import ModelError


def test_registry_names_and_signature():
    assert {"vidsieve-hyperprior", "bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean",
            "cheng2020-anchor"} <= set(MODELS)
    codec = MODELS["vidsieve-hyperprior"](quality=None, pretrained=True)
    assert codec.variable_rate and len(codec.weights_sha256) == 64


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_model_loads_with_its_widths_and_codes_a_frame(name):
    N, M = SHIPPED[name]["N"], SHIPPED[name]["M"]
    entry = json.loads(MANIFEST.read_text())["models"][name]
    assert (entry["N"], entry["M"]) == (N, M)
    assert tuple(entry.get("hyper", (M, M * 3 // 2))) == tuple(SHIPPED[name].get("hyper", (M, M * 3 // 2)))
    assert entry["results"]["kodak"]["images"] == 24 and len(entry["results"]["kodak"]["curve"]) == 8
    codec = load_codec(name)
    assert codec.model.M == M and codec.weights_sha256 == entry["sha256"]
    assert MODELS[name](pretrained=False).model.M == M
    frame = background(96, 64, seed=5).astype(np.uint8)
    low, high = codec.encode(frame, 1.0), codec.encode(frame, 8.0)
    assert len(high) > len(low)
    out = codec.decode(high)
    assert out.shape == frame.shape
    assert np.abs(out.astype(int) - frame.astype(int)).mean() < 6


def test_the_default_ships_and_exports_name_their_widths():
    assert DEFAULT_MODEL in SHIPPED and load_codec().name == DEFAULT_MODEL
    # Exported weights take the name of the shipped model of their widths, so a
    # retrained 64/192 replaces the wide one and a 64/96 the narrow one.
    for name, widths in SHIPPED.items():
        assert shipped_name(**widths) == name
    assert shipped_name(16, 24) == "vidsieve-hyperprior"


def test_manifest_matches_shipped_weights():
    m = json.loads(MANIFEST.read_text())["models"]["vidsieve-hyperprior"]
    assert sha256_file(MANIFEST.parent / m["file"]) == m["sha256"]
    assert m["training"]["steps"] > 0
    state = load_state(MANIFEST.parent / m["file"])
    # CDF tables ship with the weights: no update() at start-up.
    assert state["gaussian_conditional._quantized_cdf"].numel() > 0


def test_tampered_weights_are_refused(tmp_path):
    m = json.loads(MANIFEST.read_text())
    shutil.copy(MANIFEST.parent / m["models"]["vidsieve-hyperprior"]["file"], tmp_path / "w.pth")
    m["models"]["vidsieve-hyperprior"]["file"] = "w.pth"
    m["models"]["vidsieve-hyperprior"]["sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="sha256"):
        load_shipped("vidsieve-hyperprior", str(tmp_path / "manifest.json"))


class Evil:
    """Unpickling this creates the file MARK: proof that the loader ran the file's code."""

    mark = None

    def __reduce__(self):
        return (os.mknod, (str(self.mark),))


def test_pickled_objects_are_not_loaded(tmp_path):
    Evil.mark = tmp_path / "ran"
    for fmt, save in (("pickle", lambda obj, f: pickle.dump(obj, f)), ("torch zip", torch.save)):
        p = tmp_path / "evil.pth"
        with open(p, "wb") as f:
            save({"x": Evil(), "w": torch.zeros(2)}, f)
        with pytest.raises(ModelError, match="refused: unpickling it could run code"):
            load_state(p)
        with pytest.raises(ModelError):
            load_codec(str(p))
        assert not Evil.mark.exists(), fmt
    # And a file that is no checkpoint at all gets words, not torch's bare KeyError.
    p.write_text("plain text")
    with pytest.raises(ModelError, match="not a PyTorch weights file"):
        load_state(p)


def test_zoo_offline_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDSIEVE_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelError) as e:
        load_codec("bmshj2018-hyperprior", quality=3)
    msg = str(e.value)
    assert "bmshj2018-hyperprior-3-" in msg and str(tmp_path) in msg and "https://" in msg
    with pytest.raises(ModelError, match="integer"):
        load_codec("mbt2018-mean", quality=2.5)


def test_cli_model_errors(tmp_path, small_clip):
    r = run_cli("compress", small_clip, "-o", tmp_path / "o.vsv", "--keep-all", "--model", "nope")
    assert_clean_error(r, "unknown model")
    assert r.returncode == 4


def test_the_slim_model_shares_the_wide_models_latents_and_conditional_model():
    """The slim model is the wide one with a pruned hyper-synthesis retrained alone: the same analysis
    and gains (so the same latents), found by the conditional model trained on the wide one's."""
    from vidsieve.codec.models import analysis_sha256, hidden_widths
    from vidsieve.codec.registry import load_conditional

    wide, slim = load_codec("vidsieve-hyperprior-wide"), load_codec("vidsieve-hyperprior-slim")
    assert wide.analysis_sha256 == slim.analysis_sha256 != load_codec("vidsieve-hyperprior").analysis_sha256
    s_state = load_shipped("vidsieve-hyperprior-slim")[0]
    assert analysis_sha256(s_state) == slim.analysis_sha256
    assert hidden_widths(s_state)["hyper"] == (128, 192)
    # Both take the model marked the default for these latents; another loads by name (its files name it).
    assert load_conditional(slim)[1] == load_conditional(wide)[1] == "vidsieve-inter-wide"
    assert load_conditional(wide, "vidsieve-inter-ctx")[1] == "vidsieve-inter-ctx"
    assert load_conditional(load_codec("vidsieve-hyperprior")) is None
    # The same latent, a different entropy model: other bytes, nearly the same picture.
    frame = background(192, 128, seed=9).astype(np.uint8)
    y = wide.model.gained_latent(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255, [4.0])
    assert torch.equal(y, slim.model.gained_latent(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255, [4.0]))
    dw, ds = wide.encode(frame, 4.0), slim.encode(frame, 4.0)
    assert dw != ds and abs(len(dw) - len(ds)) < 0.1 * len(dw)
    from vidsieve.metrics import psnr

    assert psnr(wide.decode(dw), slim.decode(ds)) > 35


def test_predicted_streams_need_shipped_tables_and_index_their_intra_models_own_scale_table():
    """Entropy tables computed at load time (float work that may differ between machines) code no
    predicted stream; a conditional model indexes the scale table of the intra model it serves."""
    from fractions import Fraction

    from vidsieve.codec.conditional import ScaleGrid
    from vidsieve.codec.registry import load_conditional, stream_decoder, stream_encoder

    codec = load_codec(DEFAULT_MODEL)
    cond = load_conditional(codec)[0]
    table = codec.model.gaussian_conditional.scale_table
    assert cond.tables_shipped and cond.grid.levels == table.numel() == cond.exact().levels
    assert cond.grid.scale(torch.tensor([0.0, float(table.numel() - 1)])).tolist() == pytest.approx(
        [float(table[0]), float(table[-1])], rel=1e-5)
    with pytest.raises(ValueError, match="log-spaced"):
        ScaleGrid.of_table(torch.tensor([0.1, 0.2, 0.5, 0.6]))
    untrained = load_codec(DEFAULT_MODEL, pretrained=False)
    for make in (lambda: stream_encoder(untrained, Fraction(1, 10), conditional="vidsieve-inter-wide"),
                 lambda: stream_decoder(untrained, {"coder": "predictive", "conditional": "vidsieve-inter-wide"},
                                        conditional="vidsieve-inter-wide")):
        with pytest.raises(ModelError, match="no entropy-coding tables"):
            make()
