"""Argument types and option groups shared by the ``vidsieve`` subcommands.

Nothing here imports the pipeline at module level, so ``--help`` stays fast."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from ..codec import DEFAULT_INTRA_PERIOD, DEFAULT_LOOKAHEAD, DEFAULT_MODEL, DEFAULT_PRECISION, PRECISIONS, SCALE_MIN
from ..errors import UsageError, VidsieveError

if TYPE_CHECKING:  # the pipeline pulls in numpy and PyAV; --help should not wait for them
    from ..pipeline import CompressOptions


def quality(s: str) -> float:
    try:
        q = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not 1.0 <= q <= 8.0:
        raise argparse.ArgumentTypeError("quality runs from 1 (smallest) to 8 (best)")
    return q


def positive(kind):
    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return v
    return parse


def nonnegative(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError("must be 0 or more")
    return v


def count(s: str) -> int:
    """A whole number, 0 or more."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return v


def duration(s: str) -> float:
    """Seconds from '90', '90s', '15m', '2h', or units together: '2h40m', '1m30s'."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = s.strip().lower()
    try:
        if not text or text[-1] not in units:
            v = float(text)
        else:
            if not re.fullmatch(r"(\d+(\.\d*)?[dhms])+", text):
                raise ValueError
            parts = re.findall(r"(\d+(?:\.\d*)?)([dhms])", text)
            if len({u for _, u in parts}) != len(parts):  # '2h2h': a typo, not four hours
                raise ValueError
            v = sum(float(n) * units[u] for n, u in parts)
        if not v >= 0 or v == float("inf"):
            raise ValueError
        return v
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {s!r} (e.g. 90, 15m, 2h, 2h40m)") from None


def scale(s: str) -> float:
    """A coding scale: a fraction of the source's size, SCALE_MIN to 1."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not SCALE_MIN <= v <= 1:
        raise argparse.ArgumentTypeError(f"{s} is not between {SCALE_MIN:g} and 1")
    return v


