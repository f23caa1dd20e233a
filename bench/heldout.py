"""Compare two sets of codec weights on held-out images: the check that decides whether a training run is shipped.

``python -m vidsieve.bench.heldout ANCHOR.pth TEST.pth --images DIR [--qualities 1 3 5 8]``

Each image is coded whole (padded to a multiple of 64 by repeating its edge;
rate and PSNR over the original pixels only), with the rate taken from the
model's likelihoods rather than a bitstream: the two agree to within 3 %
(tests/test_heldout.py), the likelihood rate is what training minimises, and
a small change between two runs is not hidden by the coder's byte rounding.
Kodak with real bitstreams (``vidsieve bench-image``) is the number that gets
published; this is the number that says which weights go there, measured on
images neither run was trained on. BD-rate < 0 means TEST needs fewer bits
than ANCHOR for the same PSNR-RGB.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..codec.models import GainedMeanScaleHyperprior, check_quality, likelihood_bits
from ..codec.zoo import load_state, sha256_file
from ..datasets.images import IMAGE_EXTS, load_rgb
from ..errors import InputError, ModelError
from ..pipeline import psnr_from_mse
from .bdrate import bd_rate
from .jsonfile import write_json

DEFAULT_QUALITIES = (1.0, 3.0, 5.0, 8.0)


def load_model(weights: dict | str | os.PathLike) -> GainedMeanScaleHyperprior:
    """A model in eval mode from a state dict, a weights file or a training checkpoint."""
    state = weights if isinstance(weights, dict) else load_state(weights)
    try:
        model = GainedMeanScaleHyperprior.from_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        raise ModelError(f"not vidsieve codec weights ({str(exc).splitlines()[0]})") from None
    return model.eval()


@torch.no_grad()
def likelihood_point(model: GainedMeanScaleHyperprior, img: np.ndarray, quality: float) -> dict:
    """Likelihood rate (bits per original pixel) and PSNR-RGB of one image at one quality."""
    h, w = img.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div(255)
    ph, pw = -h % 64, -w % 64
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    out = model(x, torch.tensor([float(quality)]))
    bits = likelihood_bits(out["likelihoods"]).item()
    rec = out["x_hat"][0, :, :h, :w].clamp(0, 1).mul(255).round().permute(1, 2, 0).numpy()
    mse = float(np.mean((img.astype(np.float64) - rec) ** 2))
    return {"bpp": bits / (h * w), "psnr_rgb": psnr_from_mse(mse)}


def curve(model: GainedMeanScaleHyperprior, images: list[np.ndarray], qualities) -> list[dict]:
    """Mean rate and PSNR over ``images`` at each quality (image-averaged, as Kodak results are)."""
    pts = []
    for q in qualities:
        per = [likelihood_point(model, im, q) for im in images]
        pts.append({"quality": float(q), "bpp": round(float(np.mean([p["bpp"] for p in per])), 5),
                    "psnr_rgb": round(float(np.mean([p["psnr_rgb"] for p in per])), 4)})
    return pts


def compare(anchor, test, images: list[np.ndarray], qualities=DEFAULT_QUALITIES) -> dict:
    """Both curves and the BD-rate (PSNR-RGB, pchip) of ``test`` against ``anchor``, in percent."""
    ca = curve(load_model(anchor), images, qualities)
    ct = curve(load_model(test), images, qualities)
    bd = bd_rate([{**p, "kbps": p["bpp"]} for p in ca], [{**p, "kbps": p["bpp"]} for p in ct])
    return {"anchor": ca, "test": ct, "bd_rate_psnr_rgb": bd}


def load_images(folders: list[str]) -> list[np.ndarray]:
    files = []
    for d in map(Path, folders):
        if d.is_file():
            files.append(d)
        elif d.is_dir():
            files += sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        else:
            raise InputError(f"no such file or folder: {d}")
    if not files:
        raise InputError(f"no images in {', '.join(folders)}")
    images = []
    for p in files:
        try:
            images.append(load_rgb(p))
        except OSError as exc:  # PIL's UnidentifiedImageError included
            raise InputError(f"cannot read {p} as an image ({type(exc).__name__})") from None
    return images


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vidsieve.bench.heldout", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("anchor", help="weights to compare against (.pth state or training checkpoint)")
    ap.add_argument("test", help="weights under test")
    ap.add_argument("--images", nargs="+", required=True, help="held-out image files or folders")
    ap.add_argument("--qualities", nargs="+", type=float, default=list(DEFAULT_QUALITIES))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--out", default=None, help="also write the result here as JSON")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        qualities = [check_quality(q) for q in a.qualities]
        if len(qualities) < 3:
            raise InputError("a BD-rate needs at least three qualities")
        res = compare(a.anchor, a.test, load_images(a.images), qualities)
    except (InputError, ModelError, ValueError) as exc:
        print(f"vidsieve: error: {exc}", file=sys.stderr)
        return 2
    res = {"anchor_weights": {"file": a.anchor, "sha256": sha256_file(a.anchor)[:12]},
           "test_weights": {"file": a.test, "sha256": sha256_file(a.test)[:12]},
           "images": a.images, **res}
    for name in ("anchor", "test"):
        print(f"{name:6s} " + "  ".join(f"q{p['quality']:g} {p['bpp']:.4f} bpp {p['psnr_rgb']:.2f} dB"
                                          for p in res[name]))
    bd = res["bd_rate_psnr_rgb"]
    print("BD-rate (PSNR-RGB) of test vs anchor: " + ("n/a (curves overlap too little)" if bd is None
                                                       else f"{bd:+.2f} %"))
    if a.out:
        write_json(a.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
