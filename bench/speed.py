"""Codec and detection speed on this machine: one 720p frame, encode + decode, and selection per frame.

    .venv/bin/python -m vidsieve.bench.speed --image ../shared/data/images/kodak/kodim23.png --out bench/results/speed.json
"""

from __future__ import annotations

import json
import os
import platform
import time

import cv2
import numpy as np
import torch

from ..codec import DEFAULT_MODEL
from . import tool
from .jsonfile import write_json


def cpu_name(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The processor's model name: speeds differ several tenths of a second a frame between machines."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    ap = tool.parser("speed", __doc__, out="bench/results/speed.json")
    ap.add_argument("--image", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--yolox", default=None, help="a YOLOX .onnx to time as well")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="registry name or weights file")
    ap.add_argument("--codec-only", action="store_true", help="skip the selection and detector timings")
    return tool.run(ap, measure, argv)


def measure(a) -> None:
    from fractions import Fraction

    from ..codec.registry import load_codec
    from ..datasets.images import load_rgb
    from ..detection.motion import MotionDetector
    from ..rate import RateController, RatePolicy
    from ..selection.detect import DetectionSelector

    frame = cv2.resize(load_rgb(a.image), (1280, 720), interpolation=cv2.INTER_AREA)
    codec = load_codec(a.model)
    res = {"model": a.model, "weights_sha256": codec.weights_sha256[:12],
           "cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)),
           "torch_threads": torch.get_num_threads(), "frame": "1280x720", "codec": {}}
    for q in (1, 4, 8):
        codec.encode(frame, q)  # warm-up
        enc, dec = [], []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            data = codec.encode(frame, q)
            t1 = time.perf_counter()
            codec.decode(data)
            dec.append(time.perf_counter() - t1)
            enc.append(t1 - t0)
        res["codec"][f"quality={q}"] = {"encode_s": round(float(np.median(enc)), 3),
                                        "decode_s": round(float(np.median(dec)), 3),
                                        "total_s": round(float(np.median(enc) + np.median(dec)), 3),
                                        "bytes": len(data)}
    if a.codec_only:
        return _write(res, a.out)
    sel = DetectionSelector(MotionDetector(), RateController(RatePolicy()), Fraction(1, 10))
    rng = np.random.default_rng(0)
    frames = [np.clip(frame.astype(np.int16) + rng.integers(-3, 4, frame.shape), 0, 255).astype(np.uint8)
              for _ in range(20)]
    for i, f in enumerate(frames[:3]):
        sel.decide(f, i)
    t0 = time.perf_counter()
    for i, f in enumerate(frames):
        sel.decide(f, i + 3)
    res["selection_motion_ms_per_frame"] = round(1000 * (time.perf_counter() - t0) / len(frames), 1)
    # yolo11n.yaml builds the same network as yolo11n.pt with random weights: same cost, no download.
    from ..detection.registry import load_detector

    dets = {"ultralytics yolo11n (320 px)": "yolo11n.yaml"}
    if a.yolox:
        dets["yolox-nano onnx (416 px)"] = a.yolox
    for name, spec in dets.items():
        try:
            d = load_detector(spec)
        except Exception as exc:
            res[f"detect_ms_{name}"] = f"unavailable: {exc}"
            continue
        d.detect(frame)
        t0 = time.perf_counter()
        for f in frames[:10]:
            d.detect(f)
        res[f"detect_ms_{name}"] = round(1000 * (time.perf_counter() - t0) / 10, 1)
    return _write(res, a.out)


def _write(res: dict, out: str) -> dict:
    write_json(out, res)
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    raise SystemExit(main())
