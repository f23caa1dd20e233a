"""Training: exact resumption, the train CLI, export in the registry's format."""

import json
import math
import shutil
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from vidsieve.datasets.synthetic import background
from vidsieve.training.trainer import FINETUNE_LR, FINETUNE_STEPS, TrainConfig, Trainer


@pytest.fixture()
def image_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(5):
        Image.fromarray(background(160, 128, seed=i).astype(np.uint8)).save(d / f"{i}.png")
    return d


def cfg(d, **kw):
    kw = {"N": 16, "M": 24, "steps": 100, "eval_every": 0, **kw}
    return TrainConfig(data=[str(d)], patch=64, batch=2, threads=1, checkpoint_every_s=1e9, **kw)


@pytest.mark.parametrize("sampler", ["numpy", "tensor"])
def test_resume_is_exact(image_dir, tmp_path, sampler):
    straight = Trainer(cfg(image_dir, sampler=sampler), tmp_path / "a.pth")
    straight.run(max_steps=4, progress=False)
    first = Trainer(cfg(image_dir, sampler=sampler), tmp_path / "b.pth")
    first.run(max_steps=2, progress=False)
    again = Trainer.resume(tmp_path / "b.pth")
    assert again.step == 2
    again.run(max_steps=4, progress=False)
    a, b = straight.model.state_dict(), again.model.state_dict()
    for k in a:
        if sampler == "numpy":
            assert torch.equal(a[k], b[k]), k
        else:
            # Same crops and noise; oneDNN may still round the last bit differently
            # for a differently aligned buffer, which is all this tolerance allows.
            assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7), k
    if sampler == "tensor":
        assert torch.equal(straight.sampler.get_state(), again.sampler.get_state())
    assert again.opt.state_dict()["state"][0]["step"] == straight.opt.state_dict()["state"][0]["step"]


def assert_same_steps(a: Trainer, b: Trainer, steps: int) -> None:
    """Both trainers, fed the same crops and rate noise, compute the same loss and gradients at every step."""
    for i in range(steps):
        torch.manual_seed(i)
        la = float(a.train_step()["loss"])
        torch.manual_seed(i)
        lb = float(b.train_step()["loss"])
        assert abs(la - lb) <= 1e-4 * lb
        # Compare gradients, not weights: Adam turns a rounding difference in a
        # near-zero gradient into a full step either way.
        ga = torch.cat([p.grad.flatten() for p in a.model.parameters() if p.grad is not None])
        gb = torch.cat([p.grad.flatten() for p in b.model.parameters() if p.grad is not None])
        assert torch.nn.functional.cosine_similarity(ga, gb, 0) > 0.9999
        assert abs(ga.norm() / gb.norm() - 1) < 1e-3


def test_channels_last_step_matches_default_layout(image_dir, tmp_path):
    """The CPU trainer runs the transforms channels-last for speed; the step must compute the same thing."""
    t = Trainer(cfg(image_dir), tmp_path / "cl.pth")
    assert t.channels_last and t.model.g_a[0].weight.is_contiguous(memory_format=torch.channels_last)
    plain = Trainer(cfg(image_dir), tmp_path / "plain.pth")
    plain.channels_last = False
    for m in (plain.model.g_a, plain.model.g_s):
        for p in m.parameters():
            p.data = p.data.contiguous()
    assert_same_steps(t, plain, 3)


@pytest.mark.skipif(not shutil.which("c++") and not shutil.which("g++"), reason="torch.compile needs a C++ compiler")
def test_compiled_step_matches_eager(image_dir, tmp_path):
    eager = Trainer(cfg(image_dir), tmp_path / "e.pth")
    comp = Trainer(cfg(image_dir, compile=True), tmp_path / "c.pth")
    assert_same_steps(comp, eager, 2)
    # A compiled run's checkpoint is an ordinary one, and its held-out check runs at other sizes.
    comp.save()
    assert set(torch.load(tmp_path / "c.pth", weights_only=True)["model"]) == set(eager.model.state_dict())
    assert comp.evaluate(qualities=(1,), size=128)["q1"]["bpp"] > 0


