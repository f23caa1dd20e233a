"""Rate-quality curves: BD-rate (Bjontegaard 2001, VCEG-M33, via the ``bjontegaard`` package) and
values read off a curve at a given rate.

pchip is the primary interpolation (as in recent JVET practice); akima is the
cross-check. Curves that share too little of their quality range give a
warning and no number rather than an extrapolated one.
"""

from __future__ import annotations

import math
import warnings

import numpy as np


def _curve(points, metric):
    pts = sorted((p["kbps"], p[metric]) for p in points if p.get(metric) is not None and p["kbps"] > 0)
    # BD integrals need strictly increasing quality along rate.
    out = []
    for r, d in pts:
        if not out or d > out[-1][1]:
            out.append((r, d))
    return [r for r, _ in out], [d for _, d in out]


def bd_rate(anchor: list[dict], test: list[dict], metric: str = "psnr_rgb", method: str = "pchip",
            min_overlap: float = 0.3, over: tuple[float, float] | None = None) -> float | None:
    """Average rate difference of ``test`` against ``anchor`` at equal quality, in percent.

    ``over`` averages over that quality interval (within both curves) instead of all
    both curves span: two codecs whose curves end at different qualities can be
    compared with an anchor over the same range, which the plain number does not do
    (a curve that reaches higher quality is averaged over where the anchor is strongest)."""
    import bjontegaard as bd

    ra, da = _curve(anchor, metric)
    rt, dt = _curve(test, metric)
    if len(ra) < 3 or len(rt) < 3:
        warnings.warn(f"BD-rate needs 3+ monotone points per curve ({metric})")
        return None
    lo, hi = max(min(da), min(dt)), min(max(da), max(dt))
    span = min(max(da) - min(da), max(dt) - min(dt))
    if hi <= lo or (hi - lo) < min_overlap * span:
        warnings.warn(f"curves overlap too little on {metric} for a BD-rate ({lo:.3f}..{hi:.3f})")
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v, fa, ft = bd.bd_rate(ra, da, rt, dt, method=method, require_matching_points=False, min_overlap=0.0,
                               interpolators=True)
    if over is not None:
        lo, hi = max(lo, over[0]), min(hi, over[1])
        if hi <= lo:
            warnings.warn(f"no overlap of both curves in {over[0]:.3f}..{over[1]:.3f} ({metric})")
            return None
        # The interpolators give log10(rate) as a function of quality.
        mean = (ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
        v = (10.0 ** mean - 1.0) * 100.0
    return None if v is None or not math.isfinite(v) else round(float(v), 3)


def bd_table(points: list[dict], anchor: str = "x265", metric: str = "psnr_rgb",
             method: str = "pchip") -> dict | None:
    """BD-rate of every other codec against ``anchor``, per clip and averaged; None when no clip has the anchor."""
    clips = sorted({p["clip"] for p in points})
    codecs = sorted({p["codec"] for p in points} - {anchor})
    per_clip = {}
    for c in clips:
        a = [p for p in points if p["clip"] == c and p["codec"] == anchor]
        if not a:
            continue
        per_clip[c] = {k: bd_rate(a, [p for p in points if p["clip"] == c and p["codec"] == k], metric, method)
                       for k in codecs}
    if not per_clip:
        return None
    mean = {}
    for k in codecs:
        vals = [per_clip[c][k] for c in per_clip if per_clip[c].get(k) is not None]
        mean[k] = round(float(np.mean(vals)), 3) if vals else None
    return {"anchor": anchor, "metric": metric, "method": method, "per_clip": per_clip, "mean": mean}


#: The rate at which recall and ROI quality are compared across codecs (kbps).
RECALL_KBPS = 50.0


def at_kbps(points: list[dict], kbps: float) -> dict:
    """Per clip and codec: recall, F1, ROI-PSNR and background PSNR at ``kbps``, interpolated linearly in
    log-rate between the two points around it (None outside a codec's range)."""
    out: dict = {}
    for clip in sorted({p["clip"] for p in points}):
        for codec in sorted({p["codec"] for p in points if p["clip"] == clip}):
            pts = sorted((p for p in points if p["clip"] == clip and p["codec"] == codec), key=lambda p: p["kbps"])
            row = {}
            for metric in ("recall", "f1", "roi_psnr", "background_psnr", "psnr_rgb"):
                xs = [(math.log(p["kbps"]), p[metric]) for p in pts if p.get(metric) is not None and p["kbps"] > 0]
                x = math.log(kbps)
                row[metric] = None
                for (x0, y0), (x1, y1) in zip(xs, xs[1:]):
                    if x0 <= x <= x1 and x1 > x0:
                        row[metric] = round(y0 + (y1 - y0) * (x - x0) / (x1 - x0), 4)
                        break
            out.setdefault(clip, {})[codec] = row
    return {"kbps": kbps, "per_clip": out}
