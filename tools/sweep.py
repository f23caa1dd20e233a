"""Sweeps of a setting's grid, each point measured for real: quality-map levels, int8 settings.

Usage::

    python tools/sweep.py roi --help
    python tools/sweep.py int8 --help

Each command's help says what it measures and where it writes; docs/RESULTS.md and
docs/TRAINING.md quote the commands that made their numbers.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import _tool
import numpy as np
from vidsieve.files import write_json

# The ``roi`` command.
DOC_ROI = """Which quality-map levels to ship: ROI-PSNR against total rate for each ``--roi-boost`` / ``--roi-background``.

For every clip, every (boost, background) pair and every quality, the clip's first
``--frames`` frames are compressed with detection-driven selection and predicted frames
(``--detector``, default motion: the maps come from it), decoded, and measured against the
original with an independent reference detector (``--reference``, a YOLOX ONNX model): PSNR
inside its boxes (ROI-PSNR), outside them (background PSNR) and its recall. Reports, per
pair, the BD-rate on ROI-PSNR and on background PSNR against the pair (0, 0), one quality per
frame. Points are tasks on the local executor (``--jobs``).
"""


ROI_PAIRS = [(0.0, 0.0), (0.0, -1.0), (1.0, -1.0), (1.5, -0.5), (0.5, -0.5)]
ROI_QUALITIES = [2.5, 4.0, 5.5]


def roi_point(task: tuple) -> dict:
    """One clip x (boost, background) x quality, measured (runs in a worker)."""
    from vidsieve.bench.codecs import Vidsieve
    from vidsieve.bench.runner import load_clip, measure
    from vidsieve.detection.registry import load_detector
    from vidsieve.executor import one_thread

    clip_path, frames, boost, background, quality, detector, reference = task
    with one_thread():
        clip = load_clip(clip_path, frames)
        ref = load_detector(reference)
        dets = [[d for d in ref.detect(f) if d.score >= 0.4] for f in clip.frames]
        codec = Vidsieve(detector=detector)
        codec.roi_boost, codec.roi_background = boost, background
        point = measure(clip, codec.run(clip, f"quality={quality}"), dets, ref)
    return {"clip": clip.name, "boost": boost, "background": background, "quality": quality, **point}


def roi_bd(points: list[dict], pair: tuple, metric: str) -> float | None:
    """BD-rate of ``pair``'s curve against the no-map curve on ``metric`` (None where they overlap too little)."""
    from vidsieve.metrics.curves import bd_rate

    def curve(p):
        return [x for x in points if (x["boost"], x["background"]) == p]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bd_rate(curve(ROI_PAIRS[0]), curve(pair), metric)


def add_roi(sub) -> None:
    ap = _tool.command(sub, "roi", DOC_ROI, out="docs/results/roi_sweep.json")
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--detector", default="motion")
    ap.add_argument("--reference", required=True, help="reference detector (e.g. yolox_nano.onnx)")
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    ap.set_defaults(body=roi_sweep)


def roi_sweep(a) -> None:
    from vidsieve.executor import LocalExecutor, run_tasks

    tasks = [(os.path.abspath(c), a.frames, b, g, q, a.detector, a.reference)
             for c in a.clips for b, g in ROI_PAIRS for q in ROI_QUALITIES]
    outcomes = run_tasks(LocalExecutor(a.jobs), roi_point, tasks, desc="roi sweep")
    failed = [o.error for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} points failed: {failed[0]}")
    points = [o.value for o in outcomes]
    table = []
    for clip in sorted({p["clip"] for p in points}):
        mine = [p for p in points if p["clip"] == clip]
        for pair in ROI_PAIRS:
            row = {"clip": clip, "boost": pair[0], "background": pair[1],
                   "bd_roi_psnr": roi_bd(mine, pair, "roi_psnr"), "bd_background_psnr": roi_bd(mine, pair, "background_psnr"),
                   "bd_psnr_rgb": roi_bd(mine, pair, "psnr_rgb")}
            table.append(row)
            print(json.dumps(row), flush=True)
    write_json(a.out, {"settings": {"frames": a.frames, "detector": a.detector, "reference": Path(a.reference).name,
                                    "qualities": ROI_QUALITIES},
                       "bd_vs_no_map": table, "points": points})


