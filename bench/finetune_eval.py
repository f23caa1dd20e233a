"""What fine-tuning on one camera buys: train on a clip's first half, measure on its second half.

    .venv/bin/python -m vidsieve.bench.finetune_eval CLIP --minutes 10 --out bench/results/finetune.json

As ``vidsieve train --finetune`` does, the run holds out the last fifth of its
span (the first half's 40 to 50 %) and keeps the weights that do best there,
the starting ones included; the second half, never seen, measures what that
choice buys.
"""

from __future__ import annotations

import json
from pathlib import Path


from ..codec import DEFAULT_MODEL
from ..codec.models import widths
from ..codec.registry import gained_from_state, load_codec
from ..codec.zoo import load_weights
from ..datasets.images import sample_video_frames
from ..training.trainer import FINETUNE_LR, TrainConfig, Trainer
from .bdrate import bd_rate
from . import tool
from .jsonfile import write_json
from ..training.rd import coded_curve


def main(argv=None) -> int:
    ap = tool.parser("finetune_eval", __doc__, out="bench/results/finetune.json")
    ap.add_argument("clip")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1, help="training threads (default 1)")
    ap.add_argument("--eval-frames", type=int, default=8)
    ap.add_argument("--ckpt", default="runs/finetune/ckpt.pth")
    ap.add_argument("--base", default=None, help="weights to start from (default: the shipped model)")
    ap.add_argument("--check-every", type=int, default=200, metavar="STEPS",
                    help="held-out check every this many steps (default 200)")
    ap.add_argument("--keep-last", action="store_true",
                    help="measure the last weights instead of the best on the held-out frames")
    return tool.run(ap, _main, argv)


def _main(a) -> None:
    state, sha = load_weights(a.base or DEFAULT_MODEL)
    N, M = widths(state)
    cfg = TrainConfig(data=[a.clip], N=N, M=M,
                      patch=128, batch=8, lr=FINETUNE_LR, steps=100_000, budget_s=a.minutes * 60,
                      threads=a.threads, frames_per_video=60,
                      video_span=(0.0, 0.5), eval_every=a.check_every, keep_best=not a.keep_last)
    t = Trainer(cfg, a.ckpt, init_weights=state)
    t.run(max_time=a.minutes * 60, progress=False)
    test = sample_video_frames(Path(a.clip), a.eval_frames, 0.5, 1.0)
    base = load_codec(a.base or DEFAULT_MODEL)
    if t.best_state is not None and not a.keep_last:
        t.model.load_state_dict(t.best_state)
    t.model.eval()
    t.model.update(force=True)  # the entropy coder's tables, from the kept weights' quantiles
    tuned = gained_from_state(t.model.state_dict(), "finetuned", "finetuned")
    cb, ct = coded_curve(base, test), coded_curve(tuned, test)
    res = {"clip": Path(a.clip).name, "train": "60 frames of the first 40 %",
           "held_out": "12 frames of 40 to 50 %", "test": f"{len(test)} frames of the second half",
           "steps": t.step, "minutes": round(t.elapsed / 60, 1), "base_weights": sha[:16],
           "kept_step": t.best["step"] if t.best and not a.keep_last else t.step,
           "held_out_loss_change_percent": t.best["loss_change"] if t.best and not a.keep_last else None,
           "held_out_bd_rate_percent": t.best["bd_rate"] if t.best and not a.keep_last else None,
           "checks": [{k: h[k] for k in ("step", "loss_change", "val") if k in h} for h in t.history],
           "base": cb, "finetuned": ct, "bd_rate_percent": bd_rate(cb, ct, "psnr_rgb", "pchip")}
    write_json(a.out, res)
    print(json.dumps({k: res[k] for k in ("clip", "steps", "minutes", "kept_step", "held_out_loss_change_percent",
                                          "bd_rate_percent")}))


if __name__ == "__main__":
    raise SystemExit(main())
