"""Structured pruning (training.prune) and the narrower models it makes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import source_frame
from vidsieve.codec.models import GainedMeanScaleHyperprior, hidden_widths, widths
from vidsieve.training.prune import channel_importance, prune_state


@pytest.fixture(scope="module")
def trained():
    from vidsieve.codec.zoo import load_weights

    return load_weights("vidsieve-hyperprior")[0]  # the 64/96: quicker than the default, same layers


@pytest.fixture(scope="module")
def crops():
    x = np.stack([source_frame(128, 128, s) for s in range(4)])
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def stats(trained, crops):
    return channel_importance(GainedMeanScaleHyperprior.from_state_dict(trained), crops)


def reconstruct(state, x, quality=4.0):
    m = GainedMeanScaleHyperprior.from_state_dict(state).eval()
    with torch.no_grad():
        out = m(x, torch.full((x.shape[0],), quality))
    bits = sum((-torch.log2(lk)).sum() for lk in out["likelihoods"].values()) / x[0, 0].numel() / x.shape[0]
    return out["x_hat"].clamp(0, 1), float(bits)


def psnr_t(a, b):
    return float(-10 * torch.log10(((a - b) ** 2).mean()))


def test_keeping_every_channel_changes_nothing(trained, stats, crops):
    same = prune_state(trained, stats, transform=64, hyper=(96, 144))
    for k, v in trained.items():
        assert torch.equal(v, same[k]), k


def test_pruned_widths_load_and_code_a_frame(trained, stats):
    from vidsieve.codec.frame_codec import GainedCodec

    st = prune_state(trained, stats, transform=48, hyper=(64, 96))
    assert hidden_widths(st) == {"transform": 48, "hyper": (64, 96)}
    assert widths(st) == widths(trained) == (64, 96)  # hyper latent and latent unchanged
    model = GainedMeanScaleHyperprior.from_state_dict(st)
    assert (model.transform, model.hyper) == (48, (64, 96))
    assert sum(p.numel() for p in model.parameters()) < 0.8 * sum(v.numel() for v in trained.values())
    codec = GainedCodec(model, "pruned", "test")
    frame = source_frame(160, 96, 2)
    enc = codec.encode_batch([frame], [4.0])[0]
    assert np.array_equal(codec.decode(enc.data), enc.recon)


def test_pruning_the_hyper_synthesis_costs_rate_not_pictures(trained, stats, crops):
    """The hyper-synthesis only predicts the entropy model: pruning it keeps the pictures as close to the
    source and costs some rate before any retraining."""
    x_ref, bits_ref = reconstruct(trained, crops)
    st = prune_state(trained, stats, hyper=(64, 96))
    x_p, bits_p = reconstruct(st, crops)
    # Other means round the latent elsewhere: other pictures, as close to the source.
    assert abs(psnr_t(crops, x_p) - psnr_t(crops, x_ref)) < 0.3
    assert bits_ref < bits_p < 1.5 * bits_ref


def test_the_most_important_channels_are_kept(trained, stats, crops):
    """Keeping the ranked channels beats keeping as many of the least important ones."""
    st = prune_state(trained, stats, transform=56)
    x_ref, _ = reconstruct(trained, crops)
    good = psnr_t(x_ref, reconstruct(st, crops)[0])
    worst = {k: -v for k, v in stats.items()}
    bad = psnr_t(x_ref, reconstruct(prune_state(trained, worst, transform=56), crops)[0])
    assert good > bad + 1


def test_impossible_widths_are_refused(trained, stats):
    with pytest.raises(ValueError, match="cannot keep 80"):
        prune_state(trained, stats, transform=80)
    with pytest.raises(ValueError, match="cannot keep 0"):
        prune_state(trained, stats, hyper=(0, 10))


def test_entropy_only_training_keeps_the_transforms(tmp_path, trained, stats):
    """A pruned hyper-synthesis is retrained alone: analysis, synthesis and gains stay bit for bit, so
    latents (and the conditional model trained on them) stay valid, and the rate goes down."""
    from vidsieve.training.trainer import TrainConfig, Trainer

    data = tmp_path / "imgs"
    data.mkdir()
    import cv2

    for s in range(6):
        cv2.imwrite(str(data / f"{s}.png"), source_frame(160, 160, 10 + s))
    st = prune_state(trained, stats, hyper=(32, 48))
    cfg = TrainConfig(data=[str(data)], N=64, M=96, hyper=[32, 48], patch=64, batch=4, lr=1e-3, steps=40,
                      eval_every=0, entropy_only=True, threads=2)
    t = Trainer(cfg, tmp_path / "ck.pth", init_weights=st)
    x = torch.from_numpy(np.stack([source_frame(64, 64, 30 + s) for s in range(4)])).permute(0, 3, 1, 2).float() / 255
    t.model.eval()
    with torch.no_grad():
        before = float(t.model.rate(x, torch.full((4,), 4.0)).mean())
    t.run(max_steps=40, progress=False)
    t.model.eval()
    with torch.no_grad():
        after = float(t.model.rate(x, torch.full((4,), 4.0)).mean())
    for k, v in t.model.state_dict().items():
        if k.startswith(("g_a.", "g_s.", "log_gain", "log_inv_gain")):
            assert torch.equal(v, st[k]), k
    assert after < before
