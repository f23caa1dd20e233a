"""Analysis and synthesis of only what changed: the transforms on tiles around changed blocks.

Both run on the predicted road. :class:`IncrementalAnalysis` is the encoder's: it
keeps the analysis of the last frame and re-runs it only on tiles whose pixels
moved. :class:`Picture` runs on both sides: it keeps the last decoded picture and
re-synthesises only the tiles whose latent changed (both sides do the same, so
the encoder knows the decoder's output to the bit on the same machine). Neither
decides how bits are read: pictures are float work (docs/FORMAT.md).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from .blocks import BLOCK, tiles
from .pixels import pad, to_tensor, to_uint8
from .quality_map import QualityMap


class IncrementalAnalysis:
    """The analysis transform run only where the source picture changed since the last frame analysed.

    Blocks (64 x 64 pixels) whose blurred luma moved by less than ``THRESHOLD`` levels
    everywhere keep their latent from before (sensor noise moves pixels by a few
    levels; an object, far more); the rest are analysed as tiles with a one-block
    margin, the analysis's receptive field (about 30 pixels)."""

    THRESHOLD = 6.0
    MARGIN = 64
    MAX_SHARE = 0.5

    def __init__(self):
        self.g: torch.Tensor | None = None  # g_a of the frame analysed last (before the gains)
        self.luma: np.ndarray | None = None

    @staticmethod
    def shape(rgb: np.ndarray) -> tuple[int, int]:
        return (-(-rgb.shape[0] // 64) * 4, -(-rgb.shape[1] // 64) * 4)

    @staticmethod
    def luma_of(rgb: np.ndarray) -> np.ndarray:
        """The luma (float32, blurred 5 x 5: sensor noise mostly gone) that changes are measured on."""
        import cv2

        return cv2.blur(metrics.luma(rgb), (5, 5))

    def run(self, model, rgb: np.ndarray, whole: bool = False, luma: np.ndarray | None = None) -> torch.Tensor:
        """``g_a`` of ``rgb`` (before the gains): the whole frame, or the last one's with changed tiles redone.
        ``luma``: :meth:`luma_of` ``rgb``, where the caller has it already."""
        luma = self.luma_of(rgb) if luma is None else luma
        changed = None
        if not whole and self.g is not None and self.luma.shape == luma.shape:
            d = np.abs(luma - self.luma)
            hb, wb = self.g.shape[-2] // BLOCK, self.g.shape[-1] // BLOCK
            pad_d = np.zeros((hb * 64, wb * 64), np.float32)
            pad_d[: d.shape[0], : d.shape[1]] = d
            changed = pad_d.reshape(hb, 64, wb, 64).max(axis=(1, 3)) > self.THRESHOLD
        x = pad(to_tensor(rgb))
        if changed is None or changed.mean() > self.MAX_SHARE:
            g = model.analysis_transform(x)
        else:
            g = self.g.clone()
            H, W = g.shape[-2:]
            grown = changed.copy()
            grown[1:] |= changed[:-1]
            grown[:-1] |= changed[1:]
            grown[:, 1:] |= grown[:, :-1].copy()
            grown[:, :-1] |= grown[:, 1:].copy()
            for r0, r1, c0, c1 in tiles(grown):
                # Latent rows r0*4 .. r1*4 need pixels r0*64 - margin .. r1*64 + margin.
                p0, p1 = max(r0 * 64 - self.MARGIN, 0), min(r1 * 64 + self.MARGIN, x.shape[-2])
                q0, q1 = max(c0 * 64 - self.MARGIN, 0), min(c1 * 64 + self.MARGIN, x.shape[-1])
                t = model.analysis_transform(x[..., p0:p1, q0:q1])
                a, b = (r0 * 64 - p0) // 16, (c0 * 64 - q0) // 16
                g[..., r0 * BLOCK : r1 * BLOCK, c0 * BLOCK : c1 * BLOCK] = \
                    t[..., a : a + (r1 - r0) * BLOCK, b : b + (c1 - c0) * BLOCK]
        self.g, self.luma = g, luma
        return g

    def clear(self) -> None:
        self.g = self.luma = None


class Picture:
    """The last decoded picture and the latent it was made from, so that a predicted frame synthesises
    only the tiles whose latent changed and pastes them into it (both sides do the same, so the encoder
    still knows the decoder's output to the bit)."""

    #: Latent positions the synthesis reads around an output pixel (its receptive field's radius is
    #: about 3.75 positions): a tile computed with this margin matches the whole frame's synthesis.
    MARGIN = BLOCK
    #: Above this share of blocks changed, the whole frame is synthesised at once.
    MAX_SHARE = 0.5

    def __init__(self):
        self.y: torch.Tensor | None = None
        self.rgb: np.ndarray | None = None
        self.quality: QualityMap | None = None

    def synthesise(self, model, y_hat: torch.Tensor, qm: QualityMap, h: int, w: int) -> np.ndarray:
        H, W = y_hat.shape[-2:]
        q = qm.base
        inv = None if qm.uniform else qm.gains(model, (H, W))[1]
        changed = None
        if self.y is not None and self.y.shape == y_hat.shape and (
                qm.same(self.quality) or not (qm.uniform and self.quality.uniform)):
            diff = (y_hat != self.y).any(1)[0]
            changed = F.max_pool2d(diff[None, None].float(), BLOCK, ceil_mode=True)[0, 0] > 0
            if not qm.same(self.quality):  # maps: blocks whose quality changed change their pixels too
                grid = changed.shape
                changed |= qm.qualities(grid) != self.quality.qualities(grid)
        if changed is None or changed.float().mean() > self.MAX_SHARE:
            rgb = to_uint8(model.synthesis(y_hat.float(), q, inv), h, w)
        else:
            rgb = self.rgb.copy()
            for r0, r1, c0, c1 in tiles(changed.numpy()):
                # Pixels whose output changed: the changed blocks and one block around them.
                pr0, pr1, pc0, pc1 = max(r0 - 1, 0), min(r1 + 1, changed.shape[0]), max(c0 - 1, 0), \
                    min(c1 + 1, changed.shape[1])
                lr0, lr1 = max(pr0 * BLOCK - self.MARGIN, 0), min(pr1 * BLOCK + self.MARGIN, H)
                lc0, lc1 = max(pc0 * BLOCK - self.MARGIN, 0), min(pc1 * BLOCK + self.MARGIN, W)
                tile = model.synthesis(y_hat[..., lr0:lr1, lc0:lc1].float(), q,
                                       None if inv is None else inv[..., lr0:lr1, lc0:lc1])
                u = 16
                y0, x0 = (pr0 * BLOCK - lr0) * u, (pc0 * BLOCK - lc0) * u
                ph, pw = min(pr1 * BLOCK * u, h) - pr0 * BLOCK * u, min(pc1 * BLOCK * u, w) - pc0 * BLOCK * u
                if ph > 0 and pw > 0:
                    rgb[pr0 * BLOCK * u : pr0 * BLOCK * u + ph, pc0 * BLOCK * u : pc0 * BLOCK * u + pw] = \
                        to_uint8(tile[..., y0 : y0 + ph, x0 : x0 + pw], ph, pw)
        self.y, self.rgb, self.quality = y_hat, rgb, qm
        return rgb

    def clear(self) -> None:
        self.y = self.rgb = self.quality = None
