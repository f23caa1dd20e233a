"""The generators of docs/RESULTS.md's tables that no single harness run gives.

Usage::

    python tools/results.py deep-compression --help
    python tools/results.py selection --help
    python tools/results.py quality-boost --help
    python tools/results.py quality-stills --help

Each command's help says what it measures and where it writes; docs/RESULTS.md and
docs/TRAINING.md quote the commands that made their numbers.
"""

from __future__ import annotations

import io
import json
import lzma
import os
import tempfile
import time
from pathlib import Path

import _tool
import numpy as np
from vidsieve.bench.detection_eval import Survival
from vidsieve.codec import DEFAULT_MODEL
from vidsieve.datasets.video import VideoReader
from vidsieve.detection.registry import load_detector
from vidsieve.files import write_json
from vidsieve.metrics import psnr
from vidsieve.pipeline import CompressOptions, compress, decoded_frames, make_selector

# The ``deep-compression`` command.
DOC_DEEP_COMPRESSION = """Deep compression of the codec, model x precision: Kodak BD-rate against JPEG, shared-clip BD-rate
against x265, encode and decode time of a 720p frame (all configurations timed side by side, in
turns, in one run), and the size of the weights as shipped, as int8 graphs, and entropy-coded.

    python tools/results.py deep-compression --kodak ../shared/data/images/kodak \\
        --clips ../shared/data/video/one-by-one-person-detection.mp4 ../shared/data/video/car-detection.mp4 \\
        --out docs/results/deep-compression.json
"""


DC_MODELS = ["vidsieve-hyperprior-wide", "vidsieve-hyperprior-slim"]


def add_deep_compression(sub) -> None:
    ap = _tool.command(sub, "deep-compression", DOC_DEEP_COMPRESSION, out="docs/results/deep-compression.json")
    ap.add_argument("--models", nargs="+", default=DC_MODELS)
    ap.add_argument("--precisions", nargs="+", default=["float", "int8"])
    ap.add_argument("--kodak", default=None, help="folder of Kodak images (skipped when not given)")
    ap.add_argument("--clips", nargs="*", default=[], help="videos to compare with x265 on")
    ap.add_argument("--frames", type=int, default=60, help="frames of each clip (default %(default)s)")
    ap.add_argument("--speed-image", default=None, help="image resized to 1280x720 for the timings "
                                                        "(default: the Kodak folder's kodim23.png)")
    ap.add_argument("--reps", type=int, default=5, help="timing rounds (default %(default)s)")
    ap.add_argument("--cache", default="docs/results/cache", help="anchor codecs' cached points")
    ap.set_defaults(body=dc_measure)


def configs(models, precisions):
    from vidsieve.codec.registry import load_codec
    from vidsieve.errors import ModelError

    out, skipped = {}, {}
    for m in models:
        for p in precisions:
            try:
                out[f"{m}/{p}"] = load_codec(m, precision=p)
            except ModelError as exc:
                skipped[f"{m}/{p}"] = str(exc)
    return out, skipped


def dc_measure(a) -> dict:
    from vidsieve.codec.frame_codec import set_threads


    codecs, skipped = configs(a.models, a.precisions)
    first = next(iter(codecs))
    res = {"date": time.strftime("%Y-%m-%d"), "cpu": _tool.cpu_name(), "cores": set_threads(),
           "configs": {k: {"model": c.name, "precision": c.precision, "weights_sha256": c.weights_sha256[:12]}
                       for k, c in codecs.items()},
           "skipped": skipped, "anchor": first}
    image = a.speed_image or (os.path.join(a.kodak, "kodim23.png") if a.kodak else None)
    if image:
        res["speed_720p"] = dc_speed(codecs, image, a.reps)
    res["weights"] = {m: weights_size(m) for m in dict.fromkeys(c.name for c in codecs.values())}
    if a.kodak:
        res["kodak"] = dc_kodak(codecs, a.kodak, first)
    if a.clips:
        res["clips"] = dc_clips(codecs, a.clips, a.frames, a.cache, first)
    write_json(a.out, res)
    print(json.dumps({k: v for k, v in res.items() if k not in ("kodak", "clips")} |
                     {"kodak_bd": {k: v["bd_rate_vs_jpeg"] for k, v in res.get("kodak", {}).items()},
                      "clips_bd": {k: v["bd_rate_vs_x265_mean"] for k, v in res.get("clips", {}).get("bd", {}).items()}},
                     indent=1))
    return res


def dc_speed(codecs: dict, image: str, reps: int) -> dict:
    """Median encode and decode seconds of one 720p frame per configuration and quality; every round
    times each configuration once, so a change in the machine's load falls on all of them alike."""
    import cv2
    from vidsieve.datasets.images import load_rgb

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
    from vidsieve.codec.zoo import MANIFEST, load_shipped, read_manifest

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


