"""Benchmark results on disk: written whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json(path: str | os.PathLike, doc, indent: int = 2) -> Path:
    """Write ``doc`` as JSON to ``path`` through a temp name and a rename, so a run
    killed mid-write leaves the previous results, never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=indent) + "\n")
    os.replace(tmp, path)
    return path
