"""Train (or resume) the shipped default codec, on a CPU in the background or on a GPU lease.

    nohup .venv/bin/python scripts/train_default.py --max-time 9000 &

Runs on CPU or GPU (whichever torch finds). Resumes from --out when it exists,
so it can be stopped and started any number of times. ``--budget`` makes the
learning-rate schedule follow training time rather than steps, which is what a
run stopped by the clock needs. ``--mirror DIR`` also writes the state at every
checkpoint into DIR in parts of at most 15 MiB (``cat NAME.part* > NAME``
joins them), for machines that only hand back small files.
"""
import argparse
import io
import logging
import os
import sys
from pathlib import Path

import torch

from vidsieve.codec.models import hidden_widths, widths
from vidsieve.training.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDSIEVE_SHARED", ROOT.parent / "shared"))
PART = 15 << 20


def mirror(t: Trainer, out_dir: Path, name: str, full: bool) -> None:
    state = t.state()
    if not full:
        state = {k: state[k] for k in ("model", "config", "step", "elapsed", "history")}
        state["format"] = "vidsieve-weights-1"
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob(f"{name}.part*"):
        old.unlink()
    for i in range(0, len(data), PART):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_bytes(data[i:i + PART])
        os.replace(tmp, out_dir / f"{name}.part{i // PART}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "runs/default/ckpt.pth"))
    ap.add_argument("--data", nargs="+", default=[str(SHARED / "data/images/train"), str(SHARED / "data/video")])
    ap.add_argument("--val", nargs="*", default=[], help="held-out folders (default: a seeded split of --data)")
    ap.add_argument("--max-time", type=float, default=None)
    ap.add_argument("--budget", type=float, default=0.0, help="schedule length in seconds of training")
    ap.add_argument("--steps", type=int, default=30000, help="schedule length in steps (without --budget)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=TrainConfig.batch)
    ap.add_argument("--patch", type=int, default=TrainConfig.patch, help="crop size (default %(default)s)")
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--N", type=int, default=TrainConfig.N)
    ap.add_argument("--M", type=int, default=TrainConfig.M)
    ap.add_argument("--max-scale", type=float, default=1.0)
    ap.add_argument("--frames-per-video", type=int, default=10)
    ap.add_argument("--checkpoint-every", type=float, default=180.0)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--init", default=None, help="start from these weights (a .pth state or checkpoint)")
    ap.add_argument("--new-lr", type=float, default=0.0,
                    help="with --init from a narrower latent: learning rate of the new channels (default: --lr)")
    ap.add_argument("--new-scale", type=float, default=0.1,
                    help="with --init from a narrower latent: initial scale of the new analysis rows")
    ap.add_argument("--new-rate-ramp", type=int, default=0,
                    help="with --init from a narrower latent: steps over which the new channels' bits "
                         "come into the loss (0: at once)")
    ap.add_argument("--prior-scale", type=float, default=None,
                    help="with --init from a narrower latent: the entropy model's first scale for the new channels")
    ap.add_argument("--restart", action="store_true",
                    help="resume --out with a new learning-rate cycle from --lr over --budget seconds "
                         "(or --steps): a warm restart of a run whose schedule is spent")
    ap.add_argument("--entropy-only", action="store_true",
                    help="train the entropy model alone; analysis, synthesis and gains stay (a pruned hyper-synthesis)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the transforms (faster CPU steps)")
    ap.add_argument("--mirror", default=None, help="also write checkpoints here in <=15 MiB parts")
    ap.add_argument("--mirror-full", action="store_true", help="mirror the resumable state, not only weights")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(a.out)
    if out.exists() and (a.init or a.new_lr or a.new_rate_ramp or a.prior_scale is not None):
        ap.error(f"{out} exists and would be resumed; --init and the widening options only start a new run "
                 "(choose another --out)")
    if a.restart and not out.exists():
        ap.error(f"--restart continues a run, and {out} does not exist")
    if out.exists():
        t = Trainer.resume(out, threads=a.threads, steps=a.steps, frames_per_video=a.frames_per_video,
                           # A restart's new cycle is --budget seconds, or --steps steps without it.
                           budget_s=a.budget if a.restart else a.budget or None, compile=a.compile or None,
                           restart=a.restart,
                           lr=a.lr if a.restart else None)
    else:
        init = None
        widened_from = 0
        hidden = {}
        if a.init:
            try:
                st = torch.load(a.init, map_location="cpu", weights_only=True)
                init = st.get("model", st)
                if not all(k in init for k in ("g_a.0.weight", "g_a.6.weight")):
                    raise KeyError("no analysis transform in it")
            except Exception as exc:  # any unreadable file: say which, not where in torch it failed
                why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}" if str(exc) else type(exc).__name__
                ap.error(f"--init {a.init}: not vidsieve weights ({why})")
            N0, M0 = widths(init)
            # A pruned model (vidsieve.training.prune) trains at its own hidden widths.
            hidden = hidden_widths(init)
            if N0 != a.N:
                ap.error(f"--init has N={N0}, not {a.N}")
            if M0 != a.M:
                from vidsieve.training.widen import widen_latent

                widened_from = M0
                init = widen_latent(init, a.M, new_scale=a.new_scale, prior_scale=a.prior_scale)
        if (a.new_lr or a.new_rate_ramp or a.prior_scale is not None) and not widened_from:
            ap.error("--new-lr, --new-rate-ramp and --prior-scale apply only to a run that widens the latent "
                     "of its --init weights (--M larger than theirs)")
        cfg = TrainConfig(data=a.data, val_data=a.val, N=a.N, M=a.M, **hidden, patch=a.patch, batch=a.batch,
                          lr=a.lr, steps=a.steps, budget_s=a.budget, threads=a.threads, max_scale=a.max_scale,
                          video_span=(0.0, 0.5), frames_per_video=a.frames_per_video, video_holdout=0.0,
                          checkpoint_every_s=a.checkpoint_every, eval_every=a.eval_every, compile=a.compile,
                          widened_from=widened_from, new_lr=a.new_lr if widened_from else 0.0,
                          new_rate_ramp=a.new_rate_ramp if widened_from else 0, entropy_only=a.entropy_only)
        t = Trainer(cfg, out, init_weights=init)
    log = logging.getLogger("train")
    log.info("device %s, N=%d M=%d, batch %d of %d px, %d training images", t.device, t.cfg.N, t.cfg.M,
             t.cfg.batch, t.cfg.patch, len(t.sampler.arrays))
    hook = None
    if a.mirror:
        def hook(tr):
            mirror(tr, Path(a.mirror), out.stem, a.mirror_full)
            log.info("step %d mirrored", tr.step)
    t.run(max_time=a.max_time, progress=sys.stderr.isatty(), on_checkpoint=hook)
    print(f"step {t.step} saved to {out}")


if __name__ == "__main__":
    main()
