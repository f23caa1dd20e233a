"""Deep compression of the codec, model x precision: Kodak BD-rate against JPEG, shared-clip BD-rate
against x265, encode and decode time of a 720p frame (all configurations timed side by side, in
turns, in one run), and the size of the weights as shipped, as int8 graphs, and entropy-coded.

    python -m vidsieve.bench.deep_compression --kodak ../shared/data/images/kodak \\
        --clips ../shared/data/video/one-by-one-person-detection.mp4 ../shared/data/video/car-detection.mp4 \\
        --out bench/results/deep-compression.json
"""

from __future__ import annotations

import io
import json
import lzma
import os
import time
from pathlib import Path

import numpy as np

from . import tool
from .jsonfile import write_json

MODELS = ["vidsieve-hyperprior-wide", "vidsieve-hyperprior-slim"]


def main(argv=None) -> int:
    ap = tool.parser("deep_compression", __doc__, out="bench/results/deep-compression.json")
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--precisions", nargs="+", default=["float", "int8"])
    ap.add_argument("--kodak", default=None, help="folder of Kodak images (skipped when not given)")
    ap.add_argument("--clips", nargs="*", default=[], help="videos to compare with x265 on")
    ap.add_argument("--frames", type=int, default=60, help="frames of each clip (default %(default)s)")
    ap.add_argument("--speed-image", default=None, help="image resized to 1280x720 for the timings "
                                                        "(default: the Kodak folder's kodim23.png)")
    ap.add_argument("--reps", type=int, default=5, help="timing rounds (default %(default)s)")
    ap.add_argument("--cache", default="bench/results/cache", help="anchor codecs' cached points")
    return tool.run(ap, measure, argv)


def configs(models, precisions):
    from ..codec.registry import load_codec
    from ..errors import ModelError

    out, skipped = {}, {}
    for m in models:
        for p in precisions:
            try:
                out[f"{m}/{p}"] = load_codec(m, precision=p)
            except ModelError as exc:
                skipped[f"{m}/{p}"] = str(exc)
    return out, skipped


def measure(a) -> dict:
    from ..codec.frame_codec import set_threads
    from .speed import cpu_name

    codecs, skipped = configs(a.models, a.precisions)
    first = next(iter(codecs))
    res = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(), "cores": set_threads(),
           "configs": {k: {"model": c.name, "precision": c.precision, "weights_sha256": c.weights_sha256[:12]}
                       for k, c in codecs.items()},
           "skipped": skipped, "anchor": first}
    image = a.speed_image or (os.path.join(a.kodak, "kodim23.png") if a.kodak else None)
    if image:
        res["speed_720p"] = speed(codecs, image, a.reps)
    res["weights"] = {m: weights_size(m) for m in dict.fromkeys(c.name for c in codecs.values())}
    if a.kodak:
        res["kodak"] = kodak(codecs, a.kodak, first)
    if a.clips:
        res["clips"] = clips(codecs, a.clips, a.frames, a.cache, first)
    write_json(a.out, res)
    print(json.dumps({k: v for k, v in res.items() if k not in ("kodak", "clips")} |
                     {"kodak_bd": {k: v["bd_rate_vs_jpeg"] for k, v in res.get("kodak", {}).items()},
                      "clips_bd": {k: v["bd_rate_vs_x265_mean"] for k, v in res.get("clips", {}).get("bd", {}).items()}},
                     indent=1))
    return res


def speed(codecs: dict, image: str, reps: int) -> dict:
    """Median encode and decode seconds of one 720p frame per configuration and quality; every round
    times each configuration once, so a change in the machine's load falls on all of them alike."""
    import cv2

    from ..datasets.images import load_rgb

    frame = cv2.resize(load_rgb(image), (1280, 720), interpolation=cv2.INTER_AREA)
    times = {k: {q: ([], []) for q in (1, 4, 8)} for k in codecs}
    for c in codecs.values():
        c.decode(c.encode(frame, 4))  # warm-up (first-call allocations, ONNX Runtime sessions)
    for _ in range(reps):
        for k, c in codecs.items():
            for q in (1, 4, 8):
                t0 = time.perf_counter()
                data = c.encode(frame, q)
                t1 = time.perf_counter()
                c.decode(data)
                t2 = time.perf_counter()
                times[k][q][0].append(t1 - t0)
                times[k][q][1].append(t2 - t1)
    out = {}
    for k, per_q in times.items():
        enc = {q: float(np.median(e)) for q, (e, _) in per_q.items()}
        dec = {q: float(np.median(d)) for q, (_, d) in per_q.items()}
        out[k] = {"encode_ms": {f"q{q}": round(1000 * v, 1) for q, v in enc.items()},
                  "decode_ms": {f"q{q}": round(1000 * v, 1) for q, v in dec.items()},
                  "total_ms_range": [round(1000 * min(enc[q] + dec[q] for q in enc)),
                                     round(1000 * max(enc[q] + dec[q] for q in enc))]}
    return out


