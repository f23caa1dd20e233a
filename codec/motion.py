"""Motion in the latent domain: references shifted by whole pixels, exactly.

A predicted frame (payload version 7) may move the previous frame's latent by one
vector per 64-pixel block, and the background latent by one vector for the whole
frame (a camera that shook or was bumped). A vector is in pixels: a sixteenth of a
latent position. A shifted latent is the bilinear mix of the four positions around
the shifted one, with weights in sixteenths, edges replicated.

Exactness: the decoder must build the same reference as the encoder on every
machine, since the conditional model's tables are indexed from it. The reference
is taken onto the 2**-16 grid as integers (:data:`.exact.GRID_BITS`), mixed with
integer weights that sum to 256, and rounded back down onto the grid by an
integer shift: nothing here depends on a math library. A block whose vector is
zero keeps its reference as it is, so a frame without motion leaves what a
version 6 frame leaves.

The vectors' coding is :mod:`.latent_codecs`'; the encoder's choice of them is
:mod:`.predictive_encoder`'s. The warp follows the idea of DCVC (Li et al.,
NeurIPS 2021) of predicting in the feature domain, with whole-pixel vectors
instead of learned offsets so that it can be exact.
"""

from __future__ import annotations

import numpy as np
import torch

from .blocks import BLOCK
from .exact import GRID_BITS

#: Pixels a latent position spans (the analysis transform's stride): a vector's unit is 1/PIXELS of one.
PIXELS = 16
#: The largest component of a vector, in pixels (two latent positions).
MAX_VECTOR = 32


def _on_grid(latent: torch.Tensor) -> torch.Tensor:
    return torch.round(latent.double() * float(1 << GRID_BITS)).to(torch.int64)


def _mix(q: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``q`` (integers on the grid, [1, C, H, W]) at rows ``rows + dy / 16`` and columns ``cols + dx / 16``."""
    H, W = q.shape[-2:]
    iy, fy = dy // PIXELS, dy % PIXELS  # floor division: fy in [0, 16) for negative shifts too
    ix, fx = dx // PIXELS, dx % PIXELS
    r0 = (rows + iy).clamp(0, H - 1)
    r1 = (rows + iy + 1).clamp(0, H - 1)
    c0 = (cols + ix).clamp(0, W - 1)
    c1 = (cols + ix + 1).clamp(0, W - 1)
    top, bottom = q[:, :, r0], q[:, :, r1]
    s = ((PIXELS - fy) * (PIXELS - fx) * top[..., c0] + (PIXELS - fy) * fx * top[..., c1]
         + fy * (PIXELS - fx) * bottom[..., c0] + fy * fx * bottom[..., c1])
    half = PIXELS * PIXELS // 2
    return torch.div(s + half, PIXELS * PIXELS, rounding_mode="floor")


def _off_grid(q: torch.Tensor) -> torch.Tensor:
    return q.double() / float(1 << GRID_BITS)


def shifted(latent: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The whole ``latent`` ([1, C, H, W]) read ``dy``, ``dx`` pixels away (each output position holds
    the input at its own position plus the vector); unchanged for a zero vector."""
    if dy == 0 and dx == 0:
        return latent
    H, W = latent.shape[-2:]
    return _off_grid(_mix(_on_grid(latent), torch.arange(H), torch.arange(W), dy, dx))


def compensated(latent: torch.Tensor, vectors: np.ndarray) -> torch.Tensor:
    """``latent`` with each 64-pixel block read at its own vector (``vectors`` [blocks high, blocks wide,
    2], pixels, (dy, dx)); blocks with a zero vector keep their positions as they are."""
    moving = np.argwhere(np.any(vectors != 0, axis=-1))
    if not len(moving):
        return latent
    q = _on_grid(latent)
    out = latent.clone()
    for r, c in moving:
        dy, dx = int(vectors[r, c, 0]), int(vectors[r, c, 1])
        rows = torch.arange(r * BLOCK, (r + 1) * BLOCK)
        cols = torch.arange(c * BLOCK, (c + 1) * BLOCK)
        out[:, :, r * BLOCK : (r + 1) * BLOCK, c * BLOCK : (c + 1) * BLOCK] = _off_grid(_mix(q, rows, cols, dy, dx))
    return out


def predictor(vectors: np.ndarray, r: int, c: int) -> tuple[int, int]:
    """What block ``(r, c)``'s vector is coded against: the component-wise median of its left, top and
    top-right neighbours' (top-left where there is no top-right; zero outside the frame), as in H.264."""
    gw = vectors.shape[1]

    def at(rr, cc):
        return vectors[rr, cc] if rr >= 0 and 0 <= cc < gw else np.zeros(2, dtype=vectors.dtype)

    left = at(r, c - 1)
    if r == 0:
        return int(left[0]), int(left[1])
    top, right = at(r - 1, c), at(r - 1, c + 1) if c + 1 < gw else at(r - 1, c - 1)
    return tuple(sorted((int(left[k]), int(top[k]), int(right[k])))[1] for k in range(2))
