"""Subcommands beyond compress/decompress/info: train, bench, bench-image, ingest."""

from __future__ import annotations

COMMANDS: dict = {}


def add_commands(sub, add_selection_args, duration, size, positive, quality) -> None:
    pass
