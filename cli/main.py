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

from .. import __version__
from ..codec import DEFAULT_MODEL
from ..errors import UsageError, VidsieveError
from . import extra
from .args import (add_executor_args, add_precision_arg, add_selection_args, executor_from_args, nonnegative,
                   options_from_args, positive)

log = logging.getLogger("vidsieve")


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
                       description="Compress a video file, URL or still image into a .vsv container; or many "
                                   "(files, folders, globs) into one .vsv each with --out-dir.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n"
                              "  vidsieve compress cam.mp4 -o cam.vsv\n"
                              "  vidsieve compress archive/ --out-dir vsv/                  # every video, "
                              "same layout\n"
                              "  vidsieve compress 'day1/*.mp4' --out-dir vsv/ --executor ray --ray-address auto\n"
                              "A batch skips inputs whose complete .vsv is already there, so running it again "
                              "finishes what a crash left.")
    c.add_argument("input", nargs="+", help="video file, URL or image; with --out-dir also folders (their videos, "
                                            "recursively) and globs")
    out = c.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", help="output .vsv path (one input)")
    out.add_argument("--out-dir", help="folder for one .vsv per input, named as the input")
    c.add_argument("--jobs", type=positive(int), default=None,
                   help="with --out-dir and the local executor: inputs coded at once (default: one per core)")
    c.add_argument("--model", default=None, help=f"codec: registry name or weights .pth (default: {DEFAULT_MODEL})")
    c.add_argument("--max-frames", type=positive(int), default=None, help="stop after this many frames")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_selection_args(c)
    add_executor_args(c, "inputs coded")

    d = sub.add_parser("decompress", help="decode a .vsv into a video or a folder of PNGs",
                       description="Decode a .vsv file. Held frames repeat the coded frame before them, so the "
                                   "output has the input's frame count and timestamps.")
    d.add_argument("input", help=".vsv file")
    d.add_argument("-o", "--output", required=True,
                   help="OUT.mp4 / OUT.mkv (x264 CRF 16), OUT.mkv with --lossless (FFV1), or DIR/ for PNGs")
    d.add_argument("--lossless", action="store_true", help="write FFV1 (needs .mkv)")
    d.add_argument("--recover", action="store_true", help="skip damaged records instead of stopping")
    d.add_argument("--model", default=None, help="weights to decode with (default: the one named in the file)")
    add_precision_arg(d)
    d.add_argument("--start", type=nonnegative, default=None, metavar="SECONDS",
                   help="begin this far into the file (decoding starts at the seek point before it)")
    d.add_argument("--duration", type=positive(float), default=None, metavar="SECONDS",
                   help="write only this much video")

    i = sub.add_parser("info", help="show a .vsv file's header, segments, counts, the qualities its frames were coded at and its integrity",
                       description="Show a .vsv file's header, segments, frame counts, sizes, the quality each frame was coded at beside the one asked for, and integrity.")
    i.add_argument("input", help=".vsv file")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.add_argument("--recover", action="store_true", help="read past damaged records")

    extra.add_commands(sub)
    # -q/-v also after the command name (`vidsieve decompress x.vsv -o y.mp4 --quiet`).
    for sp in sub.choices.values():
        g = sp.add_mutually_exclusive_group()
        g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="print errors only")
        g.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="print debug logs and tracebacks")
    return p


def cmd_compress(a) -> int:
    from ..pipeline import compress

    if a.out_dir:
        return compress_many(a)
    if len(a.input) > 1:
        raise UsageError("several inputs need --out-dir (one .vsv each), not -o")
    if a.executor != "local" or a.jobs:
        raise UsageError("--executor and --jobs are for batches (--out-dir)")
    s = compress(a.input[0], a.output, options_from_args(a), progress=None if not a.quiet else False,
                 log_fn=None if a.quiet else lambda m: print(m, file=sys.stderr))
    if a.json:
        print(json.dumps(s.to_json(), indent=2))
    elif not a.quiet:
        print(s.line())
    return 0


