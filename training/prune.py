"""Structured pruning of a trained codec: narrower transforms, the same latent and entropy coder.

The codec's time goes to the two big transforms and to the fixed-point hyper-synthesis that
every encoder and decoder runs (:class:`~vidsieve.codec.fixed_point.ExactHyperSynthesis`). Whole
channels of their hidden layers are removed, so the result is a smaller dense network that
runs faster on any CPU (unlike scattered zeros, which dense kernels still multiply). The
channels kept are those that carry the most signal into the next layer: the mean magnitude
of a channel's activation on sample crops times the norm of the next layer's weights that
read it, the data-driven criterion of channel pruning (Li et al., "Pruning Filters for
Efficient ConvNets", ICLR 2017, ranked filters by weight norm alone; Luo et al., "ThiNet",
ICCV 2017, by what the next layer receives). The latent (``M``), the hyper latent (``N``)
and their entropy models are untouched; the training loop then recovers what the removed
channels carried (Han et al., "Deep Compression", ICLR 2016: prune, then retrain). A pruned
hyper-synthesis retrains alone (``TrainConfig.entropy_only``): the latents stay those of the
unpruned model, and so does everything trained on them (the conditional model of predicted
frames).

    python -m vidsieve.training.prune --from vidsieve-hyperprior-wide --transform 48 --hyper 128 192 \\
        --data ../shared/data/images/train --out runs/slim/pruned.pth
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ..codec.models import GainedMeanScaleHyperprior, hidden_widths

#: Hidden layers that can lose channels: (producing layer, its normalisation or None, reading layer,
#: transposed producer, transposed reader). A transposed convolution's weight is [in, out, k, k].
PRUNABLE = {
    "transform": [("g_a.0", "g_a.1", "g_a.2", False, False), ("g_a.2", "g_a.3", "g_a.4", False, False),
                  ("g_a.4", "g_a.5", "g_a.6", False, False), ("g_s.0", "g_s.1", "g_s.2", True, True),
                  ("g_s.2", "g_s.3", "g_s.4", True, True), ("g_s.4", "g_s.5", "g_s.6", True, True)],
    "hyper": [("h_s.0", None, "h_s.2", True, True), ("h_s.2", None, "h_s.4", True, False)],
}
#: The module whose output is the activation of each producing layer (after its nonlinearity).
ACTIVATION = {"g_a.0": "g_a.1", "g_a.2": "g_a.3", "g_a.4": "g_a.5", "g_s.0": "g_s.1", "g_s.2": "g_s.3",
              "g_s.4": "g_s.5", "h_s.0": "h_s.1", "h_s.2": "h_s.3"}


@torch.no_grad()
def channel_importance(model: GainedMeanScaleHyperprior, crops: torch.Tensor,
                       qualities=(1.0, 4.0, 8.0)) -> dict[str, torch.Tensor]:
    """Per producing layer, each output channel's importance over the crops (at each quality):
    its mean |activation| times the L2 norm of the reading layer's weights on that channel."""
    model.eval()
    mods = dict(model.named_modules())
    sums: dict[str, torch.Tensor] = {}

    def on_activation(name):
        def f(_m, _inp, out):
            sums[name] = sums.get(name, 0) + out.detach().abs().mean((0, 2, 3)) / len(qualities)
        return f

    handles = [mods[act].register_forward_hook(on_activation(prod)) for prod, act in ACTIVATION.items()]
    try:
        for q in qualities:
            model(crops, torch.full((crops.shape[0],), float(q)))
    finally:
        for h in handles:
            h.remove()
    out = {}
    for group in PRUNABLE.values():
        for prod, _norm, reader, _tp, treader in group:
            w = mods[reader].weight
            reads = w.pow(2).sum((1, 2, 3)) if treader else w.pow(2).sum((0, 2, 3))
            out[prod] = sums[prod] * reads.sqrt()
    return out


