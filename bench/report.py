"""Plots and a Markdown report from a bench result document."""

from __future__ import annotations

from pathlib import Path

from .detection_eval import CONF, MATCH_CONF, MIN_IOU


def _fmt(v, nd=2):
    return "-" if v is None else f"{v:.{nd}f}"


def plot_curves(points, clips, out: Path, y: str, ylabel: str, stem: str, x: str = "kbps",
                xlabel: str = "kbps", extra=None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for clip in clips:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for codec in sorted({p["codec"] for p in points if p["clip"] == clip}):
            pts = sorted((p[x], p[y]) for p in points if p["clip"] == clip and p["codec"] == codec
                         and p.get(y) is not None)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=codec)
        if extra:
            extra(ax)
        ax.set_xscale("log")  # rates span decades between codecs and settings
        ax.set_xlabel(xlabel + " (log scale)")
        ax.set_ylabel(ylabel)
        ax.set_title(clip)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        for ext in ("png", "svg"):
            name = f"{stem}-{clip}.{ext}"
            fig.savefig(out / name, dpi=110, bbox_inches="tight")
            files.append(name)
        plt.close(fig)
    return files


def bd_summary(mean: dict) -> str:
    """``codec -12.3%, other n/a`` for a table's mean BD-rates (n/a: the curves do not overlap enough)."""
    return ", ".join(f"{k} {'n/a' if v is None else f'{v:+.1f}%'}" for k, v in mean.items())


def write_report(doc: dict, out: Path) -> None:
    points, clips = doc["points"], [c["name"] for c in doc["clips"]]
    plot_curves(points, clips, out, "psnr_rgb", "PSNR-RGB (dB)", "rd-psnr")
    if any(p.get("recall") is not None for p in points):
        plot_curves(points, clips, out, "recall", "detection recall", "recall")
    if any(p.get("roi_psnr") is not None for p in points):
        plot_curves(points, clips, out, "roi_psnr", "ROI-PSNR (dB, inside the reference detector's boxes)", "rd-roi")
    desc = ", ".join("{} ({}x{}, {} frames, {:.2f} fps)".format(c["name"], c["width"], c["height"], c["frames"],
                                                              c["fps"]) for c in doc["clips"])
    lines = ["# vidsieve bench report", "", f"Clips: {desc}.",
             "PSNR is the mean over all input frames after hold-filling held frames. "
             f"Recall/precision/F1: the reference detector's objects (confidence >= {CONF:g}) on the original "
             f"found on the decoded video (IoU >= {MIN_IOU:g}, same class, same frame, confidence >= "
             f"{MATCH_CONF:g}: a hysteresis, so a detector flickering across its threshold is not counted as "
             "loss), and the converse; `objects`: how many objects on the original each recall rests on. "
             "`ffv1-lossless`, the originals coded losslessly, is the sanity row: its survival must read 1. "
             "ROI-PSNR: inside the reference detector's boxes on the original.", ""]
    st = doc.get("settings", {})
    det = st.get("detector_name") or st.get("detector")
    if st.get("reference"):
        lines += [f"Detectors: selection and quality maps (vidsieve, x265-roi's boxes): `{det}`; "
                  f"reference for recall, ROI-PSNR and background PSNR: `{Path(st['reference']).name}`.", ""]
    elif det:
        lines += [f"Detector of selection and quality maps (vidsieve, x265-roi's boxes): `{det}`.", ""]
    bd = doc["bd_rate"]
    if bd is None:
        lines += ["No BD-rate table: x265, the anchor, was not among the codecs measured."]
    elif bd["mean"]:  # empty when the anchor is the only curve measured
        lines += [f"## BD-rate vs {bd['anchor']} ({bd['metric']}, {bd['method']}); negative = fewer bits", "",
                  "| codec | " + " | ".join(bd["per_clip"]) + " | mean |", "|---" * (len(bd["per_clip"]) + 2) + "|"]
        for codec, m in bd["mean"].items():
            row = [_fmt(bd["per_clip"][c].get(codec), 1) for c in bd["per_clip"]]
            lines.append(f"| {codec} | " + " | ".join(row) + f" | {_fmt(m, 1)} |")
    for label, key in (("vs JPEG (psnr_rgb, pchip)", "vs_jpeg"), ("vs x265 (akima cross-check)", "akima"),
                       ("vs x265 (MS-SSIM, pchip)", "ms_ssim"), ("vs x265 (ROI-PSNR, pchip)", "roi_psnr"),
                       ("vs x265-roi (ROI-PSNR, pchip)", "roi_psnr_vs_x265_roi"),
                       ("vs x265 (background PSNR, pchip)", "background_psnr")):
        t = doc.get("bd_rate_extra", {}).get(key)
        if t and t["mean"]:  # None when its anchor was not measured: no line rather than a row of blanks
            lines += ["", f"BD-rate {label}: " + bd_summary(t["mean"])]
    at = doc.get("at_kbps")
    if at:
        lines += ["", f"## At {at['kbps']:g} kbps (interpolated in log-rate; - where a codec does not reach it)", "",
                  "| clip | codec | recall | F1 | ROI-PSNR | background PSNR | PSNR-RGB |", "|---" * 7 + "|"]
        for clip, rows in at["per_clip"].items():
            for codec, r in rows.items():
                lines.append(f"| {clip} | {codec} | {_fmt(r['recall'], 3)} | {_fmt(r.get('f1'), 3)} | "
                             f"{_fmt(r['roi_psnr'])} | "
                             f"{_fmt(r['background_psnr'])} | {_fmt(r['psnr_rgb'])} |")
    for clip in clips:
        lines += ["", f"## {clip}", "", f"![rate-distortion](rd-psnr-{clip}.png)", "",
                  "| codec | setting | kbps | bpp | PSNR-RGB | PSNR-Y | MS-SSIM | ROI-PSNR | bg PSNR | recall | "
                  "precision | F1 | objects | coded | selected | enc fps | dec fps |", "|---" * 17 + "|"]
        for p in sorted((p for p in points if p["clip"] == clip), key=lambda p: (p["codec"], p["kbps"])):
            lines.append(f"| {p['codec']} | {p['setting']} | {_fmt(p['kbps'], 1)} | {_fmt(p['bpp'], 4)} | "
                         f"{_fmt(p['psnr_rgb'])} | {_fmt(p['psnr_y'])} | {_fmt(p['ms_ssim'], 4)} | "
                         f"{_fmt(p.get('roi_psnr'))} | {_fmt(p.get('background_psnr'))} | {_fmt(p.get('recall'), 3)} | "
                         f"{_fmt(p.get('precision'), 3)} | {_fmt(p.get('f1'), 3)} | {p.get('objects') or '-'} | "
                         f"{_fmt(p.get('coded_fraction'), 3)} | {_fmt(p.get('selected_fraction'), 3)} | {_fmt(p['enc_fps'], 1)} | "
                         f"{_fmt(p['dec_fps'], 1)} |")
    if doc.get("failures"):
        lines += ["", "## Failed points (left out of every table above)", ""] + [
            f"- {f['clip']} {f['codec']} {f['setting']}: {f['error']}" for f in doc["failures"]]
    if doc.get("warnings"):
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in doc["warnings"]]
    (out / "report.md").write_text("\n".join(lines) + "\n")