def compress_many(a) -> int:
    from ..executor import usable_cores
    from ..pipeline.batch import compress_batch

    say = None if a.quiet else (lambda m: print(m, file=sys.stderr))
    s = compress_batch(a.input, a.out_dir, options_from_args(a), executor_from_args(a, usable_cores()),
                       progress=None if not a.quiet else False, log_fn=say)
    for it in s.items:
        if it.status == "failed":
            print(f"vidsieve: failed: {it.input}: {it.error}", file=sys.stderr)
    if a.json:
        print(json.dumps(s.to_json(), indent=2))
    elif not a.quiet:
        print(s.line())
    return s.exit_code


def cmd_decompress(a) -> int:
    from ..pipeline import decompress

    s = decompress(a.input, a.output, lossless=a.lossless, recover=a.recover, model=a.model, precision=a.precision,
                   progress=None if not a.quiet else False, start_s=a.start, duration_s=a.duration)
    if not a.quiet:
        print(s.line())
    return 0


#: Most (kind, asked, coded) quality groups the text of ``info`` lists.
QUALITY_LINES = 8


def _selection_line(sel: dict) -> str:
    name = sel.get("name", "?")
    det = sel.get("detector")
    return name if not det or det == "none" else f"{name}, decisions by the detector {det}"


def format_info(d: dict) -> str:
    h = d["header"]
    fps = h["fps"][0] / h["fps"][1]
    lines = [
        f"file:        {d['file']}",
        f"video:       {h['width']}x{h['height']} @ {fps:.3f} fps, time base {h['time_base'][0]}/{h['time_base'][1]}",
        f"codec:       {h['model']} (weights {h['weights_sha256'][:16]})",
        f"selection:   {_selection_line((h.get('metadata') or {}).get('selector') or {})}",
        f"frames:      {d['frames']} represented: {d['coded']} coded, {d['held']} held"
        + ("" if d.get("selected") is None else f"; {d['selected']} selected"),
        f"duration:    {d['duration_s']:.2f} s",
        f"size:        {d['bytes']} bytes ({d['frame_bytes']} in frames), {d['kbps']:.1f} kbps",
        f"integrity:   {d['integrity']}" + (f" ({d['error']})" if d["error"] else ""),
    ]
    g = d["gop"]
    if d["stream"] == "predictive":
        share = "" if g["skipped_block_share"] is None else \
            f", {100 * g['skipped_block_share']:.1f}% of their blocks copied from a reference"
        lines.append(f"coding:      {g['intra']} intra frames (seek points), {g['predicted']} predicted{share}; "
                     f"longest group {g['longest']} frames")
        if g.get("conditional"):
            lines.append(f"             predicted under the conditional model {g['conditional']}")
        if g.get("mapped"):
            lines.append(f"             {g['mapped']} frames with a quality map (more quality where the objects are)")
        if g.get("shifted"):
            lines.append(f"             {g['shifted']} frames shown shifted (the camera shook or was bumped)")
    else:
        lines.append("coding:      every frame alone")
    cw, ch = d["coded_size"]
    if (cw, ch) != (h["width"], h["height"]):
        lines.append(f"             coded at {cw}x{ch}, shown at {h['width']}x{h['height']} (scaled back up)")
    groups = d.get("qualities") or []
    for i, q in enumerate(groups[:QUALITY_LINES]):
        coded = "?" if q["coded"] is None else f"{q['coded']:.2f}"
        lines.append(f"{'qualities:' if i == 0 else '':13s}{q['frames']} {q['frame']} at {coded} (asked {q['asked']:.2f})")
    if len(groups) > QUALITY_LINES:
        lines.append(f"             ... {len(groups) - QUALITY_LINES} more (every frame's: --json, coded_frames)")
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
        lines.append("  #    start_s    end_s  quality  active  selected/frames  classes")
        for s in d["segments"]:
            cls = ", ".join(f"{k}x{v}" for k, v in s.get("classes", {}).items()) or "-"
            lines.append(f"  {s['index']:<4d} {s['start_s'] or 0:8.2f} {s['end_s'] or 0:8.2f}  {s['quality']:7.2f}  "
                         f"{'yes' if s['active'] else 'no':6s}  {s.get('selected', 0):8d}/{s['frames']:<6d}  {cls}")
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
