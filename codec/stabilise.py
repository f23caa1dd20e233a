"""Camera shake: a frame coded aligned with what its references hold, and shown where the camera looked.

A fixed camera that shakes in the wind or is bumped moves the whole picture by a
few pixels. Its latent is then another latent: the analysis is not
shift-equivariant below its 16-pixel stride, so neither copying nor moving the
references' latents predicts it (docs/RESULTS.md), and every block is coded for
as long as the shake lasts. Here the encoder instead finds the frame's shift
against the last frame it coded (phase correlation: Kuglin and Hines, 1975),
moves the frame back by it before the analysis, so that its blocks match the
references again (the strip it uncovers taken from the previous decoded picture),
and sends the shift (payload version 8, :func:`~.latent_codecs.picture_shift`).
The decoder shows the picture it decodes moved by the shift. The references
never move, so nothing a decoder reads depends on float arithmetic; what is
lost is the strip along the edge the camera turned towards (shown as the nearest
decoded edge) while the shift lasts; a camera that was bumped and stays moved is
coded aligned with its old view for :data:`REANCHOR_S`, then in its new one.
"""

from __future__ import annotations

import numpy as np

#: Frames whose luma differs from the last coded frame's by less than this (mean absolute, 8-bit levels,
#: at a quarter of the size) are not searched for a shift, unless the frame before was shifted.
SEARCH_LEVELS = 1.0
#: Seconds the same shift may last before the encoder stops aligning frames with the old view (a camera
#: that was bumped and stays): the next frame is coded as it is, against references of the old view (one
#: frame that costs more), and the frames after it copy the new view, strip included.
REANCHOR_S = 1.0
#: The largest shift looked for, in pixels per axis: a camera's shake or bump; more is something large moving
#: (and a shift taken wrongly costs a strip that wide along the edge).
SEARCH_PIXELS = 8
#: The frame is cut into GRID x GRID parts; of those with texture (a difference above CELL_LEVELS, shifted
#: or not), at least AGREE_SHARE, and at least two, must fit the shift (its difference
#: there at most TAKE_SHARE times the unshifted one): a large object that moved fits only its own parts.
GRID, AGREE_SHARE, CELL_LEVELS = 4, 0.6, 1.0
#: A shift is taken when it leaves at most this share of the unshifted frame's difference (mean absolute,
#: away from the strip it uncovers): a scene that changed, not moved, keeps its own coding.
TAKE_SHARE = 0.8


def shown(rgb: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """The picture ``rgb`` (H, W, 3) moved by ``shift`` (dy, dx pixels): position ``(r, c)`` shows
    ``rgb[r - dy, c - dx]``, the nearest edge where that is outside."""
    dy, dx = (int(v) for v in shift)
    if dy == dx == 0:
        return rgb
    h, w = rgb.shape[:2]
    ay, ax = abs(dy), abs(dx)
    padded = np.pad(rgb, ((ay, ay), (ax, ax), (0, 0)), mode="edge")
    return np.ascontiguousarray(padded[ay - dy : ay - dy + h, ax - dx : ax - dx + w])


def aligned(rgb: np.ndarray, shift: tuple[int, int], previous: np.ndarray) -> np.ndarray:
    """The frame ``rgb`` moved back by ``shift`` (position ``(r, c)`` holds ``rgb[r + dy, c + dx]``), the
    strip it leaves uncovered taken from ``previous`` (the picture the references hold there), so that
    its blocks match the references wherever the scene did not change."""
    dy, dx = (int(v) for v in shift)
    out = shown(rgb, (-dy, -dx)).copy()
    h, w = rgb.shape[:2]
    prev = previous[:h, :w]
    if dy > 0:
        out[h - dy :] = prev[h - dy :]
    elif dy < 0:
        out[:-dy] = prev[:-dy]
    if dx > 0:
        out[:, w - dx :] = prev[:, w - dx :]
    elif dx < 0:
        out[:, :-dx] = prev[:, :-dx]
    return out


def find_shift(luma: np.ndarray, previous: np.ndarray, searching: bool = False) -> tuple[int, int]:
    """The whole-pixel shift (dy, dx) of a frame against the last one coded (both as luma, float32, of
    the same size; the last one as it was coded, aligned): ``luma[r, c] ~ previous[r - dy, c - dx]``;
    (0, 0) when the frame did not move as a whole. ``searching``: the frame before was shifted (look even
    where little changed, so that a camera that came back is seen to)."""
    import cv2

    h, w = luma.shape
    if min(h, w) < 64 or previous.shape != luma.shape:
        return 0, 0
    if not searching:
        small = (max(1, w // 4), max(1, h // 4))
        quick = np.abs(cv2.resize(luma, small, interpolation=cv2.INTER_AREA)
                       - cv2.resize(previous, small, interpolation=cv2.INTER_AREA)).mean()
        if quick < SEARCH_LEVELS:
            return 0, 0
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    (sx, sy), _ = cv2.phaseCorrelate(previous.copy(), luma.copy(), window)  # it windows its inputs in place
    dy, dx = int(round(sy)), int(round(sx))
    if max(abs(dy), abs(dx)) > SEARCH_PIXELS or dy == dx == 0:
        return 0, 0
    # Phase correlation can be a pixel off where something moves in front of the scene: the whole-pixel
    # shifts around its answer are tried, and the one that leaves the least difference kept.
    m = max(abs(dy), abs(dx)) + 1
    inner = previous[m : h - m, m : w - m]

    def diff(a: int, b: int) -> np.ndarray:  # |luma[r, c] - previous[r - a, c - b]|, away from the strip
        return np.abs(luma[m + a : h - m + a, m + b : w - m + b] - inner)

    best = min(((dy + a, dx + b) for a in (-1, 0, 1) for b in (-1, 0, 1)), key=lambda v: float(diff(*v).mean()))
    if best == (0, 0):
        return 0, 0
    moved, still = diff(*best), diff(0, 0)
    if float(moved.mean()) > TAKE_SHARE * float(still.mean()):
        return 0, 0
    # The whole picture moved, not a large object in it: the shift must fit nearly every textured part.
    a, b = _cell_means(moved), _cell_means(still)
    textured = np.maximum(a, b) > CELL_LEVELS
    fits = textured & (a <= TAKE_SHARE * b)
    return best if fits.sum() >= max(AGREE_SHARE * textured.sum(), 2) else (0, 0)


def _cell_means(x: np.ndarray) -> np.ndarray:
    h, w = x.shape
    return np.array([[x[i * h // GRID : (i + 1) * h // GRID, j * w // GRID : (j + 1) * w // GRID].mean()
                      for j in range(GRID)] for i in range(GRID)])
