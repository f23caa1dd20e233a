"""Train (or resume) the shipped default codec in the background.

    nohup .venv/bin/python scripts/train_default.py --max-time 9000 &

Runs on CPU or GPU (whichever torch finds). Resumes from runs/default/ckpt.pth
when it exists, so it can be stopped and started any number of times.
"""
import argparse
import logging
import os
import sys
from pathlib import Path

from vidsieve.training.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDSIEVE_SHARED", ROOT.parent / "shared"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "runs/default/ckpt.pth"))
    ap.add_argument("--max-time", type=float, default=None)
    ap.add_argument("--steps", type=int, default=30000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--M", type=int, default=96)
    ap.add_argument("--frames-per-video", type=int, default=10)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(a.out)
    if out.exists():
        t = Trainer.resume(out, threads=a.threads, steps=a.steps, frames_per_video=a.frames_per_video)
    else:
        cfg = TrainConfig(data=[str(SHARED / "data/images/train"), str(SHARED / "data/video")],
                          N=a.N, M=a.M, patch=a.patch, batch=a.batch, steps=a.steps, threads=a.threads,
                          video_span=(0.0, 0.5), frames_per_video=a.frames_per_video)
        t = Trainer(cfg, out)
    t.run(max_time=a.max_time, progress=sys.stderr.isatty())
    print(f"step {t.step} saved to {out}")


if __name__ == "__main__":
    main()
