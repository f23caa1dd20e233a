"""Many inputs, one ``.vsv`` each: ``vidsieve compress DIR_OR_GLOB... --out-dir OUT``.

Each input is one task on an executor (:mod:`vidsieve.executor`: local processes
or Ray). A task writes through the container's temporary name and renames it
when complete, so a killed task leaves nothing that looks finished, and a re-run
skips every input whose complete output exists.
"""

from __future__ import annotations

import glob
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..container import ContainerReader
from ..errors import FormatError, InputError
from .options import CompressOptions
from .paths import check_output_path

#: File name endings taken from a folder given as input (a file named on its own is taken whatever it ends in).
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".ts", ".m2ts", ".mts", ".webm", ".m4v", ".mpg",
                            ".mpeg", ".flv", ".wmv", ".3gp", ".y4m", ".h264", ".264", ".h265", ".265", ".hevc"})


@dataclass
class BatchItem:
    input: str
    output: str
    status: str  # done, skipped (its complete output was there), failed; pending while it runs
    error: str | None = None
    exit_code: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    frames: int = 0
    coded: int = 0
    seconds: float = 0.0


@dataclass
class BatchSummary:
    out_dir: str
    executor: str
    items: list[BatchItem] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for it in self.items if it.status == status)

    @property
    def exit_code(self) -> int:
        """0 when every input has its output; else the failures' exit code (1 when they differ)."""
        codes = {it.exit_code for it in self.items if it.status == "failed"}
        return 0 if not codes else codes.pop() if len(codes) == 1 else 1

    def line(self) -> str:
        b_in = sum(it.bytes_in for it in self.items if it.status == "done")
        b_out = sum(it.bytes_out for it in self.items if it.status == "done")
        return (f"{self.out_dir}: {self.count('done')} compressed, {self.count('skipped')} already there, "
                f"{self.count('failed')} failed | {b_in / 1e6:.1f} MB in, {b_out / 1e6:.1f} MB out | "
                f"{self.seconds:.1f} s on {self.executor}")

    def to_json(self) -> dict:
        return {"out_dir": self.out_dir, "executor": self.executor, "seconds": round(self.seconds, 3),
                "compressed": self.count("done"), "skipped": self.count("skipped"), "failed": self.count("failed"),
                "items": [asdict(it) for it in self.items]}


def _has_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def _folder_videos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                  and not p.name.startswith("."))


def expand_inputs(specs: list[str]) -> list[tuple[str, Path]]:
    """Inputs named by files, folders (their videos, recursively) and globs, each with its output's path
    relative to the output folder (the input's name, or its path inside a folder given, with ``.vsv``)."""
    found: list[tuple[str, Path]] = []
    for spec in specs:
        if "://" in spec:
            found.append((spec, Path(Path(spec.split("?")[0].rstrip("/")).name or "stream").with_suffix(".vsv")))
            continue
        paths = [Path(p) for p in sorted(glob.glob(spec, recursive=True))] if _has_glob(spec) else [Path(spec)]
        if not paths or not all(p.exists() for p in paths):
            raise InputError(f"input not found: {spec}")
        n = len(found)
        for p in paths:
            if p.is_dir():
                found += [(str(v), v.relative_to(p).with_suffix(".vsv")) for v in _folder_videos(p)]
            else:
                found.append((str(p), Path(p.name).with_suffix(".vsv")))
        if len(found) == n:
            raise InputError(f"no video files in {spec} (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
    by_output: dict[Path, str] = {}
    for src, rel in found:
        if rel in by_output and os.path.abspath(by_output[rel]) != os.path.abspath(src):
            raise InputError(f"{by_output[rel]} and {src} would both be written to {rel}; "
                             f"give them separate --out-dir")
        by_output.setdefault(rel, src)
    return [(src, rel) for rel, src in by_output.items()]


def is_complete(path: str | os.PathLike) -> bool:
    """A ``.vsv`` that was closed cleanly: a valid header and its trailing index."""
    try:
        with ContainerReader(path) as r:
            return r.read_index() is not None
    except (FormatError, OSError):
        return False


def compress_task(task: dict) -> dict:
    """One input of a batch (runs in a worker): compresses it with one thread; returns what the summary needs."""
    from ..executor import one_thread
    from .encoder import compress

    with one_thread():
        s = compress(task["input"], task["output"], task["opts"], progress=False)
    return {"frames": s.frames, "coded": s.coded, "bytes_out": s.bytes, "seconds": s.seconds}


def _input_size(src: str) -> int:
    try:
        return os.path.getsize(src)
    except OSError:
        return 0


def compress_batch(inputs: list[str], out_dir: str | os.PathLike, opts: CompressOptions | None = None,
                   executor=None, progress: bool | None = None,
                   log_fn: Callable[[str], None] | None = None) -> BatchSummary:
    """Compresses every input into ``out_dir`` (one ``.vsv`` each), skipping those already done.

    Args:
        inputs: files, folders (their videos, recursively; outputs keep the folder's layout) and globs.
        out_dir: where the ``.vsv`` files go.
        opts: what to do with each input (as :func:`~.encoder.compress`).
        executor: from :func:`vidsieve.executor.make_executor` (default: local, one process per core).
        progress: a bar over inputs done (None: when stderr is a terminal).
        log_fn: receives one-line notes (inputs skipped, failures).

    Returns:
        A summary with one item per input; ``exit_code`` says whether everything succeeded.
    """
    import time

    from ..executor import LocalExecutor, run_tasks, usable_cores

    opts = opts or CompressOptions()
    out = Path(out_dir)
    check_output_path(out, is_dir=True)
    executor = executor or LocalExecutor(usable_cores())
    t0 = time.monotonic()
    summary = BatchSummary(out_dir=str(out), executor=executor.name)
    todo: list[tuple[BatchItem, dict]] = []
    for src, rel in expand_inputs(inputs):
        dst = out / rel
        item = BatchItem(input=src, output=str(dst), status="pending", bytes_in=_input_size(src))
        summary.items.append(item)
        if dst.exists() and is_complete(dst):
            item.status, item.bytes_out = "skipped", dst.stat().st_size
            continue
        if dst.exists() and log_fn:
            log_fn(f"{dst} is there but incomplete or not a .vsv: compressing {src} again")
        todo.append((item, {"input": src, "output": str(dst), "opts": opts}))
    if log_fn and summary.count("skipped"):
        log_fn(f"{summary.count('skipped')} of {len(summary.items)} inputs already have their complete output")
    outcomes = run_tasks(executor, compress_task, [t for _, t in todo],
                         names=[f"compress {Path(it.input).name}" for it, _ in todo], desc="compress", progress=progress,
                         sizes=lambda t, v: (_input_size(t["input"]), v["bytes_out"]))
    for (item, _), o in zip(todo, outcomes):
        if o.ok:
            item.status = "done"
            item.bytes_out, item.frames, item.coded = o.value["bytes_out"], o.value["frames"], o.value["coded"]
            item.seconds = round(o.value["seconds"], 3)
        else:
            item.status, item.error, item.exit_code = "failed", o.error, o.exit_code
    summary.seconds = time.monotonic() - t0
    return summary
