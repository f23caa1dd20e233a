"""Where the shipped codec loses bits: the encoder's, the quantiser's and the synthesis's share of the gap.

``python -m vidsieve.bench.gap IMAGES... [--model W] [--qualities 1 4 8] [--refine 30] [--ceiling 100]``

For each image (coded whole, padded as the codec pads) and quality it measures:

* **coded**: the product: a real bitstream of the analysis transform's latent
  (every payload byte counted) and the PSNR-RGB of what the decoder returns.
* **refined**: the latent optimised at encode time for the codec's own loss
  (``lambda * 255^2 * MSE + bpp``; rate from the entropy model with uniform
  noise, distortion through rounding with a straight-through gradient), then
  coded for real. The decoder is unchanged, so what this gains is the
  amortisation gap of the analysis transform (Campos et al., "Content Adaptive
  Optimization for Neural Image Compression", CVPRW 2019; Yang et al.,
  "Improving Inference for Neural Image Compression", NeurIPS 2020).
* **unrounded**: the synthesis of the latent left unrounded: the transforms'
  ceiling at that quality, which no bit rate passes.
* **ceiling** (once per image): the latent optimised for MSE alone and left
  unrounded, the best picture the synthesis transform can draw at all; any
  latent scaled by any inverse gain is among its inputs, so it does not depend
  on the quality.

A large refined gain says the encoder is the weak part; an unrounded PSNR
far above the coded one says the rate is; a ceiling near the unrounded PSNR
says the synthesis is, and only training it (or widening it) moves the curve.
"""

from __future__ import annotations


import numpy as np
import torch
from compressai.ops import quantize_ste

from ..codec import DEFAULT_MODEL
from ..codec.pixels import pad, to_tensor, to_uint8
from ..codec.payload import pack
from ..codec.models import check_quality
from ..codec.zoo import load_weights
from ..errors import InputError
from ..metrics import psnr, psnr_from_mse
from .bdrate import bd_rate
from .heldout import load_images, load_model
from . import tool
from .jsonfile import write_json
from ..codec.models import quality_lambda
from ..training.rd import rd_objective

DEFAULT_QUALITIES = (1.0, 4.0, 8.0)
#: The quality whose latent starts the search for the synthesis's ceiling (any would do).
QUALITY_CEILING = 8.0


