"""Measures frame selection end to end on real clips (docs/RESULTS.md, "Selection").

    .venv/bin/python -m vidsieve.bench.selection_results CLIP... --out bench/results/selection.json

For each clip: compress at default settings, decode with hold-fill, and run a
reference detector (YOLOX-Nano, ONNX) on every frame of both.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..datasets.video import VideoReader
from ..detection.registry import load_detector
from ..metrics import psnr
from ..pipeline import CompressOptions, compress, decoded_frames, make_selector
from . import tool
from .detection_eval import Survival
from .jsonfile import write_json


def evaluate(clip: str, reference: str, out_dir: Path, opts: CompressOptions, conf: float = 0.4) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    vsv = out_dir / (Path(clip).stem + ".vsv")
    s = compress(clip, vsv, opts, progress=False, log_fn=print)
    ref = load_detector(reference)
    surv = Survival()
    psnrs = []
    with VideoReader(clip) as src:
        for orig, dec in zip(src, decoded_frames(vsv)):
            a = [d for d in ref.detect(orig.rgb) if d.score >= conf]
            b = [d for d in ref.detect(dec.rgb) if d.score >= conf]
            surv.add(a, b)
            psnrs.append(psnr(orig.rgb, dec.rgb))
    # Detection cost at 720p on this machine (the backend compress used).
    import cv2

    with VideoReader(clip) as r:
        sel = make_selector(opts, r.time_base)

        frames = [cv2.resize(f.rgb, (1280, 720)) for _, f in zip(range(40), r)]
    t0 = time.perf_counter()
    for f in frames:
        sel.decide(f, 0)
    det_ms = 1000 * (time.perf_counter() - t0) / len(frames)
    return {"clip": os.path.basename(clip), "frames": s.frames, "kept": s.kept,
            "kept_fraction": round(s.kept_fraction, 4), "kbps": round(s.kbps, 2), "bpp": round(s.bpp, 4),
            "psnr_kept": round(s.psnr_kept, 3), "psnr_all_holdfilled": round(float(np.mean(psnrs)), 3),
            "recall": round(surv.recall, 4), "precision": round(surv.precision, 4),
            "reference_objects": surv.reference, "detector": s.detector,
            "selection_ms_per_frame_720p": round(det_ms, 1), "segments": s.segments,
            "encode_seconds": round(s.seconds, 1)}


def main(argv=None) -> int:
    ap = tool.parser("selection_results", __doc__, out="bench/results/selection.json")
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--reference", required=True, help="reference detector (e.g. ../shared/models/yolox_nano.onnx)")
    ap.add_argument("--detector", default="auto")
    return tool.run(ap, _main, argv)


def _main(a) -> None:
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for c in a.clips:
        results.append(evaluate(c, a.reference, out.parent / "selection", CompressOptions(detector=a.detector)))
        print(json.dumps(results[-1]), flush=True)
        write_json(out, results)


if __name__ == "__main__":
    raise SystemExit(main())
