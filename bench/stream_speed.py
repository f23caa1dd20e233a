"""Frames a second of ``vidsieve compress`` and ``decompress`` on whole clips, with this machine's cores.

For each clip: compress its first ``--frames`` frames (default settings: selection and
predicted frames; ``--keep-all`` codes every frame), then decompress the file to FFV1;
report frames a second of each, the file's rate and PSNR, and what the stream coder did.
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
    return tool.run(ap, _main, argv)


def _main(a) -> None:
    from ..codec.frame_codec import set_threads
    from ..codec.registry import load_codec

    res = {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "threads": set_threads(),
           "model": a.model, "weights_sha256": load_codec(a.model).weights_sha256[:12],
           "date": time.strftime("%Y-%m-%d"), "runs": []}
    for clip in a.clips:
        for keep_all in (False, True):
            res["runs"].append(measure(clip, a.frames, keep_all, a.model))
            print(res["runs"][-1], flush=True)
    write_json(a.out, res)


if __name__ == "__main__":
    raise SystemExit(main())
