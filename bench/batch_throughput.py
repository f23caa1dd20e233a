"""Throughput of ``vidsieve compress --out-dir`` on the local executor and on Ray, by number of workers.

Cuts ``--pieces`` clips of ``--frames`` frames each from the given video (lossless FFV1, so
every piece is real footage and costs the same to read), then compresses the batch with each
executor and worker count in turn, into fresh folders: local processes (1..``--workers``) and
a Ray instance started for the run with as many CPUs. Reports wall time, frames a second and
the time Ray adds (its start-up, and per task against local at the same worker count), and
checks that the files Ray writes are byte for byte the local ones.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from . import tool
from .jsonfile import write_json
from .speed import cpu_name


def cut_pieces(video: str, out: Path, pieces: int, frames: int) -> list[Path]:
    """``pieces`` consecutive stretches of ``frames`` frames of ``video``, each its own FFV1 file."""
    import av

    from ..datasets.video import VideoReader

    paths, writer, st, n = [], None, None, 0
    with VideoReader(video) as r:
        for f in r:
            if writer is None:
                if len(paths) == pieces:
                    break
                paths.append(out / f"piece{len(paths):02d}.mkv")
                writer = av.open(str(paths[-1]), "w")
                st = writer.add_stream("ffv1", rate=Fraction(r.fps).limit_denominator(1001))
                st.height, st.width = f.rgb.shape[:2]
                st.pix_fmt = "bgr0"
            for p in st.encode(av.VideoFrame.from_ndarray(f.rgb, format="rgb24")):
                writer.mux(p)
            n += 1
            if n % frames == 0:
                for p in st.encode(None):
                    writer.mux(p)
                writer.close()
                writer = None
    if writer is not None or len(paths) < pieces:
        raise ValueError(f"{video} has fewer than {pieces * frames} frames")
    return paths


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.vsv")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def one_run(inputs: list[Path], out: Path, executor: str, workers: int) -> dict:
    from ..executor import make_executor
    from ..pipeline import CompressOptions
    from ..pipeline.batch import compress_batch

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    ex = make_executor(executor, jobs=workers, ray_cpus=workers)
    s = compress_batch([str(p) for p in inputs], out, CompressOptions(detector="motion"), ex, progress=False)
    wall = time.perf_counter() - t0
    if s.exit_code:
        raise RuntimeError(f"batch failed: {s.to_json()}")
    frames = sum(it.frames for it in s.items)
    task_s = sum(it.seconds for it in s.items)
    return {"executor": executor, "workers": workers, "wall_s": round(wall, 2), "frames": frames,
            "fps": round(frames / wall, 2), "task_seconds": round(task_s, 2),
            "bytes_out": sum(it.bytes_out for it in s.items), "sha256": digest(out)}


def main(argv=None) -> int:
    ap = tool.parser("batch_throughput", __doc__, out="bench/results/batch_throughput.json")
    ap.add_argument("video", help="footage to cut the pieces from")
    ap.add_argument("--pieces", type=int, default=8)
    ap.add_argument("--frames", type=int, default=50, help="frames per piece")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    return tool.run(ap, _main, argv)


def _ray_start_s() -> float:
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.get(ray.remote(lambda: 0).remote())
    up = time.perf_counter() - t0
    ray.shutdown()
    return round(up, 2)


def _main(a) -> None:
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1764547200")  # same bytes from every run, to compare them
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "in").mkdir()
        inputs = cut_pieces(a.video, d / "in", a.pieces, a.frames)
        res = {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "video": Path(a.video).name,
               "pieces": a.pieces, "frames_per_piece": a.frames, "ray_start_s": _ray_start_s(), "runs": []}
        for workers in range(1, a.workers + 1):
            for executor in ("local", "ray"):
                r = one_run(inputs, d / f"{executor}{workers}", executor, workers)
                res["runs"].append(r)
                print({k: v for k, v in r.items() if k != "sha256"}, flush=True)
        res["same_bytes"] = len({r["sha256"] for r in res["runs"]}) == 1
        for w in range(1, a.workers + 1):
            loc, ray = (next(r for r in res["runs"] if r["workers"] == w and r["executor"] == e)
                        for e in ("local", "ray"))
            res[f"ray_overhead_s_{w}_workers"] = round(ray["wall_s"] - loc["wall_s"], 2)
    print({k: v for k, v in res.items() if k != "runs"})
    write_json(a.out, res)


if __name__ == "__main__":
    raise SystemExit(main())
