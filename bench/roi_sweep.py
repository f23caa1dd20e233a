"""Which quality-map levels to ship: ROI-PSNR against total rate for each ``--roi-boost`` / ``--roi-background``.

For every clip, every (boost, background) pair and every quality, the clip's first
``--frames`` frames are compressed with detection-driven selection and predicted frames
(``--detector``, default motion: the maps come from it), decoded, and measured against the
original with an independent reference detector (``--reference``, a YOLOX ONNX model): PSNR
inside its boxes (ROI-PSNR), outside them (background PSNR) and its recall. Reports, per
pair, the BD-rate on ROI-PSNR and on background PSNR against the pair (0, 0), one quality per
frame. Points are tasks on the local executor (``--jobs``).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from . import tool
from .jsonfile import write_json

PAIRS = [(0.0, 0.0), (0.0, -1.0), (1.0, -1.0), (1.5, -0.5), (0.5, -0.5)]
QUALITIES = [2.5, 4.0, 5.5]


def roi_point(task: tuple) -> dict:
    """One clip x (boost, background) x quality, measured (runs in a worker)."""
    from ..detection.registry import load_detector
    from ..executor import one_thread
    from .codecs import Vidsieve
    from .runner import load_clip, measure

    clip_path, frames, boost, background, quality, detector, reference = task
    with one_thread():
        clip = load_clip(clip_path, frames)
        ref = load_detector(reference)
        dets = [[d for d in ref.detect(f) if d.score >= 0.4] for f in clip.frames]
        codec = Vidsieve(detector=detector)
        codec.roi_boost, codec.roi_background = boost, background
        point = measure(clip, codec.run(clip, f"quality={quality}"), dets, ref)
    return {"clip": clip.name, "boost": boost, "background": background, "quality": quality, **point}


def bd(points: list[dict], pair: tuple, metric: str) -> float | None:
    """BD-rate of ``pair``'s curve against the no-map curve on ``metric`` (None where they overlap too little)."""
    from .bdrate import bd_rate

    def curve(p):
        return [x for x in points if (x["boost"], x["background"]) == p]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bd_rate(curve(PAIRS[0]), curve(pair), metric)


def main(argv=None) -> int:
    ap = tool.parser("roi_sweep", __doc__, out="bench/results/roi_sweep.json")
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--detector", default="motion")
    ap.add_argument("--reference", required=True, help="reference detector (e.g. yolox_nano.onnx)")
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    return tool.run(ap, _main, argv)


def _main(a) -> None:
    from ..executor import LocalExecutor, run_tasks

    tasks = [(os.path.abspath(c), a.frames, b, g, q, a.detector, a.reference)
             for c in a.clips for b, g in PAIRS for q in QUALITIES]
    outcomes = run_tasks(LocalExecutor(a.jobs), roi_point, tasks, desc="roi sweep")
    failed = [o.error for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} points failed: {failed[0]}")
    points = [o.value for o in outcomes]
    table = []
    for clip in sorted({p["clip"] for p in points}):
        mine = [p for p in points if p["clip"] == clip]
        for pair in PAIRS:
            row = {"clip": clip, "boost": pair[0], "background": pair[1],
                   "bd_roi_psnr": bd(mine, pair, "roi_psnr"), "bd_background_psnr": bd(mine, pair, "background_psnr"),
                   "bd_psnr_rgb": bd(mine, pair, "psnr_rgb")}
            table.append(row)
            print(json.dumps(row), flush=True)
    write_json(a.out, {"settings": {"frames": a.frames, "detector": a.detector, "reference": Path(a.reference).name,
                                    "qualities": QUALITIES},
                       "bd_vs_no_map": table, "points": points})


if __name__ == "__main__":
    raise SystemExit(main())
