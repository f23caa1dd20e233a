"""Frames a second of ``vidsieve compress`` and ``decompress`` on whole clips, with this machine's cores.

For each clip: compress its first ``--frames`` frames (default settings: selection and
predicted frames; ``--keep-all`` codes every frame), then decompress the file to FFV1;
report frames a second of each, the file's rate and PSNR, and what the stream coder did.

``--compare-whole`` times each run ``--reps`` times in each of two ways, in turns: predicted
frames' exact entropy parameters in windows around the blocks that use them (the default)
and for the whole frame (:func:`vidsieve.codec.fixed_point.exact_in_blocks`; the streams are
the same), and reports the medians of both side by side.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from ..codec import DEFAULT_MODEL
from . import tool
from .jsonfile import write_json
from .speed import cpu_name


def measure(clip: str, frames: int, keep_all: bool, model: str) -> dict:
    from ..pipeline import CompressOptions, compress, decompress, info

    opts = CompressOptions(keep_all=keep_all, max_frames=frames, detector="motion", model=model)
    with tempfile.TemporaryDirectory() as d:
        vsv = Path(d) / "c.vsv"
        t0 = time.perf_counter()
        s = compress(clip, vsv, opts, progress=False)
        enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        decompress(vsv, Path(d) / "c.mkv", lossless=True, progress=False)
        dec = time.perf_counter() - t0
        i = info(vsv)
    return {"clip": Path(clip).name, "keep_all": keep_all, "frames": s.frames, "kept": s.kept,
            "encode_fps": round(s.frames / enc, 2), "decode_fps": round(s.frames / dec, 2),
            "kbps": round(s.kbps, 2), "psnr_kept": round(s.psnr_kept, 3), "gop": i["gop"]}


def main(argv=None) -> int:
    ap = tool.parser("stream_speed", __doc__, out="bench/results/stream_speed.json")
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="registry name or weights file (default: %(default)s)")
    ap.add_argument("--compare-whole", action="store_true",
                    help="time windows against whole-frame entropy parameters, in turns (see above)")
    ap.add_argument("--reps", type=int, default=2, help="turns of each with --compare-whole (default: 2)")
    return tool.run(ap, _main, argv)


def compare_whole(clip: str, frames: int, keep_all: bool, model: str, reps: int) -> dict:
    """Medians of ``reps`` turns of :func:`measure` with entropy parameters in windows and for whole frames."""
    import statistics

    from ..codec import fixed_point

    share = fixed_point.WINDOWS_MAX_SHARE
    runs: dict[str, list[dict]] = {"windows": [], "whole": []}
    try:
        for _ in range(reps):
            for mode in runs:
                fixed_point.WINDOWS_MAX_SHARE = share if mode == "windows" else -1.0
                runs[mode].append(measure(clip, frames, keep_all, model))
    finally:
        fixed_point.WINDOWS_MAX_SHARE = share
    out = {k: v for k, v in runs["windows"][0].items() if k not in ("encode_fps", "decode_fps")}
    for mode, rs in runs.items():
        for k in ("encode_fps", "decode_fps"):
            out[f"{k}_{mode}"] = round(statistics.median(r[k] for r in rs), 2)
    out["same_rate_and_psnr"] = len({(r["kbps"], r["psnr_kept"]) for rs in runs.values() for r in rs}) == 1
    return out


def _main(a) -> None:
    from ..codec.frame_codec import set_threads

    if a.reps < 1:
        raise ValueError("--reps must be at least 1")
    from ..codec.registry import load_codec

    res = {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "threads": set_threads(),
           "model": a.model, "weights_sha256": load_codec(a.model).weights_sha256[:12],
           "date": time.strftime("%Y-%m-%d"), "runs": []}
    for clip in a.clips:
        for keep_all in (False, True):
            res["runs"].append(compare_whole(clip, a.frames, keep_all, a.model, a.reps) if a.compare_whole
                               else measure(clip, a.frames, keep_all, a.model))
            print(res["runs"][-1], flush=True)
    write_json(a.out, res)


if __name__ == "__main__":
    raise SystemExit(main())