def size(s: str) -> int:
    """Bytes from '500M', '20G', '1T', '1048576'."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = s.strip().lower().rstrip("ib").rstrip("b") if s else s
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"not a size: {s!r} (e.g. 500M, 20G)") from None


def add_selection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("frame selection and rate (see docs/SELECTION.md)")
    g.add_argument("--keep-all", action="store_true",
                   help="encode every frame at --quality (no detection); for benchmarks")
    g.add_argument("--quality", type=quality, default=None,
                   help="fixed quality 1 (smallest) .. 8 (best), fractions allowed; every step gives a bigger, "
                        "better file. Where frames are predicted, intra frames they copy from are coded a little "
                        "higher and predicted frames a little lower above 4 (`vidsieve info` shows both); "
                        "with detection it is the quality of active segments")
    g.add_argument("--detector", default="auto",
                   help="auto | vidsieve-student | motion | yolo11n.pt | path to .pt/.onnx (ultralytics or "
                        "YOLOX layout) (default: auto = ultralytics yolo11n.pt when its weights are on this "
                        "machine, else vidsieve-student, the small detector shipped with vidsieve; nothing is "
                        "downloaded unless you name a .pt that is not here)")
    g.add_argument("--detector-format", choices=["ultralytics", "yolox", "yolo-onnx", "student", "motion"],
                   default=None,
                   help="override the backend guessed from --detector")
    g.add_argument("--detect-size", type=positive(int), default=None,
                   help="detector input size in pixels (default: the shipped detector's own, 320 for "
                        "ultralytics/motion, 416 for YOLOX)")
    g.add_argument("--detect-every", type=positive(int), default=1,
                   help="run the detector on every k-th frame only (default: 1)")
    g.add_argument("--classes", default=None,
                   help="comma-separated classes of interest (default: person,bicycle,car,motorcycle,bus,truck)")
    g.add_argument("--sensitivity", type=positive(float), default=None,
                   help="keep-threshold scale: higher keeps more frames (default: 1.0)")
    g.add_argument("--max-gap", type=positive(float), default=4.0,
                   help="keep a frame at least every this many seconds (default: 4)")
    g.add_argument("--segment-seconds", type=positive(float), default=None,
                   help="longest segment in seconds (default: 30; for ingest, the length of each file: 60)")
    g.add_argument("--policy", choices=["evidence", "balanced", "archive"], default="balanced",
                   help="quality preset for active and idle segments (default: balanced)")
    g.add_argument("--class-weight", action="append", default=[], metavar="CLASS=W",
                   help="quality bonus for a class, e.g. person=1.0 car=0.5 (repeatable)")
    g.add_argument("--target-kbps", type=positive(float), default=None,
                   help="choose per-segment qualities so the file lands near this rate")
    g.add_argument("--roi-boost", type=nonnegative, default=None, metavar="STEPS",
                   help="quality steps added where the detector's boxes are, inside each frame (times 1 + the "
                        "class's --class-weight; default: 0, docs/SELECTION.md)")
    g.add_argument("--roi-background", type=float, default=None, metavar="STEPS",
                   help="quality steps (0 or less) for the rest of a frame that has boxes; 0 with --roi-boost 0: "
                        "one quality per frame (default: the policy's: evidence -0.5, balanced -1, archive -1.5)")
    c = p.add_argument_group("coding")
    add_precision_arg(c)
    c.add_argument("--intra-period", type=positive(float), default=DEFAULT_INTRA_PERIOD, metavar="SECONDS",
                   help="a frame coded alone at least this often, the rest predicted from the frames before "
                        f"them: seek points, and where reading resumes after damage (default: {DEFAULT_INTRA_PERIOD:g})")
    c.add_argument("--intra-only", action="store_true",
                   help="code every frame alone (larger files; each frame decodes by itself)")
    c.add_argument("--conditional", default=None, metavar="MODEL",
                   help="the entropy model of predicted frames: a shipped name (vidsieve-inter-ctx codes the "
                        "difference in two checkerboard passes; docs/RESULTS.md) or a .pth from vidsieve train "
                        "--inter (default: the one shipped for --model)")
    c.add_argument("--scale", type=scale, default=1.0, metavar="FRACTION",
                   help="code frames at this fraction of the source's width and height, the decoder scaling "
                        "them back up: the low rates of long archives (0.5 at quality 1: about half the bits "
                        f"of full size; docs/RESULTS.md). {SCALE_MIN:g} to 1 (default: 1)")
    c.add_argument("--lookahead", type=count, default=DEFAULT_LOOKAHEAD, metavar="FRAMES",
                   help="files: hold this many frames back and raise the quality of the blocks they will copy, "
                        "as x264's macroblock-tree does (0: off; not with --target-kbps, whose feedback needs "
                        "each frame's bits at once; live ingest never looks ahead; default: "
                        f"{DEFAULT_LOOKAHEAD})")
    c.add_argument("--no-stabilise", action="store_true",
                   help="code a frame that moved as a whole (a camera that shook or was bumped) as it is; by "
                        "default it is coded aligned with the frames before it and shown moved back, the strip "
                        "along the edge it moved towards repeated from the nearest decoded pixels until the next "
                        "frame coded alone")
    c.add_argument("--hold-dropped", action="store_true",
                   help="frames selection drops repeat the last coded one (by default, where frames are "
                        "predicted, they are coded too: a still frame costs a few dozen bytes)")


def add_precision_arg(p) -> None:
    p.add_argument("--precision", choices=list(PRECISIONS), default=DEFAULT_PRECISION,
                   help="arithmetic of the codec's analysis and synthesis transforms: float, or int8 (ONNX "
                        "Runtime's integer kernels: an encoder about 20%% faster, for about 9%% more bits on "
                        "still images and far more on video; docs/RESULTS.md). A file decodes at either "
                        f"(default: {DEFAULT_PRECISION})")


def add_executor_args(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_argument_group("where the work runs")
    g.add_argument("--executor", choices=["local", "ray"], default="local",
                   help=f"local: {what} in processes on this machine (--jobs of them); ray: one Ray task each, "
                        "on a cluster (--ray-address) or a Ray instance started for this run (default: local)")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --executor ray: 'auto' joins the cluster this machine belongs to, HOST:PORT or "
                        "ray://HOST:PORT a given one (default: start a local instance); inputs and outputs must "
                        "be at the same paths on every node")


def executor_from_args(a, default_jobs: int):
    from ..executor import make_executor

    jobs = a.jobs if getattr(a, "jobs", None) else default_jobs
    return make_executor(a.executor, jobs=jobs, ray_address=a.ray_address)


def options_from_args(a) -> CompressOptions:
    from ..pipeline import CompressOptions

    if a.roi_background is not None and a.roi_background > 0:
        raise UsageError("--roi-background is 0 or less (it lowers the rest of the frame)")
    explicit_roi = bool(a.roi_boost) or bool(a.roi_background)
    if explicit_roi and (a.keep_all or a.intra_only):
        raise UsageError("quality maps need the detector (not --keep-all) and predicted-frame streams "
                         "(not --intra-only)")

    weights = {}
    for item in getattr(a, "class_weight", []) or []:
        if "=" not in item:
            raise VidsieveError(f"--class-weight wants CLASS=WEIGHT, got {item!r}")
        k, v = item.split("=", 1)
        try:
            weights[k.strip()] = float(v)
        except ValueError:
            raise VidsieveError(f"--class-weight {item!r}: weight is not a number") from None
    return CompressOptions(
        quality=a.quality, keep_all=a.keep_all, model=getattr(a, "model", None) or DEFAULT_MODEL,
        precision=a.precision,
        detector=a.detector, detector_format=a.detector_format, detect_size=a.detect_size,
        detect_every=a.detect_every,
        classes=tuple(c.strip() for c in a.classes.split(",") if c.strip()) if a.classes else None,
        sensitivity=a.sensitivity, max_gap=a.max_gap, segment_seconds=a.segment_seconds or 30.0,
        policy=a.policy,
        class_weights=weights or None, target_kbps=a.target_kbps, max_frames=getattr(a, "max_frames", None),
        intra_period=a.intra_period, predict=not a.intra_only, code_dropped=not a.hold_dropped,
        conditional=getattr(a, "conditional", None), stabilise=not getattr(a, "no_stabilise", False),
        roi_boost=a.roi_boost, roi_background=a.roi_background, scale=getattr(a, "scale", 1.0),
        lookahead=getattr(a, "lookahead", DEFAULT_LOOKAHEAD))
