"""What every ``python -m vidsieve.bench.NAME`` tool shares: its parser, torch threads, one-line errors."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..errors import VidsieveError


def parser(module: str, doc: str | None, threads: int | None = None, out: str | None = "") -> argparse.ArgumentParser:
    """The argument parser of ``python -m vidsieve.bench.MODULE``, its description the module's docstring.

    ``threads``: add ``--threads`` with this default (0: torch's choice); ``out``: add ``--out`` with
    this default (None: optional, no file unless given; "": no ``--out``)."""
    ap = argparse.ArgumentParser(prog=f"python -m vidsieve.bench.{module}", description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    if threads is not None:
        ap.add_argument("--threads", type=int, default=threads,
                        help=f"torch threads (default: {threads or 'torch' + chr(39) + 's choice'})")
    if out != "":
        ap.add_argument("--out", default=out, help="write the result here as JSON" +
                        (f" (default: {out})" if out else " (default: print only)"))
    return ap


def run(ap: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int | None], argv=None) -> int:
    """Parse ``argv``, set torch's threads, run ``body``; errors a user can act on are one line and an exit code."""
    a = ap.parse_args(argv)
    if getattr(a, "threads", 0):
        import torch

        torch.set_num_threads(a.threads)
    try:
        rc = body(a)
        return rc if isinstance(rc, int) else 0
    except VidsieveError as exc:
        print(f"vidsieve: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:
        print(f"vidsieve: error: {exc}", file=sys.stderr)
        return 2
