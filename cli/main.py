"""``vidsieve`` command line: parses arguments and calls the Python API.

Exit codes: 0 success, 1 unexpected failure, 2 bad input or usage, 3 output
cannot be written, 4 model or weights unavailable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from typing import TYPE_CHECKING

from .. import __version__
from ..codec import DEFAULT_MODEL
from ..errors import VidsieveError

if TYPE_CHECKING:  # the pipeline pulls in numpy and PyAV; --help should not wait for them
    from ..pipeline import CompressOptions

log = logging.getLogger("vidsieve")


def _quality(s: str) -> float:
    try:
        q = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not 1.0 <= q <= 8.0:
        raise argparse.ArgumentTypeError("quality runs from 1 (smallest) to 8 (best)")
    return q


def _positive(kind):
    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return v
    return parse


def _duration(s: str) -> float:
    """Seconds from '90', '90s', '15m', '2h'."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if s and s[-1].lower() in units:
            return float(s[:-1]) * units[s[-1].lower()]
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {s!r} (e.g. 90, 15m, 2h)") from None


def _size(s: str) -> int:
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
    g.add_argument("--quality", type=_quality, default=None,
                   help="fixed quality 1 (smallest) .. 8 (best), fractions allowed; "
                        "with detection it is the quality of active segments")
    g.add_argument("--detector", default="auto",
                   help="auto | motion | yolo11n.pt | path to .pt/.onnx (ultralytics or YOLOX layout) "
                        "(default: auto = ultralytics yolo11n.pt when available, else motion)")
    g.add_argument("--detector-format", choices=["ultralytics", "yolox", "motion"], default=None,
                   help="override the backend guessed from --detector")
    g.add_argument("--detect-size", type=_positive(int), default=None,
                   help="detector input size in pixels (default: 320 for ultralytics/motion, 416 for YOLOX)")
    g.add_argument("--detect-every", type=_positive(int), default=1,
                   help="run the detector on every k-th frame only (default: 1)")
    g.add_argument("--classes", default=None,
                   help="comma-separated classes of interest (default: person,bicycle,car,motorcycle,bus,truck)")
    g.add_argument("--sensitivity", type=_positive(float), default=None,
                   help="keep-threshold scale: higher keeps more frames (default: 1.0)")
    g.add_argument("--max-gap", type=_positive(float), default=4.0,
                   help="keep a frame at least every this many seconds (default: 4)")
    g.add_argument("--segment-seconds", type=_positive(float), default=None,
                   help="longest segment in seconds (default: 30; for ingest, the length of each file: 60)")
    g.add_argument("--policy", choices=["evidence", "balanced", "archive"], default="balanced",
                   help="quality preset for active and idle segments (default: balanced)")
    g.add_argument("--class-weight", action="append", default=[], metavar="CLASS=W",
                   help="quality bonus for a class, e.g. person=1.0 car=0.5 (repeatable)")
    g.add_argument("--target-kbps", type=_positive(float), default=None,
                   help="choose per-segment qualities so the file lands near this rate")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidsieve",
        description="Detection-driven learned compression for surveillance video: a detector drops "
                    "redundant frames and picks a quality per segment; a learned codec stores the rest.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  vidsieve compress cam.mp4 -o cam.vsv\n"
               "  vidsieve compress cam.mp4 -o cam.vsv --keep-all --quality 6\n"
               "  vidsieve decompress cam.vsv -o cam.mp4\n"
               "  vidsieve info cam.vsv --json\n")
    p.add_argument("--version", action="version", version=f"vidsieve {__version__}")
    v = p.add_mutually_exclusive_group()
    v.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    v.add_argument("-v", "--verbose", action="store_true", help="print debug logs and tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("compress", help="compress a video (file, URL or image) into a .vsv container",
                       description="Compress a video file, URL or still image into a .vsv container.")
    c.add_argument("input", help="video file, URL or image")
    c.add_argument("-o", "--output", required=True, help="output .vsv path")
    c.add_argument("--model", default=None, help=f"codec: registry name or weights .pth (default: {DEFAULT_MODEL})")
    c.add_argument("--max-frames", type=_positive(int), default=None, help="stop after this many frames")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_selection_args(c)

    d = sub.add_parser("decompress", help="decode a .vsv into a video or a folder of PNGs",
                       description="Decode a .vsv file. Skipped frames repeat the last kept frame, so the "
                                   "output has the input's frame count and timestamps.")
    d.add_argument("input", help=".vsv file")
    d.add_argument("-o", "--output", required=True,
                   help="OUT.mp4 / OUT.mkv (x264 CRF 16), OUT.mkv with --lossless (FFV1), or DIR/ for PNGs")
    d.add_argument("--lossless", action="store_true", help="write FFV1 (needs .mkv)")
    d.add_argument("--recover", action="store_true", help="skip damaged records instead of stopping")
    d.add_argument("--model", default=None, help="weights to decode with (default: the one named in the file)")

    i = sub.add_parser("info", help="show a .vsv file's header, segments, counts and integrity",
                       description="Show a .vsv file's header, segments, frame counts, sizes and integrity.")
    i.add_argument("input", help=".vsv file")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.add_argument("--recover", action="store_true", help="read past damaged records")

    from . import extra
    extra.add_commands(sub, add_selection_args, _duration, _size, _positive, _quality)
    # -q/-v also after the command name (`vidsieve decompress x.vsv -o y.mp4 --quiet`).
    for sp in sub.choices.values():
        g = sp.add_mutually_exclusive_group()
        g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="print errors only")
        g.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="print debug logs and tracebacks")
    return p