def test_loss_goes_down(image_dir, tmp_path):
    t = Trainer(cfg(image_dir, lr=1e-3), tmp_path / "c.pth")
    losses = [float(t.train_step()["loss"]) for _ in range(30)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_train_cli_export_and_use(image_dir, tmp_path, small_clip):
    ck, wdir = tmp_path / "ck.pth", tmp_path / "weights"
    r = run_cli("train", "--data", image_dir, "--out", ck, "--N", "16", "--M", "24", "--patch", "64",
                "--batch", "2", "--steps", "6", "--export", wdir, check=True)
    assert "step 6" in r.stdout
    m = json.loads((wdir / "manifest.json").read_text())["models"]["vidsieve-hyperprior"]
    assert m["training"]["steps"] == 6 and m["N"] == 16
    # Resume continues the same schedule, on the run's own data, or on it where it is now.
    run_cli("train", "--out", ck, "--resume", ck, "--steps", "7", check=True)
    moved = tmp_path / "moved"
    image_dir.rename(moved)
    from conftest import assert_clean_error

    assert_clean_error(run_cli("train", "--out", ck, "--resume", ck, "--steps", "8"), str(image_dir))
    run_cli("train", "--data", moved, "--out", ck, "--resume", ck, "--steps", "8", check=True)
    st = torch.load(ck, weights_only=True)
    assert st["step"] == 8 and json.loads(st["config"])["data"] == [str(moved)]
    assert_clean_error(run_cli("train", "--out", tmp_path / "new.pth"), "--data is required")
    # The exported weights code video.
    out = tmp_path / "o.vsv"
    run_cli("compress", small_clip, "-o", out, "--keep-all", "--model", wdir / "vidsieve-hyperprior.pth",
            "--max-frames", "3", check=True)
    r = run_cli("decompress", out, "-o", tmp_path / "o.mkv")
    assert r.returncode == 4  # the file names weights that are not installed ...
    run_cli("decompress", out, "-o", tmp_path / "o.mkv", "--model", wdir / "vidsieve-hyperprior.pth", check=True)


def test_train_help_states_the_config_defaults():
    """`vidsieve train --help` states the defaults in words (its parser does not import torch);
    they must be the ones a new run gets from TrainConfig."""
    import re

    text = " ".join(run_cli("train", "--help", check=True).stdout.split("options:", 1)[1].split())
    said = dict(re.findall(r"--(steps|patch|batch|lr|N|M) [A-Z]+ [^(]*\(default ([0-9.e-]+)", text))
    assert set(said) == {"steps", "patch", "batch", "lr", "N", "M"}, said
    for k, v in said.items():
        assert float(v) == getattr(TrainConfig, k), k
    fine = dict(re.findall(r"--(steps|lr) [A-Z]+ [^(]*\(default [^;]*; ([0-9.e-]+) (?:when )?fine-tuning", text))
    assert {k: float(v) for k, v in fine.items()} == {"steps": FINETUNE_STEPS, "lr": FINETUNE_LR}, fine


def test_warm_restart_starts_a_new_cycle(image_dir, tmp_path):
    from vidsieve.training.trainer import budget_spent, lr_at

    t = Trainer(cfg(image_dir, steps=4), tmp_path / "r.pth")
    t.run(progress=False)
    assert t.step == 4 and lr_at(t.cfg, t.step) == pytest.approx(t.cfg.lr * 0.09)
    # Resumed plainly, the spent step schedule has nothing left to run.
    plain = Trainer.resume(tmp_path / "r.pth")
    plain.run(progress=False)
    assert plain.step == 4
    # Restarted, a new step cycle of 25 runs from the new rate and drops at 75 % and 92 % of it.
    r = Trainer.resume(tmp_path / "r.pth", restart=True, steps=25, lr=5e-4)
    assert (r.cfg.cycle_start_step, r.cfg.cycle_start_s) == (4, t.elapsed)
    lrs = [lr_at(r.cfg, s) for s in range(4, 29)]
    assert lrs == pytest.approx([5e-4] * 19 + [1.5e-4] * 4 + [4.5e-5] * 2)
    seen = []
    while r.step < 20:
        seen.append(float(r.train_step()["lr"]))
    r.run(progress=False)
    assert r.step == 29 and seen == pytest.approx(lrs[:16])
    # A time cycle is measured from where it started, not from the run's first second.
    rt = Trainer.resume(tmp_path / "r.pth", restart=True, budget_s=10.0)
    assert lr_at(rt.cfg, 4, rt.elapsed) == rt.cfg.lr and not budget_spent(rt.cfg, rt.elapsed + 9.9)
    assert budget_spent(rt.cfg, rt.elapsed + 10.0)


def test_train_cli_bad_data(tmp_path):
    from conftest import assert_clean_error

    assert_clean_error(run_cli("train", "--data", tmp_path / "none", "--out", tmp_path / "x.pth"), "not found")
    (tmp_path / "empty").mkdir()
    assert_clean_error(run_cli("train", "--data", tmp_path / "empty", "--out", tmp_path / "x.pth"))


def test_time_budget_schedule_decays_inside_the_run():
    from vidsieve.training.trainer import lr_at

    c = TrainConfig(data=[], lr=1e-4, steps=10**9, budget_s=100.0)
    assert lr_at(c, 5, elapsed=10.0) == pytest.approx(1e-4)
    assert lr_at(c, 5, elapsed=80.0) == pytest.approx(3e-5)
    assert lr_at(c, 5, elapsed=95.0) == pytest.approx(9e-6)
    # Without a budget the step count drives it.
    assert lr_at(TrainConfig(data=[], lr=1e-4, steps=100), 80, elapsed=1e6) == pytest.approx(3e-5)


def test_time_budget_run_ends_at_its_budget_not_at_steps(image_dir, tmp_path):
    # A step count reached first would stop a fast machine with the rate never dropped.
    t = Trainer(cfg(image_dir, steps=2, budget_s=1e6), tmp_path / "s.pth")
    t.run(max_steps=4, progress=False)
    assert t.step == 4
    t = Trainer(cfg(image_dir, steps=10**6, budget_s=0.5), tmp_path / "b.pth")
    t.run(max_time=60, progress=False)
    assert 0 < t.step < 10**6 and 0.5 <= t.elapsed < 30


def test_held_out_folder_is_not_trained_on(image_dir, tmp_path):
    val = tmp_path / "val"
    val.mkdir()
    Image.fromarray(background(96, 80, seed=99).astype(np.uint8)).save(val / "v.png")
    t = Trainer(cfg(image_dir, val_data=[str(val)]), tmp_path / "v.pth")
    assert len(t.val) == 1 and t.val[0].shape == (80, 96, 3)
    assert len(t.sampler.arrays) == 5  # every training image, none held back
    ev = t.evaluate(qualities=(1, 8), size=64)
    assert set(ev) == {"q1", "q8"} and ev["q8"]["bpp"] > ev["q1"]["bpp"] * 0.5


def test_widen_latent_keeps_the_reconstruction(image_dir, tmp_path):
    from vidsieve.codec.models import GainedMeanScaleHyperprior
    from vidsieve.training.widen import widen_latent

    t = Trainer(cfg(image_dir, lr=1e-3), tmp_path / "w.pth")
    t.run(max_steps=5, progress=False)
    narrow = t.model.eval()
    wide = GainedMeanScaleHyperprior(16, 40)
    wide.load_state_dict(widen_latent(narrow.state_dict(), 40))
    wide.eval()
    x = torch.from_numpy(background(128, 64, seed=3).astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        for q in (1.0, 4.5, 8.0):
            a, b = narrow(x, torch.tensor([q])), wide(x, torch.tensor([q]))
            assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-5)
            # The old channels' rate is unchanged; the new ones only add to it.
            assert b["likelihoods"]["y"].shape[1] == 40
            old = -torch.log2(a["likelihoods"]["y"]).sum()
            new_first = -torch.log2(b["likelihoods"]["y"][:, :24]).sum()
            assert torch.allclose(old, new_first, rtol=1e-4)
    with pytest.raises(ValueError):
        widen_latent(wide.state_dict(), 24)


def test_widened_run_trains_only_what_is_new_at_its_own_rate(image_dir, tmp_path):
    from vidsieve.codec.models import GainedMeanScaleHyperprior
    from vidsieve.training.widen import new_elements, widen_latent

    torch.manual_seed(0)
    narrow = GainedMeanScaleHyperprior(16, 24).state_dict()
    wide = widen_latent(narrow, 40)
    masks = new_elements(wide, 24)
    # Every element is either one the narrow model had or one the widening made.
    for k, v in wide.items():
        if k.endswith((".quantiles", "_cdf", "_offset", "_cdf_length", "scale_table")) or k not in narrow:
            continue
        old = v.numel() - (int(masks[k].sum()) if k in masks else 0)
        assert old == narrow[k].numel(), k
    # With the old rate at 0, the old elements stay exactly as they were; the new ones learn.
    t = Trainer(cfg(image_dir, M=40, lr=0.0, widened_from=24, new_lr=1e-2), tmp_path / "w.pth", init_weights=wide)
    t.run(max_steps=3, progress=False)
    after = t.model.state_dict()
    moved = set()
    for k, v in wide.items():
        if k.endswith(".quantiles") or not torch.is_floating_point(v) or k.startswith("gaussian"):
            continue
        new = masks.get(k, torch.zeros(v.shape, dtype=torch.bool))
        assert torch.equal(after[k][~new], v[~new]), k
        if new.any() and not torch.equal(after[k][new], v[new]):
            moved.add(k)
    assert {"g_a.6.weight", "g_s.0.weight", "log_gain"} <= moved
    # The split survives a resume.
    r = Trainer.resume(tmp_path / "w.pth")
    assert len(r.opt.param_groups) == 2 and r.opt.param_groups[1]["lr"] == 1e-2
    with pytest.raises(ValueError):
        new_elements(wide, 48)


def test_widening_at_full_scale_with_one_prior_scale():
    from vidsieve.codec.models import GainedMeanScaleHyperprior
    from vidsieve.training.widen import widen_latent

    torch.manual_seed(0)
    narrow = GainedMeanScaleHyperprior(16, 24).state_dict()
    small = widen_latent(narrow, 40)
    full = widen_latent(narrow, 40, new_scale=1.0, prior_scale=2.5)
    assert torch.allclose(full["g_a.6.weight"][24:] * 0.1, small["g_a.6.weight"][24:])
    assert torch.equal(full["g_a.6.weight"][:24], narrow["g_a.6.weight"])
    wide = GainedMeanScaleHyperprior.from_state_dict(full).eval()
    x = torch.from_numpy(background(128, 64, seed=3).astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        z_hat = wide.entropy_bottleneck(wide.h_a(wide.g_a(x)))[0]
        scales, _ = wide.h_s(z_hat).chunk(2, 1)
        old_scales, _ = GainedMeanScaleHyperprior.from_state_dict(narrow).eval().h_s(z_hat).chunk(2, 1)
    assert torch.all(scales[:, 24:] == 2.5)  # every new channel, everywhere
    assert torch.allclose(scales[:, :24], old_scales, atol=1e-5)


def test_rate_waiver_weighs_only_the_new_channels_bits(image_dir, tmp_path, monkeypatch):
    from vidsieve.training.rd import rd_loss

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    lk_y = torch.rand(2, 40, 2, 2) * 0.9 + 0.05
    lk_z = torch.rand(2, 16, 1, 1) * 0.9 + 0.05
    out = {"x_hat": x * 0.9, "likelihoods": {"y": lk_y, "z": lk_z}}
    lam = torch.tensor([0.01, 0.01])
    full, bpp, _ = rd_loss(out, x, lam)
    half, bpp_half, _ = rd_loss(out, x, lam, waive=(24, 0.5))
    none, _, _ = rd_loss(out, x, lam, waive=(24, 0.0))
    new_bpp = (-torch.log2(lk_y[:, 24:])).flatten(1).sum(1) / (32 * 32)
    assert torch.equal(bpp, bpp_half)  # the reported rate counts every bit
    assert torch.allclose(full - none, new_bpp.mean(), rtol=1e-5)
    assert torch.allclose(full - half, new_bpp.mean() / 2, rtol=1e-5)
    assert torch.equal(rd_loss(out, x, lam, waive=(24, 1.0))[0], full)

    # In a run the waiver fades: from nothing at step 0 to every bit at the ramp's end.
    from vidsieve.codec.models import GainedMeanScaleHyperprior
    from vidsieve.training import trainer as trainer_mod
    from vidsieve.training.widen import widen_latent

    seen = []

    def recording(out, x, lambdas, waive=None):
        seen.append(waive)
        return rd_loss(out, x, lambdas, waive)

    monkeypatch.setattr(trainer_mod, "rd_loss", recording)
    torch.manual_seed(0)
    narrow = GainedMeanScaleHyperprior(16, 24).state_dict()
    t = Trainer(cfg(image_dir, M=40, widened_from=24, new_rate_ramp=2), tmp_path / "r.pth",
                init_weights=widen_latent(narrow, 40, new_scale=1.0))
    t.run(max_steps=3, progress=False)
    assert seen == [(24, 0.0), (24, 0.5), (24, 1.0)]
    assert Trainer.resume(tmp_path / "r.pth").cfg.new_rate_ramp == 2


def test_tensor_sampler_cuts_true_windows():
    from vidsieve.datasets.images import TensorCropSampler

    # Each pixel names its own row and column, so a crop shows where it came from.
    yy, xx = np.mgrid[0:100, 0:140]
    img = np.stack([yy, xx, np.zeros_like(yy)], -1).astype(np.uint8)
    small = np.full((20, 40, 3), 7, np.uint8)  # too small for the patch: skipped
    s = TensorCropSampler([img, small], 32, "cpu", seed=1)
    assert len(s.arrays) == 1
    b = s.batch(64)
    assert b.shape == (64, 3, 32, 32) and b.dtype == torch.float32
    rows = (b[:, 0] * 255).round().long()
    cols = (b[:, 1] * 255).round().long()
    flipped_v = flipped_h = 0
    for r, c in zip(rows, cols):
        steps_r, steps_c = r[1:, 0] - r[:-1, 0], c[0, 1:] - c[0, :-1]
        assert abs(int(steps_r.sum())) == 31 and len(set(steps_r.tolist())) == 1  # consecutive rows
        assert abs(int(steps_c.sum())) == 31 and len(set(steps_c.tolist())) == 1
        assert 0 <= int(r.min()) and int(r.max()) < 100 and 0 <= int(c.min()) and int(c.max()) < 140
        flipped_v += int(steps_r[0] < 0)
        flipped_h += int(steps_c[0] < 0)
    assert 10 < flipped_v < 54 and 10 < flipped_h < 54  # both flips happen, about half the time
    # Same seed, same crops.
    assert torch.equal(TensorCropSampler([img, small], 32, "cpu", seed=1).batch(64), b)


def test_train_cli_time_budget_and_held_out(image_dir, tmp_path):
    from conftest import assert_clean_error

    val = tmp_path / "val"
    val.mkdir()
    Image.fromarray(background(96, 96, seed=7).astype(np.uint8)).save(val / "v.png")
    ck = tmp_path / "t.pth"
    run_cli("train", "--data", image_dir, "--val", val, "--out", ck, "--N", "16", "--M", "24", "--patch", "64",
            "--batch", "2", "--max-time", "4", check=True)
    st = torch.load(ck, weights_only=True)
    c = json.loads(st["config"])
    # --max-time without --steps: the schedule is fitted to the time, and --val is the held-out set.
    assert c["budget_s"] == 4.0 and c["val_data"] == [str(val)]
    assert 0 < st["step"] < 100_000 and 4.0 <= st["elapsed"] < 30
    # Its schedule is spent: a resume says so instead of training on at the last rate,
    # before loading any data (this folder holds none, which would be another error).
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_error(run_cli("train", "--data", empty, "--out", ck, "--resume", ck), "whole 4-second schedule")
    assert_clean_error(run_cli("train", "--data", image_dir, "--out", ck, "--resume", ck, "--restart-schedule"),
                       "needs --max-time or --steps")
    assert_clean_error(run_cli("train", "--data", image_dir, "--out", tmp_path / "n.pth", "--restart-schedule",
                               "--max-time", "3"), "goes with --resume")
    # A warm restart trains on, with a new cycle from the new rate over the new time.
    run_cli("train", "--out", ck, "--resume", ck, "--restart-schedule", "--max-time", "3", "--lr", "1e-4", check=True)
    st2 = torch.load(ck, weights_only=True)
    c2 = json.loads(st2["config"])
    assert c2["cycle_start_s"] == st["elapsed"] and c2["cycle_start_step"] == st["step"]
    assert c2["budget_s"] == 3.0 and c2["lr"] == 1e-4
    assert st2["step"] > st["step"] and 3.0 <= st2["elapsed"] - st["elapsed"] < 30
    assert_clean_error(run_cli("train", "--data", image_dir, "--val", tmp_path / "nope", "--out", ck), "not found")


def test_default_training_script_refuses_options_it_would_ignore(image_dir, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "train_default.py"

    def run(*args):
        return subprocess.run([sys.executable, str(script), "--data", str(image_dir), *map(str, args)],
                              capture_output=True, text=True, timeout=120)

    narrow = Trainer(cfg(image_dir), tmp_path / "n.pth")
    torch.save(narrow.model.state_dict(), tmp_path / "narrow.pth")
    # Same latent width as --init: nothing is new, so a rate for new channels means nothing.
    for opt in (("--new-lr", 1e-4), ("--new-rate-ramp", 100), ("--prior-scale", 1.0)):
        r = run("--out", tmp_path / "a.pth", "--N", 16, "--M", 24, "--init", tmp_path / "narrow.pth", *opt)
        assert r.returncode == 2 and "apply only to a run that widens" in r.stderr, r.stderr
        assert not (tmp_path / "a.pth").exists()
    # An existing --out is resumed, which would drop --init silently.
    (tmp_path / "b.pth").write_bytes(b"x")
    r = run("--out", tmp_path / "b.pth", "--init", tmp_path / "narrow.pth")
    assert r.returncode == 2 and "would be resumed" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    # A warm restart continues a run; with nothing to continue it would silently start from scratch.
    r = run("--out", tmp_path / "c.pth", "--restart")
    assert r.returncode == 2 and "does not exist" in r.stderr, r.stderr
    assert not (tmp_path / "c.pth").exists()
    # A restart with --steps and no --budget runs a step cycle, even after a time-fitted run.
    small = ("--N", 16, "--M", 24, "--patch", 64, "--batch", 2, "--eval-every", 0)
    assert run("--out", tmp_path / "c.pth", *small, "--budget", 1, "--max-time", 1).returncode == 0
    first = torch.load(tmp_path / "c.pth", weights_only=True)["step"]
    r = run("--out", tmp_path / "c.pth", *small, "--restart", "--steps", 3, "--lr", 1e-4)
    assert r.returncode == 0, r.stderr
    st = torch.load(tmp_path / "c.pth", weights_only=True)
    c = json.loads(st["config"])
    assert st["step"] == first + 3 and c["budget_s"] == 0 and c["cycle_start_step"] == first and c["lr"] == 1e-4


def ramp_video(path, frames: int = 20):
    """A lossless clip whose frame i is textured and i * 10 levels brighter than frame 0:
    a frame's brightness tells where in time it came from."""
    from fractions import Fraction

    from vidsieve.datasets.video import VideoWriter

    base = background(128, 96, seed=3).astype(np.int32) // 3
    w = VideoWriter(path, 128, 96, Fraction(1, 10), Fraction(10), codec="ffv1")
    for i in range(frames):
        w.write(np.clip(base + 10 * i, 0, 255).astype(np.uint8), i)
    w.close()
    return path


def test_videos_are_held_out_in_time(tmp_path):
    d = tmp_path / "site"
    d.mkdir()
    ramp_video(d / "cam.mkv")
    t = Trainer(cfg(d, frames_per_video=10), tmp_path / "h.pth")
    train = [float(a.mean()) for a in t.sampler.arrays]
    val = [float(a.mean()) for a in t.val]
    # The last fifth of the clip is the check, and nothing from it is trained on.
    assert len(val) == 2 and len(train) == 10
    assert min(val) > max(train)
    assert min(val) >= float(np.clip(background(128, 96, seed=3).astype(np.int32) // 3 + 160, 0, 255).mean()) - 1
    # Within a span, the fifth is the span's own: the first half's 40 to 50 %.
    t = Trainer(cfg(d, frames_per_video=10, video_span=(0.0, 0.5)), tmp_path / "h2.pth")
    assert max(float(a.mean()) for a in t.sampler.arrays) < min(float(a.mean()) for a in t.val)
    assert max(float(a.mean()) for a in t.val) < min(val)
    # A checkpoint from before this split resumes with the random split it had.
    t.save()
    st = torch.load(tmp_path / "h2.pth", weights_only=True)
    c = json.loads(st["config"])
    assert c["video_holdout"] == 0.2
    del c["video_holdout"]
    st["config"] = json.dumps(c)
    torch.save(st, tmp_path / "old.pth")
    assert Trainer.read_checkpoint(tmp_path / "old.pth")[0].video_holdout == 0.0


@pytest.fixture(scope="module")
def site_start(tmp_path_factory):
    """One camera's clip, and a small model trained a little on its frames: a start
    that a sane fine-tuning improves and a wild one wrecks."""
    from vidsieve.datasets.synthetic import Mover, Scene, write_scene

    tmp = tmp_path_factory.mktemp("site")
    d = tmp / "site"
    d.mkdir()
    write_scene(Scene(width=128, height=96, frames=20, movers=[Mover(2, 18, (300, 150), 0.5)]), d / "cam.mkv")
    t = Trainer(cfg(d, frames_per_video=10, lr=1e-3, seed=5), tmp / "start.pth")
    t.run(max_steps=40, progress=False)
    return d, {k: v.clone() for k, v in t.model.state_dict().items()}


def test_finetune_never_keeps_worse_weights(site_start, tmp_path):
    from vidsieve.training.export import export

    d, start = site_start
    t = Trainer(cfg(d, frames_per_video=10, lr=0.05, keep_best=True, eval_every=5), tmp_path / "w.pth",
                init_weights=start)
    t.run(max_steps=10, progress=False)
    # A rate this high wrecks the model (here, to NaN); the check saw it and kept the start.
    assert [h["step"] for h in t.history] == [5, 10]
    assert not all(math.isfinite(h["loss_change"]) and h["loss_change"] < 0 for h in t.history)
    assert t.best["anchor_step"] == 0 and t.best["step"] == 0 and t.best["loss_change"] == 0.0
    assert all(torch.equal(t.best_state[k], start[k]) for k in start)
    w = export(tmp_path / "w.pth", tmp_path / "weights")
    shipped = torch.load(w, weights_only=True)
    # Every weight is the start's; only the entropy coder's tables are made afresh from them.
    weights = [k for k in start if "._" not in k and not k.endswith("scale_table")]
    assert len(weights) > 20 and all(torch.equal(shipped[k], start[k]) for k in weights)
    entry = json.loads((tmp_path / "weights" / "manifest.json").read_text())["models"]["vidsieve-hyperprior"]
    assert entry["training"]["kept_step"] == 0 and entry["training"]["steps"] == 10
    # Every reader of the checkpoint as weights (compress --model, --finetune, the benches)
    # gets the kept weights too, not the wrecked last ones the checkpoint also holds.
    from vidsieve.codec.zoo import load_weights, sha256_file

    st = torch.load(tmp_path / "w.pth", weights_only=True)
    assert not torch.equal(st["model"]["g_s.0.weight"], start["g_s.0.weight"])
    state, sha = load_weights(tmp_path / "w.pth")
    assert sha == sha256_file(tmp_path / "w.pth") and all(torch.equal(state[k], start[k]) for k in weights)


def test_finetune_keeps_its_best_step_and_resumes_with_it(site_start, tmp_path):
    d, start = site_start
    t = Trainer(cfg(d, frames_per_video=10, lr=1e-3, keep_best=True, eval_every=10, seed=6), tmp_path / "b.pth",
                init_weights=start)
    t.run(max_steps=30, progress=False)
    best, changes = t.best, {h["step"]: h["loss_change"] for h in t.history}
    # An under-trained start gains from more training on its own scene; the weights
    # kept are those of the check with the lowest held-out loss.
    assert set(changes) == {10, 20, 30} and min(changes.values()) < 0
    assert best["step"] == min(changes, key=changes.get) and best["loss_change"] == changes[best["step"]]
    assert not torch.equal(t.best_state["g_s.0.weight"], start["g_s.0.weight"])
    again = Trainer.resume(tmp_path / "b.pth")
    assert again.best == json.loads(json.dumps(best))
    assert all(torch.equal(again.best_state[k], t.best_state[k]) for k in t.best_state)


def test_train_cli_finetune_says_what_it_kept(site_start, tmp_path):
    d, start = site_start
    w = tmp_path / "start.pth"
    torch.save(start, w)
    r = run_cli("train", "--finetune", w, "--data", d, "--out", tmp_path / "f.pth", "--patch", "64", "--batch", "2",
                "--steps", "3", "--lr", "0.05", "--export", tmp_path / "weights", check=True)
    assert "no step beat the starting weights on the held-out data" in r.stdout
    shipped = torch.load(tmp_path / "weights" / "vidsieve-hyperprior.pth", weights_only=True)
    assert torch.equal(shipped["g_a.0.weight"], start["g_a.0.weight"])


def test_train_inter_exports_a_model_the_stream_coder_uses_and_resumes(tmp_path):
    """vidsieve train --inter: the conditional model of predicted frames, trained on video with the intra
    model frozen, exported beside a manifest naming the intra weights it is for, and loadable."""
    from conftest import assert_clean_error
    from vidsieve.codec.registry import load_codec, load_conditional
    from vidsieve.datasets.synthetic import Mover, Scene, write_scene

    data = tmp_path / "video"
    data.mkdir()
    write_scene(Scene(width=320, height=256, frames=12, noise=1.5, movers=[Mover(2, 10, (400, 100), 0.5)]),
                data / "a.mkv")
    ck, exp = tmp_path / "inter.pth", tmp_path / "exp"
    r = run_cli("train", "--inter", "--data", data, "--out", ck, "--steps", "20", "--threads", "2", "--export", exp,
                check=True)
    assert "step 20" in r.stdout
    codec = load_codec()
    inter = codec.name.replace("vidsieve-hyperprior", "vidsieve-inter")  # named after its intra model
    entry = json.loads((exp / "manifest.json").read_text())["conditional"][inter]
    assert entry["intra_sha256"] == codec.weights_sha256 and entry["training"]["steps"] == 20
    assert entry["intra_analysis_sha256"] == codec.analysis_sha256
    model, name, sha = load_conditional(codec, str(exp / f"{inter}.pth"))
    assert sha == entry["sha256"] and model.M == codec.model.M
    r = run_cli("train", "--inter", "--resume", ck, "--out", ck, "--steps", "30", check=True)
    assert "step 30" in r.stdout
    # --finetune adapts given conditional weights to new footage: it starts from them.
    tuned = tmp_path / "tuned.pth"
    run_cli("train", "--inter", "--finetune", exp / f"{inter}.pth", "--data", data, "--out", tuned,
            "--steps", "1", "--lr", "1e-9", check=True)
    start = torch.load(exp / f"{inter}.pth", weights_only=True)
    after = torch.load(tuned, weights_only=True)["model"]
    assert torch.allclose(after["fuse.3.weight"], start["fuse.3.weight"], atol=1e-6)
    assert_clean_error(run_cli("train", "--inter", "--data", tmp_path / "none", "--out", ck), "not found")


def test_train_inter_context_starts_from_a_model_without_and_exports_a_two_pass_model(tmp_path):
    """vidsieve train --inter --context --finetune PLAIN: the shared layers start as the given model's,
    the context branch from zero; the export says so and the stream coder writes version 8 with it."""
    from conftest import assert_clean_error
    from vidsieve.codec.latent_codecs import S_DIFF_SECOND
    from vidsieve.codec.payload import PREDICTED, unpack
    from vidsieve.codec.predictive_encoder import PredictiveStreamEncoder
    from vidsieve.codec.registry import load_codec, load_conditional
    from vidsieve.datasets.synthetic import Mover, Scene, render, write_scene

    data = tmp_path / "video"
    data.mkdir()
    scene = Scene(width=320, height=256, frames=10, noise=1.5, movers=[Mover(0, 10, (400, 100), 0.5)],
                  light_change_at=3, light_gain=1.1)
    write_scene(scene, data / "a.mkv")
    ck, exp = tmp_path / "ctx.pth", tmp_path / "exp"
    run_cli("train", "--inter", "--context", "--finetune", "vidsieve-inter-wide", "--data", data, "--frames", "8",
            "--out", ck, "--steps", "3", "--lr", "1e-9", "--threads", "2", "--export", exp, check=True)
    start = load_conditional(load_codec(), "vidsieve-inter-wide")[0].state_dict()
    after = torch.load(ck, weights_only=True)["model"]
    assert torch.allclose(after["fuse.3.weight"], start["fuse.3.weight"], atol=1e-6)
    assert float(after["refine.3.weight"].abs().max()) < 1e-6  # the branch started at zero
    codec = load_codec()
    name = codec.name.replace("vidsieve-hyperprior", "vidsieve-inter") + "-ctx"
    entry = json.loads((exp / "manifest.json").read_text())["conditional"][name]
    assert entry["context"] == "checkerboard" and entry["intra_sha256"] == codec.weights_sha256
    model = load_conditional(codec, str(exp / f"{name}.pth"))[0]
    assert model.context
    enc = PredictiveStreamEncoder(codec, model, Fraction(1, 10), 10.0, name, entry["sha256"])
    coded = [enc.encode(rgb, 4.0, i) for i, (_, rgb) in enumerate(render(scene))][1:4]
    assert {unpack(c.data).version for c in coded} == {PREDICTED}
    assert any(unpack(c.data).strings[S_DIFF_SECOND] for c in coded)  # the second pass
    # Its first pass alone, exported as a model without context: the ablation from the same training.
    run_cli("train", "--inter", "--resume", ck, "--export-only", "--export", exp, "--export-first-pass",
            "--export-name", "first", check=True)
    first = load_conditional(codec, str(exp / "first.pth"))[0]
    assert not first.context and torch.equal(first.state_dict()["fuse.3.weight"], model.state_dict()["fuse.3.weight"])
    assert json.loads((exp / "manifest.json").read_text())["conditional"]["first"]["context"] == "none"
    assert_clean_error(run_cli("train", "--context", "--data", data, "--out", ck), "--inter")
    assert_clean_error(run_cli("train", "--export-only", "--resume", ck, "--export", exp), "--inter")
    assert_clean_error(run_cli("train", "--inter", "--data", data), "--out")
