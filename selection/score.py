"""The change score: how much a frame differs from the last kept frame, in ways that matter.

Pure functions of (detections, downscaled luma), so they are easy to test and
to tune; docs/SELECTION.md explains each term and its default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..detection.base import Detection, iou_matrix


@dataclass
class ScoreConfig:
    match_iou: float = 0.3  # same object in both frames if the class agrees and IoU >= this
    fragment: float = 0.6  # an unmatched box this much inside another frame's box is not new
    appear_conf: float = 0.4  # an unmatched object counts only when at least this confident
    move_frac: float = 0.2  # centre shift / box size (per axis) or log size change worth a full point
    pix_in_scale: float = 24.0  # mean |luma change| inside boxes (8-bit levels) worth a full point
    pix_out_level: float = 12.0  # a pixel outside boxes counts as changed above this |luma change|
    pix_out_frac: float = 0.03  # fraction of changed pixels outside boxes worth a full point
    scene_cut_corr: float = 0.5  # luma correlation below this is a new scene
    luma_width: int = 96


@dataclass
class ChangeScore:
    total: float = 0.0
    appeared: int = 0
    left: int = 0
    moved: float = 0.0
    pix_in: float = 0.0
    pix_out: float = 0.0
    scene_cut: bool = False


def small_luma(rgb: np.ndarray, width: int = 96) -> np.ndarray:
    """Luma downscaled to ``width`` columns by area averaging: sensor noise averages away."""
    h, w = rgb.shape[:2]
    s = min(1.0, width / w)
    small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)


def match(now: list[Detection], ref: list[Detection], min_iou: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by IoU within each class."""
    m = iou_matrix([d.box for d in now], [d.box for d in ref])
    if m.size == 0:
        return []
    same = np.array([[a.cls == b.cls for b in ref] for a in now])
    m = np.where(same, m, 0.0)
    pairs = []
    while True:
        i, j = np.unravel_index(np.argmax(m), m.shape)
        if m[i, j] < min_iou:
            return pairs
        pairs.append((int(i), int(j)))
        m[i, :] = 0
        m[:, j] = 0


def box_motion(a: tuple, b: tuple) -> float:
    """Largest of centre shift per axis relative to the box size, and log size change."""
    aw, ah = max(a[2] - a[0], 1.0), max(a[3] - a[1], 1.0)
    bw, bh = max(b[2] - b[0], 1.0), max(b[3] - b[1], 1.0)
    dx = abs((a[0] + a[2]) - (b[0] + b[2])) / 2 / max(aw, bw)
    dy = abs((a[1] + a[3]) - (b[1] + b[3])) / 2 / max(ah, bh)
    # Boxes breathe (limbs, partial occlusion, detector jitter): size counts half as much as position.
    return max(dx, dy, 0.5 * abs(math.log(aw / bw)), 0.5 * abs(math.log(ah / bh)))


def covered(box: tuple, others: list[Detection]) -> float:
    """Largest fraction of ``box`` that one of ``others`` covers."""
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
    best = 0.0
    for o in others:
        ix = max(0.0, min(box[2], o.box[2]) - max(box[0], o.box[0]))
        iy = max(0.0, min(box[3], o.box[3]) - max(box[1], o.box[1]))
        best = max(best, ix * iy / area)
    return best


def _box_mask(dets: list[Detection], shape: tuple[int, int], frame_hw: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    sy, sx = shape[0] / frame_hw[0], shape[1] / frame_hw[1]
    for d in dets:
        x1, y1, x2, y2 = d.box
        mask[max(0, int(y1 * sy)):int(math.ceil(y2 * sy)), max(0, int(x1 * sx)):int(math.ceil(x2 * sx))] = True
    return mask


def change_score(now: list[Detection], ref: list[Detection], luma_now: np.ndarray, luma_ref: np.ndarray,
                 frame_hw: tuple[int, int], cfg: ScoreConfig = ScoreConfig()) -> ChangeScore:
    s = ChangeScore()
    pairs = match(now, ref, cfg.match_iou)
    mi, mj = {i for i, _ in pairs}, {j for _, j in pairs}
    # An unmatched box mostly inside a box of the other frame is a fragment (a split or
    # merged blob, a detector hesitating between one and two boxes), not a new object.
    s.appeared = sum(1 for i, d in enumerate(now)
                     if i not in mi and d.score >= cfg.appear_conf and covered(d.box, ref) < cfg.fragment)
    s.left = sum(1 for j, d in enumerate(ref)
                 if j not in mj and d.score >= cfg.appear_conf and covered(d.box, now) < cfg.fragment)
    s.moved = max((box_motion(now[i].box, ref[j].box) for i, j in pairs), default=0.0)

    # Match brightness and contrast first: a global lighting change is not content.
    a, b = luma_now, luma_ref
    sa, sb = float(a.std()), float(b.std())
    if sa > 1e-3 and sb > 1e-3:
        corr = float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))
        a = (a - a.mean()) * (sb / sa) + b.mean()
    else:
        corr = 1.0 if abs(float(a.mean()) - float(b.mean())) < 8 else 0.0
    diff = np.abs(a - b)
    diff = np.clip(diff - float(np.median(diff)), 0, None)  # what every pixel shares is noise or flicker
    s.scene_cut = corr < cfg.scene_cut_corr
    inside = _box_mask(now + ref, diff.shape, frame_hw)
    s.pix_in = float(diff[inside].mean()) if inside.any() else 0.0
    s.pix_out = float((diff[~inside] > cfg.pix_out_level).mean()) if (~inside).any() else 0.0
    s.total = (s.appeared + s.left + s.moved / cfg.move_frac + s.pix_in / cfg.pix_in_scale
               + s.pix_out / cfg.pix_out_frac)
    return s
