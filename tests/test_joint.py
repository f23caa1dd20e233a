"""Joint fine-tuning of the transforms with the conditional model (training.joint, ``train --joint``, the GPU
lease script's joint mode), run for a handful of steps on the CPU."""

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, assert_clean_error, run_cli
from vidsieve.datasets.synthetic import Mover, Scene, write_scene
from vidsieve.training.joint import JointConfig, JointTrainer, export_joint, read_checkpoint

TINY = {"patch": 64, "batch": 2, "frames_per_video": 12, "threads": 1}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("joint-clips")
    write_scene(Scene(width=128, height=96, frames=12, movers=[Mover(0, 12, (500, 300), 0.5)]), d / "walk.mkv")
    return d


def weights(t: JointTrainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in [*t.intra.parameters(), *t.cond.parameters()]])


def test_steps_change_both_models_and_resume_exactly(tmp_path, clips):
    cfg = JointConfig(data=[str(clips)], steps=4, **TINY)
    whole = JointTrainer(cfg, tmp_path / "whole.pth")
    start = weights(whole)
    g_s0 = whole.intra.g_s[0].weight.detach().clone()
    fuse0 = whole.cond.fuse[-1].weight.detach().clone()
    whole.run(progress=False, every=1)
    assert whole.step == 4 and len(whole.history) == 4
    assert all(np.isfinite(h["loss"]) and h["bpp1"] > 0 and h["bpp0"] > 0 for h in whole.history)
    # Both the transforms and the conditional model learn.
    assert not torch.equal(whole.intra.g_s[0].weight, g_s0) and not torch.equal(whole.cond.fuse[-1].weight, fuse0)
    assert not torch.equal(weights(whole), start)

    half = JointTrainer(cfg, tmp_path / "half.pth")
    for _ in range(2):
        half.train_step()
        half.step += 1
    half.save()
    again = JointTrainer.resume(tmp_path / "half.pth")
    while not again.done():
        again.train_step()
        again.step += 1
    assert torch.equal(weights(again), weights(whole))  # the same weights as the run never stopped


def test_export_codes_and_decodes_a_predicted_stream(tmp_path, clips, small_clip):
    from vidsieve.codec.registry import load_codec, stream_decoder, stream_encoder
    from vidsieve.codec.stream import stream_predicts
    from vidsieve.pipeline import CompressOptions, compress, decoded_frames, info

    t = JointTrainer(JointConfig(data=[str(clips)], steps=2, **TINY), tmp_path / "run.pth")
    t.run(progress=False)
    intra, cond = export_joint(tmp_path / "run.pth", tmp_path / "w")
    assert (intra.name, cond.name) == ("vidsieve-hyperprior-slim-joint.pth", "vidsieve-inter-slim-joint.pth")
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    entry = manifest["conditional"]["vidsieve-inter-slim-joint"]
    assert entry["intra_sha256"] == manifest["models"]["vidsieve-hyperprior-slim-joint"]["sha256"]
    assert entry["training"]["steps"] == 2 and entry["training"]["from"] == "vidsieve-hyperprior-slim"
    # The weights file finds its conditional model beside it: predicted frames, decoded by any reader.
    codec = load_codec(str(intra))
    enc = stream_encoder(codec, Fraction(1, 10))
    assert stream_predicts(enc) and enc.describe()["conditional"] == "vidsieve-inter-slim-joint"
    out = tmp_path / "j.vsv"
    s = compress(small_clip, out, CompressOptions(keep_all=True, quality=3.0, model=str(intra)), progress=False)
    assert info(out)["gop"]["predicted"] == s.coded - 1 > 0
    dec = [f.rgb for f in decoded_frames(out, str(intra))]
    assert len(dec) == s.frames
    # A reader given the file's description finds the same conditional model beside the weights.
    again = stream_decoder(load_codec(str(intra)), info(out)["header"]["stream"])
    assert again.cond is not None


def test_train_joint_cli_and_errors(tmp_path, clips):
    out = tmp_path / "c.pth"
    r = run_cli("train", "--joint", "--data", str(clips), "--out", str(out), "--steps", "2", "--patch", "64",
                "--batch", "2", "--threads", "1", "--export", str(tmp_path / "w"), check=True)
    assert "step 2" in r.stdout and "exported" in r.stdout and read_checkpoint(out)["step"] == 2
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [
        "manifest.json", "vidsieve-hyperprior-slim-joint.pth", "vidsieve-inter-slim-joint.pth"]
    assert_clean_error(run_cli("train", "--joint", "--inter", "--data", str(clips), "--out", str(out)), "choose one")
    assert_clean_error(run_cli("train", "--joint", "--data", str(tmp_path / "none"), "--out", str(out)), "not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_error(run_cli("train", "--joint", "--data", str(empty), "--out", str(out)), "no video")
    with pytest.raises(ValueError, match="not a vidsieve --joint"):
        read_checkpoint(tmp_path / "w" / "vidsieve-inter-slim-joint.pth")


def test_lease_script_joint_mode_runs_on_the_cpu(tmp_path, clips):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "CLIPS": str(clips), "STEPS": "3", "PATCH": "64",
           "BATCH": "2", "NO_WHEELS": "1", "PYTHON": sys.executable}
    r = subprocess.run(["bash", "scripts/train_gpu_lease.sh", "joint", "60"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "out"
    assert (out / "joint" / "vidsieve-hyperprior-slim-joint.pth").exists()
    parts = sorted(out.glob("joint.pth.part*"))
    joined = tmp_path / "joint.pth"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    assert read_checkpoint(joined)["step"] == 3
    # A later lease resumes it.
    env["STEPS"] = "5"
    r = subprocess.run(["bash", "scripts/train_gpu_lease.sh", "joint", "60", "vidsieve-hyperprior-slim", str(joined)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    joined.write_bytes(b"".join(p.read_bytes() for p in sorted(out.glob("joint.pth.part*"))))
    assert read_checkpoint(joined)["step"] == 5
