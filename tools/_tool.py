"""What every tool in this folder shares: its command line, torch threads, one-line errors.

The tools are the team's lab, not the product: they are not installed with ``vidsieve``. Run them
from the repository root with the environment that has it, ``python tools/NAME.py COMMAND ...``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Callable

from vidsieve.errors import VidsieveError


def command(sub, name: str, doc: str | None, threads: int | None = None,
            out: str | None = "") -> argparse.ArgumentParser:
    """A subcommand of a tool, its description ``doc``.

    ``threads``: add ``--threads`` with this default (0: torch's choice); ``out``: add ``--out`` with
    this default (None: optional, no file unless given; "": no ``--out``)."""
    first = (doc or "").strip().split("\n", 1)[0]
    ap = sub.add_parser(name, help=first, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if threads is not None:
        ap.add_argument("--threads", type=int, default=threads,
                        help=f"torch threads (default: {threads or 'torch' + chr(39) + 's choice'})")
    if out != "":
        ap.add_argument("--out", default=out, help="write the result here as JSON" +
                        (f" (default: {out})" if out else " (default: print only)"))
    return ap


def main(doc: str | None, commands: list[Callable], argv=None) -> int:
    """Parse ``argv`` into one of ``commands`` (each adds its subparser), set torch's threads, run it;
    errors a user can act on are one line and an exit code."""
    prog = f"python tools/{Path(sys.argv[0]).name}" if sys.argv and sys.argv[0] else None
    ap = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in commands:
        add(sub)
    a = ap.parse_args(argv)
    if getattr(a, "threads", 0):
        import torch

        torch.set_num_threads(a.threads)
    try:
        rc = a.body(a)
        return rc if isinstance(rc, int) else 0
    except VidsieveError as exc:
        print(f"vidsieve: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:
        print(f"vidsieve: error: {exc}", file=sys.stderr)
        return 2

def cpu_name(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The processor's model name: speeds differ several tenths of a second a frame between machines."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