def options_from_args(a) -> CompressOptions:
    from ..pipeline import CompressOptions

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
        detector=a.detector, detector_format=a.detector_format, detect_size=a.detect_size,
        detect_every=a.detect_every,
        classes=tuple(c.strip() for c in a.classes.split(",") if c.strip()) if a.classes else None,
        sensitivity=a.sensitivity, max_gap=a.max_gap, segment_seconds=a.segment_seconds or 30.0,
        policy=a.policy,
        class_weights=weights or None, target_kbps=a.target_kbps, max_frames=getattr(a, "max_frames", None))


def cmd_compress(a) -> int:
    from ..pipeline import compress

    s = compress(a.input, a.output, options_from_args(a), progress=None if not a.quiet else False,
                 log_fn=None if a.quiet else lambda m: print(m, file=sys.stderr))
    if a.json:
        print(json.dumps(s.to_json(), indent=2))
    elif not a.quiet:
        print(s.line())
    return 0


def cmd_decompress(a) -> int:
    from ..pipeline import decompress

    s = decompress(a.input, a.output, lossless=a.lossless, recover=a.recover, model=a.model,
                   progress=None if not a.quiet else False)
    if not a.quiet:
        print(s.line())
    return 0


def format_info(d: dict) -> str:
    h = d["header"]
    fps = h["fps"][0] / h["fps"][1]
    lines = [
        f"file:        {d['file']}",
        f"video:       {h['width']}x{h['height']} @ {fps:.3f} fps, time base {h['time_base'][0]}/{h['time_base'][1]}",
        f"codec:       {h['model']} (weights {h['weights_sha256'][:16]})",
        f"frames:      {d['frames']} represented, {d['kept']} kept, {d['dropped']} dropped",
        f"duration:    {d['duration_s']:.2f} s",
        f"size:        {d['bytes']} bytes ({d['frame_bytes']} in frames), {d['kbps']:.1f} kbps",
        f"integrity:   {d['integrity']}" + (f" ({d['error']})" if d["error"] else ""),
    ]
    if d["truncated_at"] is not None:
        lines.append(f"             cut off at byte {d['truncated_at']}")
    for dmg in d["damaged"]:
        lines.append(f"             damaged record at byte {dmg['offset']}: {dmg['reason']}")
    if d["gaps"]:
        lines.append(f"gaps:        {len(d['gaps'])}")
        for g in d["gaps"]:
            lines.append(f"  {g.get('reason', '')}: pts {g.get('start_pts')} .. {g.get('end_pts')}")
    if d["segments"]:
        lines.append(f"segments:    {len(d['segments'])}")
        lines.append("  #    start_s    end_s  quality  active  kept/frames  classes")
        for s in d["segments"]:
            cls = ", ".join(f"{k}x{v}" for k, v in s.get("classes", {}).items()) or "-"
            lines.append(f"  {s['index']:<4d} {s['start_s'] or 0:8.2f} {s['end_s'] or 0:8.2f}  {s['quality']:7.2f}  "
                         f"{'yes' if s['active'] else 'no':6s}  {s['kept']:5d}/{s['frames']:<5d}  {cls}")
    return "\n".join(lines)


def cmd_info(a) -> int:
    from ..pipeline import info

    d = info(a.input, recover=a.recover)
    if a.json:
        print(json.dumps(d, indent=2))
    else:
        print(format_info(d))
    return 0 if d["integrity"] != "corrupt" else 2


COMMANDS = {"compress": cmd_compress, "decompress": cmd_decompress, "info": cmd_info}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.command:
        parser.print_help()
        return 2
    level = logging.DEBUG if a.verbose else logging.ERROR if a.quiet else logging.INFO
    logging.basicConfig(level=level, format="vidsieve: %(message)s", stream=sys.stderr)
    if not a.verbose:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    from . import extra

    handler = COMMANDS.get(a.command) or extra.COMMANDS[a.command]
    try:
        return handler(a)
    except VidsieveError as exc:
        print(f"vidsieve: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vidsieve: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # never a traceback for users; --verbose shows it
        if a.verbose:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"vidsieve: error: {type(exc).__name__}: {msg} (run with --verbose for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