def prune_state(state: dict, importance: dict[str, torch.Tensor], transform: int | None = None,
                hyper: tuple[int, int] | None = None) -> dict:
    """A state dict with each prunable layer narrowed to its most important channels.

    Folding the removed channels' mean contribution into what stays (their mean activation into
    the next layer's bias, their share of a GDN's pool into its ``beta``) was tried and measured:
    +0.1 to 0.3 dB for the transforms before fine-tuning, 0.8 % more bits for the hyper-synthesis;
    the fine-tune recovers far more, so channels are simply removed.

    Args:
        state: weights of a trained :class:`GainedMeanScaleHyperprior`.
        importance: :func:`channel_importance` of that model.
        transform: hidden channels to keep in the analysis and synthesis (None: all).
        hyper: hidden channels to keep in the hyper-synthesis's two layers (None: all).
    """
    have = hidden_widths(state)
    keep_n = {}
    if transform is not None:
        if not 0 < transform <= have["transform"]:
            raise ValueError(f"the transforms have {have['transform']} channels; cannot keep {transform}")
        keep_n.update({prod: transform for prod, *_ in PRUNABLE["transform"]})
    if hyper is not None:
        for (prod, *_), n, h in zip(PRUNABLE["hyper"], hyper, have["hyper"]):
            if not 0 < n <= h:
                raise ValueError(f"{prod} has {h} channels; cannot keep {n}")
            keep_n[prod] = n
    out = dict(state)
    for group in PRUNABLE.values():
        for prod, norm, reader, tprod, treader in group:
            if prod not in keep_n:
                continue
            keep = torch.sort(torch.topk(importance[prod], keep_n[prod]).indices).values
            w = out[f"{prod}.weight"]
            out[f"{prod}.weight"] = w[:, keep] if tprod else w[keep]
            out[f"{prod}.bias"] = out[f"{prod}.bias"][keep]
            if norm is not None:
                # beta and gamma are stored through an element-wise reparametrisation: slicing the
                # stored tensors slices the values.
                out[f"{norm}.beta"] = out[f"{norm}.beta"][keep]
                out[f"{norm}.gamma"] = out[f"{norm}.gamma"][keep][:, keep]
            r = out[f"{reader}.weight"]
            out[f"{reader}.weight"] = r[keep] if treader else r[:, keep]
    return {k: v.clone().contiguous() for k, v in out.items()}


def sample_crops(folders: list[str], count: int = 16, size: int = 256, seed: int = 0) -> torch.Tensor:
    """``count`` random crops of ``size`` pixels from the images (and videos) in ``folders``, [count, 3, s, s]."""
    from ..datasets.images import CropSampler, load_training_arrays

    arrays = load_training_arrays(folders, 4, (0.0, 0.5))
    if not arrays:
        raise ValueError(f"no images or videos found in {', '.join(folders)}")
    batch = CropSampler(arrays, size, np.random.default_rng(seed)).batch(count)
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(255)


@torch.no_grad()
def check(state: dict, crops: torch.Tensor, qualities=(1.0, 4.0, 8.0)) -> dict:
    """Bits per pixel (from the likelihoods) and PSNR-RGB of a model on crops, per quality."""
    model = GainedMeanScaleHyperprior.from_state_dict(state).eval()
    out = {}
    for q in qualities:
        r = model(crops, torch.full((crops.shape[0],), float(q)))
        bits = sum((-torch.log2(lk)).sum() for lk in r["likelihoods"].values())
        mse = float(((r["x_hat"].clamp(0, 1) - crops) ** 2).mean())
        out[f"q{q:g}"] = {"bpp": round(float(bits) / crops[:, 0].numel(), 4),
                          "psnr": round(-10 * float(np.log10(max(mse, 1e-10))), 2)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vidsieve.training.prune", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="src", required=True, help="shipped model name or weights file to prune")
    ap.add_argument("--transform", type=int, default=None, help="hidden channels the transforms keep")
    ap.add_argument("--hyper", type=int, nargs=2, default=None, help="hidden channels the hyper-synthesis keeps")
    ap.add_argument("--data", nargs="+", required=True, help="images or videos to rank the channels on")
    ap.add_argument("--out", required=True, help="where to write the pruned weights (.pth)")
    ap.add_argument("--check", nargs="+", default=None, metavar="DIR",
                    help="also print rate and PSNR of the model before and after pruning on crops of these images")
    a = ap.parse_args(argv)
    from ..codec.zoo import load_weights
    from ..errors import VidsieveError
    from ..training.export import write_weights

    try:
        state = load_weights(a.src)[0]
        model = GainedMeanScaleHyperprior.from_state_dict(state)
        importance = channel_importance(model, sample_crops(a.data))
        pruned = prune_state(state, importance, a.transform, tuple(a.hyper) if a.hyper else None)
        GainedMeanScaleHyperprior.from_state_dict(pruned)  # it loads, or this fails before writing
        checked = None
        if a.check:
            crops = sample_crops(a.check, 8, 256, seed=1)
            checked = {"before": check(state, crops), "after": check(pruned, crops)}
    except (VidsieveError, ValueError, KeyError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(a.out)
    path = write_weights(pruned, out.parent, out.stem)
    before = sum(v.numel() for k, v in state.items() if v.is_floating_point() and not k.startswith("gaussian"))
    after = sum(v.numel() for k, v in pruned.items() if v.is_floating_point() and not k.startswith("gaussian"))
    print(f"{path}: {hidden_widths(pruned)}; {after / 1e6:.2f} M parameters (from {before / 1e6:.2f} M)")
    if checked:
        import json

        print(json.dumps(checked))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