# The ``int8`` command.
DOC_INT8 = """How the int8 transforms' settings trade bits: each setting built afresh and measured against float.

    python tools/sweep.py int8 --kodak ../shared/data/images/kodak --images 6 \\
        --calibrate ../shared/data/images/train ../shared/data/video --out docs/results/int8-sweep.json

For every equalisation strength (``--alphas``) the int8 graphs are built into a scratch folder
and the BD-rate (PSNR-RGB) against the float codec is measured on real bitstreams for an int8
analysis, an int8 synthesis, and both. Needs the ``onnx`` package (``vidsieve[quantize]``).
"""


def add_int8(sub) -> None:
    from vidsieve.codec import DEFAULT_MODEL

    ap = _tool.command(sub, "int8", DOC_INT8, out="docs/results/int8-sweep.json")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--kodak", required=True, help="images to measure on")
    ap.add_argument("--images", type=int, default=6, help="how many of them (default %(default)s)")
    ap.add_argument("--calibrate", nargs="+", required=True, help="images or videos to calibrate on")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.set_defaults(body=int8_sweep)


def int8_sweep(a) -> dict:
    import torch
    from vidsieve.codec import int8
    from vidsieve.codec.models import GainedMeanScaleHyperprior
    from vidsieve.codec.registry import load_codec
    from vidsieve.codec.zoo import load_shipped
    from vidsieve.datasets.images import IMAGE_EXTS, load_rgb
    from vidsieve.metrics import psnr
    from vidsieve.metrics.curves import bd_rate
    from vidsieve.training.prune import sample_crops
    from vidsieve.training.quantize import write_graphs

    files = sorted(p for p in Path(a.kodak).iterdir() if p.suffix.lower() in IMAGE_EXTS)[: a.images]
    images = [load_rgb(p) for p in files]
    codec = load_codec(a.model)
    state, entry = load_shipped(a.model)
    float_model = GainedMeanScaleHyperprior.from_state_dict(state).eval()
    torch.manual_seed(0)
    crops = list(sample_crops(a.calibrate, 24, 384).split(1))

    def curve(enc, dec):
        pts = []
        for q in (1, 2.5, 4, 6, 8):
            bits, ps = [], []
            for img in images:
                codec.model.use_int8(enc)
                data = codec.encode(img, q)
                codec.model.use_int8(dec)
                bits.append(8 * len(data) / (img.shape[0] * img.shape[1]))
                ps.append(psnr(img, codec.decode(data)))
            pts.append({"quality": q, "kbps": float(np.mean(bits)), "psnr_rgb": float(np.mean(ps))})
        codec.model.use_int8(None)
        return pts

    ref = curve(None, None)
    res = {"model": a.model, "weights_sha256": entry["sha256"][:12], "images": len(images), "float": ref,
           "alphas": {}}
    for alpha in a.alphas:
        with tempfile.TemporaryDirectory() as d:
            write_graphs(d, a.model, entry["sha256"], int8.build(float_model, crops, alpha=alpha))
            t = int8.load(a.model, entry["sha256"], d)
        row = {}
        for label, enc, dec in (("both", t, t), ("analysis", t, None), ("synthesis", None, t)):
            pts = curve(enc, dec)
            row[label] = {"bd_rate_vs_float": round(float(bd_rate(ref, pts)), 2), "curve": pts}
        res["alphas"][str(alpha)] = row
    write_json(a.out, res)
    print(json.dumps({al: {k: v["bd_rate_vs_float"] for k, v in row.items()} for al, row in res["alphas"].items()}))
    return res


def main(argv=None) -> int:
    return _tool.main(__doc__, [add_roi, add_int8], argv)


if __name__ == "__main__":
    raise SystemExit(main())
