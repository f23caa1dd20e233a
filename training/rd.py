"""Rate-distortion: the objective the codec is trained for, and measuring models and codecs on it.

The objective is ``lambda * 255^2 * MSE + bpp`` with images in [0, 1] and
CompressAI's lambda table (one per quality level, interpolated geometrically for
fractional qualities, as the gains are). A curve is measured two ways: from the
model's likelihoods (what an ideal entropy coder would spend: training checks,
weight comparisons) or from real bitstreams (what a user's file holds).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..codec.models import likelihood_bits
from ..metrics import mse as mse_of, psnr_from_mse


def rd_objective(mse, bpp, lam):
    """``lambda * 255^2 * MSE + bpp`` (MSE of images in [0, 1]); floats or tensors alike."""
    return lam * 255**2 * mse + bpp


def rd_loss(out: dict, x: torch.Tensor, lambdas: torch.Tensor, waive: tuple[int, float] | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training loss of a model's output for the batch ``x``: loss, bits per pixel and MSE per item.

    ``waive = (c, w)`` weighs the bits of latent channels ``c`` onwards by ``w``
    in the loss (a widened model's new channels, ``TrainConfig.new_rate_ramp``);
    the bpp returned counts every bit in full."""
    n, _, h, w = x.shape
    bpp = likelihood_bits(out["likelihoods"]) / (h * w)
    rate = bpp
    if waive is not None and waive[1] < 1.0:
        c, weight = waive
        new_bits = likelihood_bits({"y": out["likelihoods"]["y"][:, c:]}) / (h * w)
        rate = bpp - (1.0 - weight) * new_bits
    mse = F.mse_loss(out["x_hat"], x, reduction="none").flatten(1).mean(1)
    loss = rd_objective(mse, rate, lambdas).mean()
    return loss, bpp.detach(), mse.detach()


@torch.no_grad()
def likelihood_point(model, img: np.ndarray, quality: float) -> dict:
    """Likelihood rate (bits per original pixel) and PSNR-RGB of one uint8 image at one quality,
    with ``model`` (a :class:`~vidsieve.codec.models.GainedMeanScaleHyperprior`) in eval mode."""
    h, w = img.shape[:2]
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div(255).to(device)
    ph, pw = -h % 64, -w % 64
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    out = model(x, torch.tensor([float(quality)], device=device))
    bits = likelihood_bits(out["likelihoods"]).item()
    rec = out["x_hat"][0, :, :h, :w].clamp(0, 1).mul(255).round().permute(1, 2, 0).cpu().numpy()
    return {"bpp": bits / (h * w), "psnr_rgb": psnr_from_mse(mse_of(img, rec))}


def likelihood_curve(model, images: list[np.ndarray], qualities) -> list[dict]:
    """Mean likelihood rate and PSNR over ``images`` at each quality (image-averaged, as Kodak results are)."""
    pts = []
    for q in qualities:
        per = [likelihood_point(model, im, q) for im in images]
        pts.append({"quality": float(q), "bpp": float(np.mean([p["bpp"] for p in per])),
                    "psnr_rgb": float(np.mean([p["psnr_rgb"] for p in per]))})
    return pts


def coded_curve(codec, frames: list[np.ndarray], qualities=(1, 2, 3, 4, 5, 6, 7, 8)) -> list[dict]:
    """Real bitstreams of a :class:`~vidsieve.codec.frame_codec.FrameCodec`: bits per pixel over all ``frames``
    (``kbps`` holds the same, for BD-rate tools) and the PSNR of their mean MSE, at each quality."""
    pts = []
    for q in qualities:
        bits = mse = 0.0
        for f in frames:
            e = codec.encode_batch([f], [q])[0]
            bits += len(e.data) * 8
            mse += mse_of(f, e.recon)
        pix = sum(f.shape[0] * f.shape[1] for f in frames)
        pts.append({"quality": q, "kbps": bits / pix, "bpp": bits / pix, "psnr_rgb": psnr_from_mse(mse / len(frames))})
    return pts
