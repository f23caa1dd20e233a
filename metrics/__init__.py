"""Picture-quality metrics, the one place every road measures with.

PSNR is for 8-bit data (peak 255); MS-SSIM is Wang, Simoncelli and Bovik,
"Multiscale Structural Similarity for Image Quality Assessment" (2003), through
``pytorch_msssim``. Torch is imported only by the function that needs it.
"""

from __future__ import annotations

import math

import numpy as np

#: BT.601 luma weights, as PSNR-Y is computed in the video coding literature for RGB sources.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for 8-bit data (capped at 100 dB for identical images)."""
    return 100.0 if mse <= 1e-10 else min(100.0, 10 * math.log10(255.0**2 / mse))


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two images (any dtype, compared as float64)."""
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images."""
    return psnr_from_mse(mse(a, b))


def luma(rgb: np.ndarray) -> np.ndarray:
    """Luma (float32) of an RGB image."""
    return rgb.astype(np.float32) @ LUMA_WEIGHTS


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of the luma of two RGB images."""
    return psnr_from_mse(float(np.mean((luma(a) - luma(b)) ** 2)))


def masked_sse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    """Sum of squared errors over the mask's pixels (all channels), and the sample count."""
    if not mask.any():
        return 0.0, 0
    d = a[mask].astype(np.float64) - b[mask].astype(np.float64)
    return float((d * d).sum()), d.size


def ms_ssim_mean(orig: list[np.ndarray], dec: list[np.ndarray], max_frames: int = 24) -> float | None:
    """Mean MS-SSIM over up to ``max_frames`` evenly spaced frames; None for pictures too small for 5 scales."""
    import torch
    from pytorch_msssim import ms_ssim

    h, w = orig[0].shape[:2]
    if min(h, w) < 161:
        return None  # five scales need at least 161 pixels per side
    idx = np.linspace(0, len(orig) - 1, min(max_frames, len(orig))).round().astype(int)
    vals = []
    with torch.inference_mode():
        for i in idx:
            # torch.tensor copies: the frames may be read-only views (decoded buffers)
            a = torch.tensor(orig[i], dtype=torch.float32).permute(2, 0, 1)[None]
            b = torch.tensor(dec[i], dtype=torch.float32).permute(2, 0, 1)[None]
            vals.append(float(ms_ssim(a, b, data_range=255.0)))
    return float(np.mean(vals))
