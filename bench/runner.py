"""``vidsieve bench``: rate-distortion, speed and detection survival on video clips."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import warnings
from pathlib import Path

import numpy as np

from .. import __version__
from ..datasets.video import VideoReader
from .codecs import CODECS, Clip
from ..metrics import luma, masked_sse, ms_ssim_mean, psnr_from_mse
from .detection_eval import Survival, roi_mask
from .jsonfile import write_json

log = logging.getLogger(__name__)


def load_clip(path: str, frames: int | None) -> Clip:
    imgs, pts = [], []
    with VideoReader(path) as r:
        for f in r:
            imgs.append(f.rgb)
            pts.append(f.pts)
            if frames and len(imgs) >= frames:
                break
        tb, fps = r.time_base, r.fps
    if not imgs:
        from ..errors import InputError

        raise InputError(f"{path} has no frames")
    return Clip(Path(path).stem, imgs, pts, tb, fps, str(path))


def measure(clip: Clip, enc, ref_dets: list | None, detector=None) -> dict:
    n = len(clip.frames)
    h, w = clip.frames[0].shape[:2]
    dec = enc.decoded
    if len(dec) != n:
        raise RuntimeError(f"decoder returned {len(dec)} frames for {n}")
    mse_rgb = [float(np.mean((a.astype(np.float64) - b) ** 2)) for a, b in zip(clip.frames, dec)]
    mse_y = [float(np.mean((luma(a) - luma(b)) ** 2)) for a, b in zip(clip.frames, dec)]
    point = {
        "kbps": enc.bytes * 8 / 1000 / clip.duration,
        "bpp": enc.bytes * 8 / (n * w * h),
        "psnr_rgb": float(np.mean([psnr_from_mse(m) for m in mse_rgb])),
        "psnr_y": float(np.mean([psnr_from_mse(m) for m in mse_y])),
        "ms_ssim": ms_ssim_mean(clip.frames, dec),
        "enc_fps": n / enc.enc_s if enc.enc_s > 0 else None,
        "dec_fps": n / enc.dec_s if enc.dec_s > 0 else None,
        "kept_fraction": enc.kept_fraction,
        "recall": None, "precision": None, "roi_psnr": None, "background_psnr": None,
    }
    if ref_dets is not None and detector is not None:
        surv = Survival()
        sse_in = cnt_in = sse_out = cnt_out = 0
        for orig, d, dets in zip(clip.frames, dec, ref_dets):
            surv.add(dets, [x for x in detector.detect(d) if x.score >= 0.4])
            m = roi_mask(dets, (h, w))
            s, c = masked_sse(orig, d, m)
            sse_in, cnt_in = sse_in + s, cnt_in + c
            s, c = masked_sse(orig, d, ~m)
            sse_out, cnt_out = sse_out + s, cnt_out + c
        point.update(recall=surv.recall if surv.reference else None,
                     precision=surv.precision if surv.decoded else None,
                     roi_psnr=psnr_from_mse(sse_in / cnt_in) if cnt_in else None,
                     background_psnr=psnr_from_mse(sse_out / cnt_out) if cnt_out else None)
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in point.items()}


def _code_version(codec_name: str) -> str:
    v = __version__
    if codec_name.startswith("vidsieve"):
        from ..codec import DEFAULT_MODEL
        from ..codec.zoo import MANIFEST

        # Cached points of our codec are only good for the weights that made them (intra and conditional).
        try:
            manifest = json.loads(MANIFEST.read_text())
            v += ":" + manifest["models"][DEFAULT_MODEL]["sha256"][:16]
            v += "".join(":" + e["sha256"][:16] for e in manifest.get("conditional", {}).values())
        except Exception:
            pass
    return v


def cache_key(clip_path: str, frames: int | None, codec: str, setting: str, reference: str | None) -> str:
    st = os.stat(clip_path)
    raw = json.dumps([os.path.abspath(clip_path), st.st_size, int(st.st_mtime), frames, codec, setting,
                      _code_version(codec), getattr(CODECS.get(codec), "extra", None), reference, "point-v3"])
    return hashlib.sha1(raw.encode()).hexdigest()[:20]


def point_task(args) -> dict:
    """One clip x codec x setting (runs in a worker, with one thread): the measured point, cached in
    ``cache_dir`` (shared by every worker) under a key of everything that makes it."""
    from ..executor import one_thread

    clip_path, frames, codec_name, setting, reference, detector_spec, cache_dir = args
    key = cache_key(clip_path, frames, codec_name, setting, reference)
    cpath = Path(cache_dir) / f"{key}.json"
    if cpath.exists():
        return json.loads(cpath.read_text())
    with one_thread():
        point = _measure_point(clip_path, frames, codec_name, setting, reference, detector_spec, cache_dir)
    tmp = cpath.with_name(f".{cpath.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(point))
    os.replace(tmp, cpath)
    return point


def _measure_point(clip_path, frames, codec_name, setting, reference, detector_spec, cache_dir) -> dict:
    clip = load_clip(clip_path, frames)
    cls = CODECS[codec_name]
    codec = cls(detector=detector_spec)
    enc = codec.run(clip, setting)
    det, ref_dets = None, None
    if reference:
        from ..detection.registry import load_detector

        det = load_detector(reference)
        ref_dets = _reference_dets(clip, det, cache_dir, reference, frames)
    return {"clip": clip.name, "codec": codec_name, "setting": setting, "bytes": enc.bytes,
            **measure(clip, enc, ref_dets, det)}


def _reference_dets(clip: Clip, det, cache_dir: str, reference: str, frames: int | None) -> list:
    from ..detection.base import Detection

    key = hashlib.sha1(json.dumps([clip.path, frames, reference, "dets-v1"]).encode()).hexdigest()[:20]
    p = Path(cache_dir) / f"dets-{key}.json"
    if p.exists():
        raw = json.loads(p.read_text())
        return [[Detection(tuple(d[0]), d[1], d[2]) for d in fr] for fr in raw]
    out = [[d for d in det.detect(f) if d.score >= 0.4] for f in clip.frames]
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps([[[list(d.box), d.cls, d.score] for d in fr] for fr in out]))
    os.replace(tmp, p)
    return out


#: The rate at which recall and ROI quality are compared across codecs (kbps).
RECALL_KBPS = 50.0


def at_kbps(points: list[dict], kbps: float) -> dict:
    """Per clip and codec: recall, ROI-PSNR and background PSNR at ``kbps``, interpolated linearly in
    log-rate between the two points around it (None outside a codec's range)."""
    out: dict = {}
    for clip in sorted({p["clip"] for p in points}):
        for codec in sorted({p["codec"] for p in points if p["clip"] == clip}):
            pts = sorted((p for p in points if p["clip"] == clip and p["codec"] == codec), key=lambda p: p["kbps"])
            row = {}
            for metric in ("recall", "roi_psnr", "background_psnr", "psnr_rgb"):
                xs = [(math.log(p["kbps"]), p[metric]) for p in pts if p.get(metric) is not None and p["kbps"] > 0]
                x = math.log(kbps)
                row[metric] = None
                for (x0, y0), (x1, y1) in zip(xs, xs[1:]):
                    if x0 <= x <= x1 and x1 > x0:
                        row[metric] = round(y0 + (y1 - y0) * (x - x0) / (x1 - x0), 4)
                        break
            out.setdefault(clip, {})[codec] = row
    return {"kbps": kbps, "per_clip": out}


def run_bench(videos: list[str], out_dir: str | Path, codecs: list[str] | None = None, frames: int | None = None,
              points: int = 5, jobs: int = 1, reference: str | None = None, detector: str = "auto",
              progress: bool | None = None, executor=None) -> dict:
    """Measures every clip x codec x setting point (each a task on ``executor``; default: local, ``jobs``
    processes) and writes results.json, results.csv, plots and report.md to ``out_dir``.

    A point that fails is left out of the tables and listed under ``failures`` with its error."""
    from ..executor import LocalExecutor, run_tasks
    from .bdrate import bd_table
    from .report import write_report

    out = Path(out_dir)
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    names = codecs or [c for c in CODECS]
    unknown = [c for c in names if c not in CODECS]
    if unknown:
        raise ValueError(f"unknown codec(s) {', '.join(unknown)}; choose from {', '.join(CODECS)}")
    avail = []
    for c in names:
        inst = CODECS[c](detector=detector)
        if inst.available():
            avail.append((c, inst.sweep(points)))
        else:
            log.warning("skipping %s: its encoder is not in this FFmpeg build", c)
    clips = []
    for v in videos:
        c = load_clip(v, frames)
        h, w = c.frames[0].shape[:2]
        clips.append({"name": c.name, "frames": len(c.frames), "fps": float(c.fps), "width": w, "height": h,
                      "path": str(v)})
        del c
    tasks = [(os.path.abspath(v), frames, c, s, reference, detector, str(cache.resolve()))
             for v in videos for c, sw in avail for s in sw]
    sizes = {t[0]: os.path.getsize(t[0]) for t in tasks}
    outcomes = run_tasks(executor or LocalExecutor(jobs), point_task, tasks,
                         names=[f"bench {Path(t[0]).stem} {t[2]} {t[3]}" for t in tasks], desc="bench",
                         progress=progress, sizes=lambda t, p: (sizes[t[0]], p.get("bytes", 0)))
    results = [o.value for o in outcomes if o.ok]
    failures = [{"clip": Path(t[0]).stem, "codec": t[2], "setting": t[3], "error": o.error}
                for t, o in zip(tasks, outcomes) if not o.ok]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bd = bd_table(results, anchor="x265", metric="psnr_rgb", method="pchip")
        bd_jpeg = bd_table(results, anchor="jpeg", metric="psnr_rgb", method="pchip")
        bd_akima = bd_table(results, anchor="x265", metric="psnr_rgb", method="akima")
        bd_ssim = bd_table(results, anchor="x265", metric="ms_ssim", method="pchip")
        bd_roi = bd_table(results, anchor="x265", metric="roi_psnr", method="pchip") if reference else None
        bd_roi_vs_roi = bd_table(results, anchor="x265-roi", metric="roi_psnr", method="pchip") if reference else None
        bd_bg = bd_table(results, anchor="x265", metric="background_psnr", method="pchip") if reference else None
    doc = {"clips": clips, "points": results, "failures": failures, "bd_rate": bd,
           "bd_rate_extra": {"vs_jpeg": bd_jpeg, "akima": bd_akima, "ms_ssim": bd_ssim, "roi_psnr": bd_roi,
                             "roi_psnr_vs_x265_roi": bd_roi_vs_roi, "background_psnr": bd_bg},
           "at_kbps": at_kbps(results, RECALL_KBPS) if reference else None,
           "warnings": sorted({str(w.message) for w in caught}),
           "settings": {"frames": frames, "points": points, "reference": reference, "detector": detector,
                        "version": __version__}}
    if reference and Path(reference).name == Path(detector).name:
        doc["warnings"].append(f"the reference detector is the one that drives selection and quality maps "
                               f"({detector}): recall and ROI-PSNR then favour vidsieve and x265-roi")
    write_json(out / "results.json", doc)
    fields = ["clip", "codec", "setting", "kbps", "bpp", "psnr_rgb", "psnr_y", "ms_ssim", "enc_fps", "dec_fps",
              "kept_fraction", "recall", "precision", "roi_psnr", "background_psnr"]
    with open(out / "results.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        wr.writeheader()
        wr.writerows(results)
    write_report(doc, out)
    return doc