def dc_kodak(codecs: dict, folder: str, first: str) -> dict:
    from vidsieve.bench.codecs import JPEG_QUALITIES, pil_decode, pil_encode
    from vidsieve.datasets.images import IMAGE_EXTS, load_rgb
    from vidsieve.metrics import psnr
    from vidsieve.metrics.curves import bd_rate

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)
    images = [load_rgb(p) for p in files]

    def point(per):
        return {"bpp": float(np.mean([b for b, _ in per])), "kbps": float(np.mean([b for b, _ in per])),
                "psnr_rgb": float(np.mean([p for _, p in per]))}

    jpeg = []
    for q in JPEG_QUALITIES:
        per = []
        for img in images:
            data = pil_encode(img, "JPEG", q)
            per.append((len(data) * 8 / (img.shape[0] * img.shape[1]), psnr(img, pil_decode(data))))
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


def dc_clips(codecs: dict, paths: list[str], frames: int, cache: str, first: str) -> dict:
    from vidsieve.bench.codecs import X265, Vidsieve
    from vidsieve.bench.runner import load_clip, measure, point_task
    from vidsieve.metrics.curves import bd_rate

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


# The ``selection`` command.
DOC_SELECTION = """Measures frame selection end to end on real clips (docs/RESULTS.md, "Selection").

    python tools/results.py selection CLIP... --out docs/results/selection.json

For each clip: compress at default settings, decode with hold-fill, and run a
reference detector (YOLOX-Nano, ONNX) on every frame of both.
"""


def evaluate(clip: str, reference: str, out_dir: Path, opts: CompressOptions) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    vsv = out_dir / (Path(clip).stem + ".vsv")
    s = compress(clip, vsv, opts, progress=False, log_fn=print)
    ref = load_detector(reference)
    surv = Survival()
    psnrs = []
    with VideoReader(clip) as src:
        for orig, dec in zip(src, decoded_frames(vsv)):
            surv.add(ref.detect(orig.rgb), ref.detect(dec.rgb))
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
    return {"clip": os.path.basename(clip), "frames": s.frames, "coded": s.coded, "selected": s.selected,
            "selected_fraction": round(s.selected_fraction, 4), "kbps": round(s.kbps, 2), "bpp": round(s.bpp, 4),
            "psnr_coded": round(s.psnr_coded, 3), "psnr_all_holdfilled": round(float(np.mean(psnrs)), 3),
            "recall": round(surv.recall, 4), "precision": round(surv.precision, 4), "f1": round(surv.f1, 4),
            "reference_objects": surv.reference, "detector": s.detector,
            "selection_ms_per_frame_720p": round(det_ms, 1), "segments": s.segments,
            "encode_seconds": round(s.seconds, 1)}


def add_selection(sub) -> None:
    ap = _tool.command(sub, "selection", DOC_SELECTION, out="docs/results/selection.json")
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--reference", required=True, help="reference detector (e.g. ../shared/models/yolox_nano.onnx)")
    ap.add_argument("--detector", default="auto")
    ap.add_argument("--max-frames", type=int, default=None, help="the first N frames of each clip only")
    ap.set_defaults(body=selection_main)


def selection_main(a) -> None:
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for c in a.clips:
        results.append(evaluate(c, a.reference, out.parent / "selection",
                                CompressOptions(detector=a.detector, max_frames=a.max_frames)))
        print(json.dumps(results[-1]), flush=True)
        write_json(out, results)



# The ``quality-boost`` and ``quality-stills`` commands.
DOC_QUALITY = """What ``--quality`` does, measured: the intra boost at every asked quality, and stills through the CLI.

``quality-boost``: a clip coded with every frame kept, at each asked quality, with the shipped rule
(:func:`vidsieve.codec.predictive_encoder.coded_qualities`: intra frames that predicted frames copy
from get more quality) and without it (the intra frame at the predicted frames' quality). Rate and
PSNR-RGB over all frames, from the stream coder's bytes and reconstructions.

``quality-stills``: each image through ``vidsieve compress IMG --keep-all --quality Q`` and ``vidsieve
decompress`` (the CLI's ``main``, in this process), against ``vidsieve bench-image``'s codec on the same
images; bpp counts the frames' payload bytes (what ``compress`` reports), the container's own bytes
given apart; BD-rates against JPEG for both, and between them.

Usage::

    python tools/results.py quality-boost VIDEO [--frames 100] [--out results.json]
    python tools/results.py quality-stills IMAGE_DIR [--limit N] [--out results.json]
"""

#: The asked qualities both quality commands sweep.
ASKED_QUALITIES = (1, 2, 3, 4, 5, 6, 7, 8)


def _no_boost(quality: float):
    from vidsieve.codec.predictive_encoder import CodedQualities, coded_qualities

    q = coded_qualities(quality)
    return CodedQualities(q.predicted, q.predicted, q.alone)


