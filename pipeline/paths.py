"""Output paths: checked before any work starts, so a long run never fails at its last step."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OutputError


def check_output_path(output: str | os.PathLike, is_dir: bool = False) -> None:
    """Creates the output's folder if needed; raises :class:`OutputError` when it cannot be written."""
    p = Path(output)
    parent = p if is_dir and p.exists() else p.parent
    parent = parent if str(parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {parent}: {exc.strerror or exc}") from None
    if not parent.is_dir():
        raise OutputError(f"output folder is not a folder: {parent}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {parent}")
    if p.exists() and p.is_dir() and not is_dir:
        raise OutputError(f"output is a directory: {p}")