def weights_size(name: str) -> dict:
    """Bytes of a shipped model's weights: the float32 file, the int8 graphs where they ship, and the
    parameters of the transforms and entropy model quantised to 8 bits per output channel and
    entropy-coded (LZMA), the last stages of Han et al.'s deep compression (a size, not a format
    the product reads)."""
    import torch

    from ..codec.zoo import MANIFEST, load_shipped, read_manifest

    state, entry = load_shipped(name)
    manifest = read_manifest(MANIFEST)
    params = {k: v for k, v in state.items() if v.is_floating_point() and v.numel() > 1}
    q8 = io.BytesIO()
    for k in sorted(params):
        w = params[k].detach().float()
        flat = w.reshape(w.shape[0], -1) if w.dim() > 1 else w.reshape(1, -1)
        scale = flat.abs().amax(1, keepdim=True).clamp_min(1e-12) / 127
        q8.write(torch.round(flat / scale).to(torch.int8).numpy().tobytes())
        q8.write(scale.numpy().astype(np.float16).tobytes())
    raw = q8.getvalue()
    out = {"file_bytes": (MANIFEST.parent / entry["file"]).stat().st_size,
           "parameters": int(sum(v.numel() for v in params.values())),
           "int8_bytes": len(raw), "int8_lzma_bytes": len(lzma.compress(raw, preset=9))}
    graphs = manifest.get("int8", {}).get(name)
    if graphs:
        out["int8_graph_bytes"] = sum((MANIFEST.parent / graphs[p]["file"]).stat().st_size
                                      for p in ("analysis", "synthesis"))
    return out


def kodak(codecs: dict, folder: str, first: str) -> dict:
    from PIL import Image

    from ..datasets.images import IMAGE_EXTS, load_rgb
    from ..metrics import psnr
    from .bdrate import bd_rate

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)
    images = [load_rgb(p) for p in files]

    def point(per):
        return {"bpp": float(np.mean([b for b, _ in per])), "kbps": float(np.mean([b for b, _ in per])),
                "psnr_rgb": float(np.mean([p for _, p in per]))}

    jpeg = []
    for q in (10, 20, 30, 45, 60, 75, 85, 92):
        per = []
        for img in images:
            b = io.BytesIO()
            Image.fromarray(img).save(b, format="JPEG", quality=q)
            dec = np.asarray(Image.open(io.BytesIO(b.getvalue())).convert("RGB"))
            per.append((b.tell() * 8 / (img.shape[0] * img.shape[1]), psnr(img, dec)))
        jpeg.append(point(per))
    out = {}
    for k, c in codecs.items():
        curve = []
        for q in range(1, 9):
            per = []
            for img in images:
                data = c.encode(img, q)
                per.append((len(data) * 8 / (img.shape[0] * img.shape[1]), psnr(img, c.decode(data))))
            curve.append({"quality": q, **point(per)})
        out[k] = {"images": len(images), "curve": curve, "bd_rate_vs_jpeg": _r(bd_rate(jpeg, curve))}
    for k in out:
        out[k][f"bd_rate_vs_{first}"] = _r(bd_rate(out[first]["curve"], out[k]["curve"]))
    return out


def clips(codecs: dict, paths: list[str], frames: int, cache: str, first: str) -> dict:
    from .bdrate import bd_rate
    from .codecs import X265, Vidsieve
    from .runner import load_clip, measure, point_task

    Path(cache).mkdir(parents=True, exist_ok=True)
    points: dict[str, dict[str, list]] = {}
    for path in paths:
        clip = load_clip(path, frames)
        points[clip.name] = {"x265": [point_task((path, frames, "x265", s, None, "motion", cache))
                                      for s in X265.settings]}
        for k, c in codecs.items():
            # Every frame coded at the setting's quality (predicted from the ones before): the codec's
            # curve, not the selection's choice of which frames matter.
            v = Vidsieve(detector="motion", model=c.name, precision=c.precision)
            v.keep_all = True
            points[clip.name][k] = [{"setting": s, **measure(clip, v.run(clip, s), None)}
                                    for s in ("quality=1", "quality=2.5", "quality=4", "quality=6")]
    bd = {}
    for k in codecs:
        per = {name: _r(bd_rate(p["x265"], p[k])) for name, p in points.items()}
        vs_first = {name: _r(bd_rate(p[first], p[k])) for name, p in points.items()}
        vals = [v for v in per.values() if v is not None]
        bd[k] = {"bd_rate_vs_x265": per, "bd_rate_vs_x265_mean": _r(float(np.mean(vals))) if vals else None,
                 f"bd_rate_vs_{first}": vs_first}
    return {"frames": frames, "points": points, "bd": bd}


def _r(v):
    return None if v is None else round(float(v), 2)


if __name__ == "__main__":
    raise SystemExit(main())