def quality_boost(video: str, frames: int, model: str) -> dict:
    from tqdm import tqdm
    from vidsieve.codec.registry import load_codec, stream_encoder
    from vidsieve.datasets.video import VideoReader
    from vidsieve.metrics import psnr

    codec = load_codec(model)
    with VideoReader(video) as reader:
        clip = [(f.rgb, f.pts) for _, f in zip(range(frames), reader)]
        tb, fps = reader.time_base, reader.fps
    seconds = len(clip) / float(fps)
    rows = []
    bar = tqdm(total=2 * len(ASKED_QUALITIES) * len(clip), unit="frame", desc="boost")
    for q in ASKED_QUALITIES:
        for rule in ("shipped", "no boost"):
            enc = stream_encoder(codec, tb)
            if rule == "no boost":
                enc.qualities = _no_boost
            nbytes, dbs = 0, []
            for i, (rgb, pts) in enumerate(clip):
                out = enc.encode(rgb, q, pts, intra=i == 0, referenced=i + 1 < len(clip))
                nbytes += len(out.data)
                dbs.append(psnr(rgb, out.recon))
                bar.update(1)
            qs = enc.qualities(q)
            rows.append({"quality": q, "rule": rule, "intra_quality": qs.referenced, "predicted_quality": qs.predicted,
                         "kbps": round(nbytes * 8 / 1000 / seconds, 2), "psnr_rgb": round(float(np.mean(dbs)), 3)})
    bar.close()
    by = {(r["quality"], r["rule"]): r for r in rows}
    for q in ASKED_QUALITIES:
        s, n = by[(q, "shipped")], by[(q, "no boost")]
        s["vs_no_boost"] = {"db": round(s["psnr_rgb"] - n["psnr_rgb"], 3),
                            "bits_pct": round(100 * (s["kbps"] / n["kbps"] - 1), 2)}
    return {"video": video, "frames": len(clip), "model": codec.name, "weights_sha256": codec.weights_sha256,
            "rows": rows}


def quality_stills(folder: str, limit: int | None, model: str) -> dict:
    from tqdm import tqdm
    from vidsieve.bench.image import run_image_bench
    from vidsieve.cli.main import main as cli
    from vidsieve.datasets.images import IMAGE_EXTS, load_rgb
    from vidsieve.metrics import psnr_from_mse
    from vidsieve.metrics.curves import bd_rate
    from vidsieve.pipeline import info

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)[:limit]
    cli_curve = []
    overhead = []
    with tempfile.TemporaryDirectory() as tmp:
        bar = tqdm(total=len(files) * len(ASKED_QUALITIES), unit="img", desc="stills via the CLI")
        for q in ASKED_QUALITIES:
            bpp, dbs = [], []
            for p in files:
                img = load_rgb(p)
                vsv, out = Path(tmp) / "a.vsv", Path(tmp) / "dec"
                for argv in (["-q", "compress", str(p), "-o", str(vsv), "--keep-all", "--quality", str(q),
                              "--model", model],
                             ["-q", "decompress", str(vsv), "-o", f"{out}/"]):
                    if cli(argv) != 0:
                        raise SystemExit(f"vidsieve {' '.join(argv)} failed")
                d = info(vsv)
                dec = load_rgb(out / "frame_000000.png")
                bpp.append(d["frame_bytes"] * 8 / (img.shape[0] * img.shape[1]))
                overhead.append(d["bytes"] - d["frame_bytes"])
                dbs.append(psnr_from_mse(float(np.mean((img.astype(np.float64) - dec) ** 2))))
                bar.update(1)
            cli_curve.append({"setting": f"quality={q}", "bpp": float(np.mean(bpp)), "psnr_rgb": float(np.mean(dbs))})
        bar.close()
        bench = run_image_bench(folder, Path(tmp) / "bench", model=model, zoo=False, limit=limit)
    curves = bench["curves"]
    name = next(k for k in curves if k not in ("jpeg", "webp"))

    def pts(c):
        return [{"kbps": p["bpp"], "psnr_rgb": p["psnr_rgb"]} for p in c]

    jpeg = pts(curves["jpeg"])
    return {"folder": folder, "images": len(files), "model": name, "cli": cli_curve, "bench_image": curves[name],
            "container_bytes_per_file": float(np.mean(overhead)),
            "bd_rate_vs_jpeg": {"cli": bd_rate(jpeg, pts(cli_curve)), "bench_image": bd_rate(jpeg, pts(curves[name]))},
            "bd_rate_cli_vs_bench_image": bd_rate(pts(curves[name]), pts(cli_curve))}


def add_quality_boost(sub) -> None:
    ap = _tool.command(sub, "quality-boost", DOC_QUALITY, out=None)
    ap.add_argument("video")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="registry name (default: %(default)s)")
    ap.set_defaults(body=lambda a: _print_doc(quality_boost(a.video, a.frames, a.model), a.out))


def add_quality_stills(sub) -> None:
    ap = _tool.command(sub, "quality-stills", DOC_QUALITY, out=None)
    ap.add_argument("folder")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="registry name (default: %(default)s)")
    ap.set_defaults(body=lambda a: _print_doc(quality_stills(a.folder, a.limit, a.model), a.out))


def _print_doc(doc: dict, out: str | None) -> None:
    if out:
        write_json(out, doc)
    print(json.dumps(doc, indent=1))


def main(argv=None) -> int:
    return _tool.main(__doc__, [add_deep_compression, add_selection, add_quality_boost, add_quality_stills], argv)


if __name__ == "__main__":
    raise SystemExit(main())
