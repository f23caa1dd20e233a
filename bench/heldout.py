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

import os
from pathlib import Path

import numpy as np

from ..codec.models import GainedMeanScaleHyperprior, check_quality
from ..codec.zoo import load_state, sha256_file
from ..datasets.images import IMAGE_EXTS, load_rgb
from ..errors import InputError, ModelError
from ..training.rd import likelihood_curve
from .bdrate import bd_rate
from . import tool
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


def compare(anchor, test, images: list[np.ndarray], qualities=DEFAULT_QUALITIES) -> dict:
    """Both curves and the BD-rate (PSNR-RGB, pchip) of ``test`` against ``anchor``, in percent."""
    ca = likelihood_curve(load_model(anchor), images, qualities)
    ct = likelihood_curve(load_model(test), images, qualities)
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
    ap = tool.parser("heldout", __doc__, threads=0, out=None)
    ap.add_argument("anchor", help="weights to compare against (.pth state or training checkpoint)")
    ap.add_argument("test", help="weights under test")
    ap.add_argument("--images", nargs="+", required=True, help="held-out image files or folders")
    ap.add_argument("--qualities", nargs="+", type=float, default=list(DEFAULT_QUALITIES))
    return tool.run(ap, _main, argv)


def _main(a) -> None:
    qualities = [check_quality(q) for q in a.qualities]
    if len(qualities) < 3:
        raise InputError("a BD-rate needs at least three qualities")
    res = compare(a.anchor, a.test, load_images(a.images), qualities)
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


if __name__ == "__main__":
    raise SystemExit(main())
