"""``vidsieve bench-image``: the frame codec alone on still images (Kodak), next to JPEG, WebP and CompressAI.

Rates come from real bitstreams (bytes written, not likelihood estimates).
CompressAI's published curves (their results JSON format) are drawn beside
ours, so the distance to fully trained models is visible.
"""

from __future__ import annotations

import io
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np

from ..codec import DEFAULT_MODEL
from ..datasets.images import IMAGE_EXTS, load_rgb
from ..metrics import psnr_from_mse
from .jsonfile import write_json
from ..metrics import ms_ssim_mean

log = logging.getLogger(__name__)


def _pil_codec(fmt: str, q: int, img: np.ndarray) -> tuple[int, np.ndarray]:
    from PIL import Image

    b = io.BytesIO()
    kw = {"quality": q}
    if fmt == "WEBP":
        kw["method"] = 6
    Image.fromarray(img).save(b, format=fmt, **kw)
    return b.tell(), np.asarray(Image.open(io.BytesIO(b.getvalue())).convert("RGB"))


def _score(img, nbytes, dec) -> dict:
    h, w = img.shape[:2]
    mse = float(np.mean((img.astype(np.float64) - dec) ** 2))
    return {"bpp": nbytes * 8 / (h * w), "psnr": psnr_from_mse(mse), "ms_ssim": ms_ssim_mean([img], [dec])}


def run_image_bench(folder: str | Path, out_dir: str | Path, model: str = DEFAULT_MODEL,
                    qualities=(1, 2, 3, 4, 5, 6, 7, 8), zoo: bool = True, reference_dir: str | Path | None = None,
                    limit: int | None = None, progress: bool | None = None, precision: str = "float") -> dict:
    from tqdm import tqdm

    from ..codec.registry import load_codec
    from ..codec.zoo import ZOO_ARCHS, zoo_available
    from .bdrate import bd_rate

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)[:limit]
    if not files:
        from ..errors import InputError

        raise InputError(f"no images in {folder}")
    images = [load_rgb(p) for p in files]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[dict]] = {}
    timing = {}

    def add(name, setting, per_image):
        curves.setdefault(name, []).append({
            "setting": setting,
            "bpp": float(np.mean([r["bpp"] for r in per_image])),
            "psnr_rgb": float(np.mean([r["psnr"] for r in per_image])),
            "ms_ssim": (float(np.mean([r["ms_ssim"] for r in per_image]))
                        if all(r["ms_ssim"] is not None for r in per_image) else None)})

    codec = load_codec(model, precision=precision)
    jobs = [(model, q) for q in qualities]
    jobs += [("jpeg", q) for q in (10, 20, 30, 45, 60, 75, 85, 92)]
    jobs += [("webp", q) for q in (5, 15, 30, 50, 70, 85, 95)]
    zoo_models = {}
    if zoo:
        for arch in ZOO_ARCHS:
            qs = [q for q in range(1, 9) if zoo_available(arch, q)]
            if qs:
                zoo_models[arch] = load_codec(arch)
                jobs += [(arch, q) for q in qs]
            else:
                log.info("%s: no cached weights, not measured (its published curve is still drawn)", arch)
    bar = tqdm(total=len(jobs) * len(images), disable=None if progress is None else not progress, desc="bench-image", unit="img")
    for name, q in jobs:
        per = []
        t_enc = t_dec = 0.0
        for img in images:
            if name in ("jpeg", "webp"):
                nbytes, dec = _pil_codec(name.upper(), q, img)
            else:
                c = codec if name == model else zoo_models[name]
                t0 = time.perf_counter()
                data = c.encode(img, q)
                t1 = time.perf_counter()
                dec = c.decode(data)
                t_dec += time.perf_counter() - t1
                t_enc += t1 - t0
                nbytes = len(data)
            per.append(_score(img, nbytes, dec))
            bar.update(1)
        add(name, f"{'quality' if name not in ('jpeg', 'webp') else 'q'}={q}", per)
        if t_enc:
            timing.setdefault(name, []).append({"quality": q, "enc_s": t_enc / len(images),
                                                "dec_s": t_dec / len(images)})
    bar.close()
    published = load_reference(reference_dir) if reference_dir else {}
    bd = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        anchor = [{"kbps": p["bpp"], "psnr_rgb": p["psnr_rgb"]} for p in curves["jpeg"]]
        for name, pts in list(curves.items()) + [(f"published:{k}", v) for k, v in published.items()]:
            if name == "jpeg":
                continue
            test = [{"kbps": p["bpp"], "psnr_rgb": p["psnr_rgb"]} for p in pts]
            bd[name] = bd_rate(anchor, test, "psnr_rgb", "pchip")
    doc = {"images": len(images), "folder": str(folder), "curves": curves, "published": published,
           "bd_rate_vs_jpeg_psnr_pchip": bd, "timing": timing,
           "warnings": sorted({str(w.message) for w in caught})}
    write_json(out / "image_results.json", doc)
    _plot(doc, out, model)
    return doc


def load_reference(folder: str | Path) -> dict[str, list[dict]]:
    """CompressAI results files: {"name": ..., "results": {"bpp": [...], "psnr-rgb": [...], ...}}."""
    out = {}
    for p in sorted(Path(folder).glob("*.json")):
        try:
            d = json.loads(p.read_text())
            r = d["results"]
            psnr = r.get("psnr-rgb") or r.get("psnr")
            ms = r.get("ms-ssim-rgb") or r.get("ms-ssim")
            name = d.get("name", p.stem)
            out[name] = [{"bpp": b, "psnr_rgb": s, "ms_ssim": (ms[i] if ms else None)}
                         for i, (b, s) in enumerate(zip(r["bpp"], psnr))]
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            log.warning("skipping reference %s: %s", p.name, exc)
    return out


def _plot(doc: dict, out: Path, model: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, pts in doc["published"].items():
        pts = sorted((p["bpp"], p["psnr_rgb"]) for p in pts if p["bpp"] <= 2.0)
        if pts:
            ax.plot(*zip(*pts), ls="--", lw=1, alpha=0.7, label=f"{name} (published)")
    for name, pts in doc["curves"].items():
        pts = sorted((p["bpp"], p["psnr_rgb"]) for p in pts)
        ax.plot(*zip(*pts), marker="o", lw=2 if name == model else 1.2, label=f"{name} (measured)")
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR-RGB (dB)")
    ax.set_xlim(0, 2.0)
    ax.set_title(f"Kodak-style set ({doc['images']} images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    for ext in ("png", "svg"):
        fig.savefig(out / f"image-rd.{ext}", dpi=110, bbox_inches="tight")
    plt.close(fig)