class Gap:
    """The shipped codec's parts, once for coding (exact, fast) and once for gradients."""

    def __init__(self, state: dict):
        self.grad = load_model(state).requires_grad_(False)
        self.code = load_model(state).for_inference()

    def coded(self, img: np.ndarray, quality: float, y: torch.Tensor | None = None) -> dict:
        """Real bitstream of ``y`` (the analysis transform's latent unless given): bpp and PSNR-RGB."""
        h, w = img.shape[:2]
        if y is None:
            y = self.analysis(img, quality)
        strings, zhw, y_hat = self.code.code_latent(y)
        payload = pack(w, h, quality, zhw, strings)
        rec = to_uint8(self.code.synthesis(y_hat, quality), h, w)
        return {"bpp": 8 * len(payload) / (h * w), "psnr_rgb": psnr(img, rec)}

    def analysis(self, img: np.ndarray, quality: float) -> torch.Tensor:
        """The product's latent of ``img`` at ``quality`` (gained, unrounded)."""
        return self.code.analysis(pad(to_tensor(img)), [quality])

    def unrounded(self, img: np.ndarray, quality: float, y: torch.Tensor | None = None) -> float:
        """PSNR-RGB of the synthesis of ``y`` (the analysis's latent unless given) left unrounded."""
        h, w = img.shape[:2]
        if y is None:
            y = self.analysis(img, quality)
        return psnr(img, to_uint8(self.code.synthesis(y, quality), h, w))

    def _bits(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bits of ``y`` and of its rounded hyper latent as training estimates them, and
        the means the decoder will predict for ``y``."""
        m = self.grad
        eb = m.entropy_bottleneck
        z = m.h_a(y)
        medians = eb._get_medians()
        zc = z.permute(1, 0, 2, 3).reshape(z.shape[1], 1, -1)
        z_hat = quantize_ste(zc - medians) + medians
        z_lik = eb.likelihood_lower_bound(eb._likelihood(z_hat)[0])
        z_hat = z_hat.reshape(z.shape[1], z.shape[0], *z.shape[2:]).permute(1, 0, 2, 3)
        scales, means = m.h_s(z_hat).chunk(2, 1)
        gc = m.gaussian_conditional
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        y_lik = gc.likelihood_lower_bound(gc._likelihood(y_noisy, scales, means))
        return -(torch.log2(y_lik).sum() + torch.log2(z_lik).sum()), means

    def refine(self, img: np.ndarray, quality: float, iters: int, lr: float = 5e-3,
               y: torch.Tensor | None = None) -> torch.Tensor:
        """The latent after ``iters`` Adam steps on the codec's rate-distortion loss,
        starting from ``y`` (the analysis's latent unless given)."""
        h, w = img.shape[:2]
        x = pad(to_tensor(img))
        y = (self.analysis(img, quality) if y is None else y).clone().requires_grad_(True)
        _, inv_gain = self.grad.gains(torch.tensor([float(quality)]))
        lam = quality_lambda(quality)
        opt = torch.optim.Adam([y], lr=lr)
        for i in range(iters):
            bits, means = self._bits(y)
            y_hat = quantize_ste(y - means) + means
            x_hat = self.grad.g_s(y_hat * inv_gain)[..., :h, :w]
            loss = rd_objective((x_hat - x[..., :h, :w]).square().mean(), bits / (h * w), lam)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            opt.param_groups[0]["lr"] = lr * (1 - 0.9 * (i + 1) / iters)
        return y.detach()

    def ceiling(self, img: np.ndarray, iters: int, lr: float = 2e-2) -> float:
        """PSNR-RGB of the best unrounded latent ``iters`` Adam steps on MSE find (best iterate kept)."""
        h, w = img.shape[:2]
        x = pad(to_tensor(img))
        y = self.code.analysis(x, [QUALITY_CEILING]).clone().requires_grad_(True)
        _, inv_gain = self.grad.gains(torch.tensor([QUALITY_CEILING]))
        opt = torch.optim.Adam([y], lr=lr)
        best = -1.0
        for _ in range(iters + 1):
            x_hat = self.grad.g_s(y * inv_gain)[..., :h, :w].clamp(0, 1)
            mse = (x_hat - x[..., :h, :w]).square().mean()
            best = max(best, psnr_from_mse(float(mse.detach()) * 255**2))
            opt.zero_grad(set_to_none=True)
            mse.backward()
            opt.step()
        return best


def measure(state: dict, images: list[np.ndarray], qualities=DEFAULT_QUALITIES, refine_iters: int = 30,
            ceiling_iters: int = 100, progress=None) -> dict:
    """Image-averaged points per quality (coded, refined, unrounded) and the synthesis ceiling."""
    gap = Gap(state)
    per_q = {q: {"coded": [], "refined": [], "unrounded": []} for q in qualities}
    ceilings = []
    for img in images:
        for q in qualities:
            y = gap.analysis(img, q)
            per_q[q]["coded"].append(gap.coded(img, q, y))
            per_q[q]["unrounded"].append(gap.unrounded(img, q, y))
            if refine_iters:
                per_q[q]["refined"].append(gap.coded(img, q, gap.refine(img, q, refine_iters, y=y)))
        if ceiling_iters:
            ceilings.append(gap.ceiling(img, ceiling_iters))
        if progress:
            progress()
    points = []
    for q, r in per_q.items():
        p = {"quality": float(q), "unrounded_psnr_rgb": round(float(np.mean(r["unrounded"])), 4)}
        for kind in ("coded", "refined"):
            if r[kind]:
                p[kind] = {k: round(float(np.mean([v[k] for v in r[kind]])), 5) for k in ("bpp", "psnr_rgb")}
        points.append(p)
    res = {"qualities": points, "refine_iters": refine_iters, "ceiling_iters": ceiling_iters}
    if ceilings:
        res["ceiling_psnr_rgb"] = round(float(np.mean(ceilings)), 4)
    if refine_iters and len(qualities) >= 3:
        res["bd_rate_refined_vs_coded"] = bd_rate([{**p["coded"], "kbps": p["coded"]["bpp"]} for p in points],
                                                  [{**p["refined"], "kbps": p["refined"]["bpp"]} for p in points])
    return res


def main(argv=None) -> int:
    ap = tool.parser("gap", __doc__, threads=0, out=None)
    ap.add_argument("images", nargs="+", help="image files or folders (e.g. ../shared/data/images/kodak)")
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"shipped model name or weights file (default: {DEFAULT_MODEL})")
    ap.add_argument("--qualities", nargs="+", type=float, default=list(DEFAULT_QUALITIES),
                    help="qualities to measure (default: 1 4 8)")
    ap.add_argument("--refine", type=int, default=30, metavar="ITERS",
                    help="encode-time optimisation steps per image and quality; 0 skips (default: 30)")
    ap.add_argument("--ceiling", type=int, default=100, metavar="ITERS",
                    help="steps of the search for the synthesis's ceiling per image; 0 skips (default: 100)")
    return tool.run(ap, _main, argv)


def _main(a) -> None:
    from tqdm import tqdm

    qualities = [check_quality(q) for q in a.qualities]
    if a.refine < 0 or a.ceiling < 0:
        raise InputError("--refine and --ceiling take a number of steps, 0 or more")
    state, sha = load_weights(a.model)
    sha = sha[:12]
    images = load_images(a.images)
    with tqdm(total=len(images), desc="images", unit="img", disable=None) as bar:
        res = measure(state, images, qualities, a.refine, a.ceiling, progress=bar.update)
    res = {"model": a.model, "weights_sha256": sha, "images": a.images, "n_images": len(images), **res}
    for p in res["qualities"]:
        line = f"q{p['quality']:g}: coded {p['coded']['bpp']:.4f} bpp {p['coded']['psnr_rgb']:.2f} dB"
        if "refined" in p:
            line += f" | refined {p['refined']['bpp']:.4f} bpp {p['refined']['psnr_rgb']:.2f} dB"
        print(line + f" | unrounded {p['unrounded_psnr_rgb']:.2f} dB")
    if "ceiling_psnr_rgb" in res:
        print(f"synthesis ceiling: {res['ceiling_psnr_rgb']:.2f} dB")
    if res.get("bd_rate_refined_vs_coded") is not None:
        print(f"BD-rate (PSNR-RGB) of refined vs coded: {res['bd_rate_refined_vs_coded']:+.2f} %")
    if a.out:
        write_json(a.out, res)


if __name__ == "__main__":
    raise SystemExit(main())
