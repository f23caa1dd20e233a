"""The block grid of predicted frames and quality maps: 4 x 4 latent positions (64 x 64 pixels) a block."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: Latent positions per block side: the hyper latent's grid, 64 x 64 pixels.
BLOCK = 4


def block_mask(blocks: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A [1, 1, h, w] latent-resolution mask from a [hb, wb] block map."""
    m = blocks[None, None].to(torch.float32)
    return F.interpolate(m, scale_factor=BLOCK, mode="nearest")[..., : shape[0], : shape[1]] > 0


def tiles(changed: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Rectangles of blocks ``(r0, r1, c0, c1)`` covering every changed block: the bounding boxes of the
    groups of changed blocks that touch (diagonals and one-block gaps included)."""
    import cv2

    grown = cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8))
    n, labels = cv2.connectedComponents(grown, connectivity=8)
    out = []
    for k in range(1, n):
        rows, cols = np.nonzero((labels == k) & changed)
        if rows.size:
            out.append((int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1))
    return out
