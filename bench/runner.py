"""``vidsieve bench``: rate-distortion, speed and detection survival on video clips."""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from .. import __version__
from ..datasets.video import VideoReader
from .codecs import CODECS, VIDEO_DEFAULT, Clip
from ..metrics import luma, masked_sse, ms_ssim_mean, psnr_from_mse
from .detection_eval import CONF, MATCH_CONF, Survival, roi_mask
from ..files import write_json

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
        "coded_fraction": enc.coded_fraction, "selected_fraction": enc.selected_fraction,
        "recall": None, "precision": None, "f1": None, "objects": None, "decoded_objects": None, "roi_psnr": None, "background_psnr": None,
    }
    if ref_dets is not None and detector is not None:
        surv = Survival()
        sse_in = cnt_in = sse_out = cnt_out = 0
        for orig, d, dets in zip(clip.frames, dec, ref_dets):
            surv.add(dets, detector.detect(d))
            m = roi_mask([x for x in dets if x.score >= CONF], (h, w))
            s, c = masked_sse(orig, d, m)
            sse_in, cnt_in = sse_in + s, cnt_in + c
            s, c = masked_sse(orig, d, ~m)
            sse_out, cnt_out = sse_out + s, cnt_out + c
        point.update(recall=surv.recall if surv.reference else None,
                     precision=surv.precision if surv.decoded else None,
                     f1=surv.f1 if surv.reference or surv.decoded else None,
                     objects=surv.reference, decoded_objects=surv.decoded,
                     roi_psnr=psnr_from_mse(sse_in / cnt_in) if cnt_in else None,
                     background_psnr=psnr_from_mse(sse_out / cnt_out) if cnt_out else None)
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in point.items()}


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
    """A digest of the modules that make a vidsieve point (codec, compress road, selection, detection)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for sub in ("codec", "pipeline", "selection", "detection"):
        for f in sorted((root / sub).glob("*.py")):
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _code_version(codec_name: str) -> str:
    v = __version__
    if codec_name.startswith("vidsieve"):
        from ..codec import DEFAULT_MODEL
        from ..codec.zoo import MANIFEST

        # Cached points of our codec are only good for the code and the weights that made them (intra and
        # conditional): an encoder's decisions change without its format or version changing.
        v += ":" + _source_digest()
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
                      _code_version(codec), getattr(CODECS.get(codec), "extra", None), reference, "point-v4"])
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
    write_json(cpath, point, indent=None)
    return point


def _detector_name(spec: str) -> str:
    """The detector ``spec`` resolves to on this machine (``auto`` names what it chose), for the report."""
    from ..detection.registry import load_detector
    from ..errors import ModelError

    try:
        return load_detector(spec).name
    except ModelError as exc:
        return f"{spec} (does not load: {exc})"


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

    key = hashlib.sha1(json.dumps([clip.path, frames, reference, "dets-v2"]).encode()).hexdigest()[:20]
    p = Path(cache_dir) / f"dets-{key}.json"
    if p.exists():
        raw = json.loads(p.read_text())
        return [[Detection(tuple(d[0]), d[1], d[2]) for d in fr] for fr in raw]
    out = [[d for d in det.detect(f) if d.score >= MATCH_CONF] for f in clip.frames]
    write_json(p, [[[list(d.box), d.cls, d.score] for d in fr] for fr in out], indent=None)
    return out


def run_bench(videos: list[str], out_dir: str | Path, codecs: list[str] | None = None, frames: int | None = None,
              points: int = 5, jobs: int = 1, reference: str | None = None, detector: str = "auto",
              progress: bool | None = None, executor=None) -> dict:
    """Measures every clip x codec x setting point (each a task on ``executor``; default: local, ``jobs``
    processes) and writes results.json, results.csv, plots and report.md to ``out_dir``.

    A point that fails is left out of the tables and listed under ``failures`` with its error."""
    from ..executor import LocalExecutor, run_tasks
    from ..metrics.curves import RECALL_KBPS, at_kbps, bd_table
    from .report import write_report

    out = Path(out_dir)
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    names = codecs or VIDEO_DEFAULT
    unknown = [c for c in names if c not in CODECS]
    if unknown:
        raise ValueError(f"unknown codec(s) {', '.join(unknown)}; choose from {', '.join(CODECS)}")
    avail = []
    for c in names:
        inst = CODECS[c](detector=detector)
        if inst.available():
            avail.append((c, inst.sweep(points)))
        else:
            log.warning("skipping %s: not available here (an encoder missing from this FFmpeg build, or "
                        "weights not downloaded)", c)
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
    curves = [p for p in results if CODECS[p["codec"]].curve]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bd = bd_table(curves, anchor="x265", metric="psnr_rgb", method="pchip")
        bd_jpeg = bd_table(curves, anchor="jpeg", metric="psnr_rgb", method="pchip")
        bd_akima = bd_table(curves, anchor="x265", metric="psnr_rgb", method="akima")
        bd_ssim = bd_table(curves, anchor="x265", metric="ms_ssim", method="pchip")
        bd_roi = bd_table(curves, anchor="x265", metric="roi_psnr", method="pchip") if reference else None
        bd_roi_vs_roi = bd_table(curves, anchor="x265-roi", metric="roi_psnr", method="pchip") if reference else None
        bd_bg = bd_table(curves, anchor="x265", metric="background_psnr", method="pchip") if reference else None
    doc = {"clips": clips, "points": results, "failures": failures, "bd_rate": bd,
           "bd_rate_extra": {"vs_jpeg": bd_jpeg, "akima": bd_akima, "ms_ssim": bd_ssim, "roi_psnr": bd_roi,
                             "roi_psnr_vs_x265_roi": bd_roi_vs_roi, "background_psnr": bd_bg},
           "at_kbps": at_kbps(curves, RECALL_KBPS) if reference else None,
           "warnings": sorted({str(w.message) for w in caught}),
           "settings": {"frames": frames, "points": points, "reference": reference, "detector": detector,
                        "detector_name": _detector_name(detector), "version": __version__}}
    if reference and Path(reference).name == Path(detector).name:
        doc["warnings"].append(f"the reference detector is the one that drives selection and quality maps "
                               f"({detector}): recall and ROI-PSNR then favour vidsieve and x265-roi")
    write_json(out / "results.json", doc)
    fields = ["clip", "codec", "setting", "kbps", "bpp", "psnr_rgb", "psnr_y", "ms_ssim", "enc_fps", "dec_fps",
              "coded_fraction", "selected_fraction", "recall", "precision", "f1", "objects", "decoded_objects", "roi_psnr", "background_psnr"]
    with open(out / "results.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        wr.writeheader()
        wr.writerows(results)
    write_report(doc, out)
    return doc
