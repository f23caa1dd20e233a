"""Files written whole or not at all: under a temporary name beside the target, renamed over it when complete.

A run killed mid-write leaves the previous file (or none), never a torn one that looks complete.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` to write; renames it to ``path`` when the block ends
    cleanly, removes it when it raises. Parent folders are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The pid keeps two processes that write the same file (workers of one cache) off each other's temp.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with replacing(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, doc, indent: int | None = 2) -> Path:
    """``doc`` as JSON (a newline at the end); ``indent`` None: one line."""
    text = json.dumps(doc, indent=indent) if indent is not None else json.dumps(doc, separators=(",", ":"))
    return write_text(path, text + "\n")
