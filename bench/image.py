"""``vidsieve bench-image``: the frame codec alone on still images (Kodak), next to JPEG, WebP and CompressAI.

Rates come from real bitstreams (bytes written, not likelihood estimates).
CompressAI's published curves (their results JSON format) are drawn beside
ours, so the distance to fully trained models is visible.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np

from ..codec import DEFAULT_MODEL
from ..datasets.images import IMAGE_EXTS, load_rgb
from ..metrics import psnr_from_mse
from ..files import write_json
from .codecs import CODECS, BenchCodec, Vidsieve, ZooCodec
from ..metrics import ms_ssim_mean

log = logging.getLogger(__name__)


def _score(img, nbytes, dec) -> dict:
    h, w = img.shape[:2]
    mse = float(np.mean((img.astype(np.float64) - dec) ** 2))
    return {"bpp": nbytes * 8 / (h * w), "psnr": psnr_from_mse(mse), "ms_ssim": ms_ssim_mean([img], [dec])}


def run_image_bench(folder: str | Path, out_dir: str | Path, model: str = DEFAULT_MODEL,
                    qualities=(1, 2, 3, 4, 5, 6, 7, 8), zoo: bool = True, reference_dir: str | Path | None = None,
                    limit: int | None = None, progress: bool | None = None, precision: str = "float") -> dict:
    from tqdm import tqdm

    from ..metrics.curves import bd_rate

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

    codecs = still_codecs(model, precision, zoo, qualities)
    jobs = [(c, st) for c, settings in codecs for st in settings]
    bar = tqdm(total=len(jobs) * len(images), disable=None if progress is None else not progress, desc="bench-image",
               unit="img")
    for c, setting in jobs:
        per = []
        t_enc = t_dec = 0.0
        for img in images:
            enc = c.code_still(img, setting)
            t_enc, t_dec = t_enc + enc.enc_s, t_dec + enc.dec_s
            per.append(_score(img, enc.bytes, enc.decoded[0]))
            bar.update(1)
        add(c.still_name, setting, per)
        timing.setdefault(c.still_name, []).append({"setting": setting, "enc_s": t_enc / len(images),
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


def still_codecs(model: str, precision: str = "float", zoo: bool = True,
                 qualities=(1, 2, 3, 4, 5, 6, 7, 8)) -> list[tuple[BenchCodec, list[str]]]:
    """The codecs of the table that code still images, each with the settings to sweep: ``model`` at
    ``qualities`` (the frame codec, as ``vidsieve compress IMAGE`` codes a still), JPEG, WebP, and the
    CompressAI zoo models whose weights are on this machine (``zoo``)."""
    out = []
    for name, cls in CODECS.items():
        if not cls.still_settings or (issubclass(cls, ZooCodec) and not zoo):
            continue
        c = cls(model=model, precision=precision) if issubclass(cls, Vidsieve) else cls()
        if not c.available():
            log.info("%s: no cached weights, not measured (its published curve is still drawn)", name)
            continue
        out.append((c, [f"quality={q:g}" for q in qualities] if isinstance(c, Vidsieve) else list(c.still_settings)))
    return out


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
