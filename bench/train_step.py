r"""How fast one training step runs on this machine, and whether a faster form still learns.

    .venv/bin/python -m vidsieve.bench.train_step ../shared/data/images/train \
        --weights codec/weights/vidsieve-hyperprior.pth

Times one step (batch 8 of 256x256 crops, every quality level once) of the
shipped architecture in four forms: the default layout, channels-last
transforms (what `Trainer` uses on a CPU), the same under torch.compile
(`--compile`), and channels-last with the two big transforms under bfloat16
autocast. Speed alone would pick bfloat16, so the
script also measures the gradient each form computes on the same crops and the
same rate noise, against the float32 one: a faster step is only worth taking
if it points the same way. For scale it prints the agreement between two
float32 gradients that differ only in the rate noise, and between two batches.
Writes ``bench/results/train_step.json``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..codec.models import LAMBDAS, GainedMeanScaleHyperprior, widths
from ..datasets.images import CropSampler, load_training_arrays
from ..training.rd import rd_loss
from ..training.widen import widen_latent
from . import tool
from .jsonfile import write_json
from .speed import cpu_name


class _Autocast(torch.nn.Module):
    """Runs the wrapped transform under bfloat16 autocast and hands float32 on, so the entropy models stay exact."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.net(x).float()


def _model(state: dict, form: str) -> GainedMeanScaleHyperprior:
    m = GainedMeanScaleHyperprior.from_state_dict(state)
    if form != "default":
        m.transforms_channels_last()
    if form == "bf16":
        m.g_a, m.g_s = _Autocast(m.g_a), _Autocast(m.g_s)
    if form == "compiled":
        m.g_a.compile()
        m.g_s.compile()
    return m


def _step(m, x, form: str, seed: int):
    """Loss and transform gradient of one step (no update), and its time."""
    if form != "default":
        x = x.contiguous(memory_format=torch.channels_last)
    levels = torch.arange(x.shape[0]) % len(LAMBDAS)
    m.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    t = time.perf_counter()
    loss, _, _ = rd_loss(m(x, levels.float() + 1), x, torch.tensor(LAMBDAS)[levels])
    loss.backward()
    dt = time.perf_counter() - t
    g = torch.cat([p.grad.flatten() for n, p in m.named_parameters()
                   if p.grad is not None and n.startswith(("g_a", "g_s"))])
    return loss.item(), g, dt


def main(argv=None) -> int:
    ap = tool.parser("train_step", __doc__, out="bench/results/train_step.json")
    ap.add_argument("data", nargs="+", help="image folders to cut the crops from")
    ap.add_argument("--weights", required=True, help="trained weights (gradients of a random model say little)")
    ap.add_argument("--M", type=int, nargs="+", default=[96, 192], help="latent widths (wider ones are widened)")
    ap.add_argument("--reps", type=int, default=4)
    return tool.run(ap, _main, argv)


def _main(a) -> None:
    st = torch.load(a.weights, map_location="cpu", weights_only=True)
    st = st.get("model", st)
    sampler = CropSampler(load_training_arrays(a.data), 256, np.random.default_rng(0), 1.0)
    to_x = lambda b: torch.from_numpy(b).permute(0, 3, 1, 2).float().div(255).contiguous()
    xa, xb = to_x(sampler.batch(8)), to_x(sampler.batch(8))
    cos = lambda u, v: F.cosine_similarity(u, v, 0).item()
    res = {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)),
           "torch_threads": torch.get_num_threads(), "batch": "8 x 256x256", "weights": Path(a.weights).name,
           "widths": {}}
    for M in a.M:
        state = st if widths(st)[1] == M else widen_latent(st, M)
        row = {}
        ref = None
        for form in ("default", "channels_last", "compiled", "bf16"):
            m = _model(state, form)
            t0 = time.perf_counter()
            _step(m, xa, form, 0)  # warm-up: oneDNN picks its kernels on the first call, inductor compiles
            first = time.perf_counter() - t0
            times = [_step(m, xa, form, 0)[2] for _ in range(a.reps)]
            loss, g, _ = _step(m, xa, form, 0)
            if ref is None:
                ref = g
                row["noise_only"] = round(cos(g, _step(m, xa, form, 1)[1]), 3)
                row["other_batch"] = round(cos(g, _step(m, xb, form, 0)[1]), 3)
            row[form] = {"s_per_step": round(float(np.median(times)), 3), "first_step_s": round(first, 1),
                         "loss": round(loss, 4),
                         "grad_cosine_vs_fp32": round(cos(g, ref), 3),
                         "grad_norm_vs_fp32": round((g.norm() / ref.norm()).item(), 3)}
            print(M, form, row[form], flush=True)
        res["widths"][f"N{widths(st)[0]}/M{M}"] = row
        print(M, "fp32 gradient vs other rate noise:", row["noise_only"], "vs other batch:", row["other_batch"])
    write_json(a.out, res, indent=1)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    raise SystemExit(main())
