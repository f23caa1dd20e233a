"""What an ingester holds in memory, part by part.

Usage::

    python tools/footprint.py components --out docs/results/footprint.json

Each command's help says what it measures; docs/RESULTS.md quotes the commands that made its numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys

import _tool

DOC_COMPONENTS = """Resident memory an ingester's parts add, each loaded in turn in one fresh process.

Resident memory is given whole and split into anonymous pages (the process's own) and file-backed ones
(shared libraries and weights mapped from disk, which other processes share and the kernel can drop
and reread). Steps: Python; torch; the rest of what vidsieve's ingest module imports; the codec (weights and fixed-point
tables); the conditional model of predicted frames; the detector (--detector, default auto); one
camera's coding state (a stream encoder after coding two frames). Also lists which heavy packages
the process imported (an ingester should not import ultralytics, Ray or matplotlib it does not use).
Per-camera memory under load comes from `vidsieve soak --cameras N`.

    python tools/footprint.py components --out docs/results/footprint.json
"""

_PROBE = r"""
import json, sys, os
def rss():
    d = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS:", "RssAnon:", "RssFile:")):
            k, v = line.split(":")
            d[k] = int(v.split()[0]) / 1024
    return d["VmRSS"], d.get("RssAnon", 0.0), d.get("RssFile", 0.0)
steps = [("python", rss())]
import numpy, torch
steps.append(("torch (and numpy)", rss()))
import vidsieve.ingest.cameras
steps.append(("vidsieve's ingest imports (scipy, OpenCV, PyAV, CompressAI's coding modules)", rss()))
from vidsieve.codec.registry import load_codec, load_conditional, stream_encoder
codec = load_codec(sys.argv[1])
steps.append(("codec " + codec.name, rss()))
found = load_conditional(codec)
steps.append(("conditional model " + (found[1] if found else "none"), rss()))
from vidsieve.detection.registry import load_detector
det = load_detector(sys.argv[2])
steps.append(("detector " + det.name, rss()))
import numpy as np
from fractions import Fraction
from vidsieve.datasets.synthetic import background
enc = stream_encoder(codec, Fraction(1, 10))
rgb = background(640, 360, 1).astype(np.uint8)
det.detect(rgb)
for i in range(2):
    enc.encode(rgb, 4.0, i)
steps.append(("one camera's coding state (640x360, two frames coded)", rss()))
heavy = sorted(m for m in ("ultralytics", "ray", "matplotlib", "pandas", "scipy", "torchvision")
               if m in sys.modules)
print(json.dumps({"steps": steps, "heavy_modules_imported": heavy}))
"""


def components(a) -> int:
    from vidsieve.codec import DEFAULT_MODEL
    from vidsieve.files import write_json

    r = subprocess.run([sys.executable, "-c", _PROBE, a.model or DEFAULT_MODEL, a.detector],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr[-2000:], file=sys.stderr)
        return 1
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    prev, rows = 0.0, []
    for name, (mb, anon, file) in doc["steps"]:
        rows.append({"part": name, "rss_mb": round(mb, 1), "adds_mb": round(mb - prev, 1),
                     "anon_mb": round(anon, 1), "file_mb": round(file, 1)})
        prev = mb
    res = {"rows": rows, "heavy_modules_imported": doc["heavy_modules_imported"],
           "machine": _tool.cpu_name()}
    for row in rows:
        print(f"{row['part']:60s} {row['rss_mb']:8.1f} MB  (+{row['adds_mb']:.1f}; "
              f"{row['anon_mb']:.0f} anonymous, {row['file_mb']:.0f} file-backed)")
    print("heavy modules imported:", ", ".join(res["heavy_modules_imported"]) or "none")
    if a.out:
        write_json(a.out, res)
    return 0


def add_components(sub) -> None:
    ap = _tool.command(sub, "components", DOC_COMPONENTS, out=None)
    ap.add_argument("--model", default=None, help="codec (default: the shipped default)")
    ap.add_argument("--detector", default="auto", help="detector (default: auto)")
    ap.set_defaults(body=components)


def main(argv=None) -> int:
    return _tool.main(__doc__, [add_components], argv)


if __name__ == "__main__":
    sys.exit(main())
