"""What ``--quality`` does, measured: the intra boost at every asked quality, and stills through the CLI.

``boost``: a clip coded with every frame kept, at each asked quality, with the shipped rule
(:func:`vidsieve.codec.predictive_encoder.coded_qualities`: intra frames that predicted frames copy
from get more quality) and without it (the intra frame at the predicted frames' quality). Rate and
PSNR-RGB over all frames, from the stream coder's bytes and reconstructions.

``stills``: each image through ``vidsieve compress IMG --keep-all --quality Q`` and ``vidsieve
decompress`` (the CLI's ``main``, in this process), against ``vidsieve bench-image``'s codec on the same
images; bpp counts the frames' payload bytes (what ``compress`` reports), the container's own bytes
given apart; BD-rates against JPEG for both, and between them.

Usage::

    python tools/quality_scale.py boost VIDEO [--frames 100] [--out results.json]
    python tools/quality_scale.py stills IMAGE_DIR [--limit N] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

QUALITIES = (1, 2, 3, 4, 5, 6, 7, 8)


def _no_boost(quality: float):
    from vidsieve.codec.predictive_encoder import CodedQualities, coded_qualities

    q = coded_qualities(quality)
    return CodedQualities(q.predicted, q.predicted, q.alone)


def boost(video: str, frames: int, model: str) -> dict:
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
    bar = tqdm(total=2 * len(QUALITIES) * len(clip), unit="frame", desc="boost")
    for q in QUALITIES:
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
    for q in QUALITIES:
        s, n = by[(q, "shipped")], by[(q, "no boost")]
        s["vs_no_boost"] = {"db": round(s["psnr_rgb"] - n["psnr_rgb"], 3),
                            "bits_pct": round(100 * (s["kbps"] / n["kbps"] - 1), 2)}
    return {"video": video, "frames": len(clip), "model": codec.name, "weights_sha256": codec.weights_sha256,
            "rows": rows}


def stills(folder: str, limit: int | None, model: str) -> dict:
    from tqdm import tqdm

    from vidsieve.bench.bdrate import bd_rate
    from vidsieve.bench.image import run_image_bench
    from vidsieve.cli.main import main as cli
    from vidsieve.datasets.images import IMAGE_EXTS, load_rgb
    from vidsieve.metrics import psnr_from_mse
    from vidsieve.pipeline import info

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)[:limit]
    cli_curve = []
    overhead = []
    with tempfile.TemporaryDirectory() as tmp:
        bar = tqdm(total=len(files) * len(QUALITIES), unit="img", desc="stills via the CLI")
        for q in QUALITIES:
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    b = sub.add_parser("boost", help="the intra boost at every asked quality, on a clip")
    b.add_argument("video")
    b.add_argument("--frames", type=int, default=100)
    s = sub.add_parser("stills", help="stills through the CLI against bench-image")
    s.add_argument("folder")
    s.add_argument("--limit", type=int, default=None)
    for p in (b, s):
        p.add_argument("--model", default=None, help="registry name (default: the default model)")
        p.add_argument("--out", default=None, help="write the results here as JSON")
    a = ap.parse_args(argv)
    from vidsieve.bench.jsonfile import write_json
    from vidsieve.codec import DEFAULT_MODEL

    model = a.model or DEFAULT_MODEL
    doc = boost(a.video, a.frames, model) if a.what == "boost" else stills(a.folder, a.limit, model)
    if a.out:
        write_json(a.out, doc)
    json.dump(doc, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
