"""Build the int8 analysis and synthesis transforms of a shipped model (:mod:`vidsieve.codec.int8`).

    python -m vidsieve.training.quantize --model vidsieve-hyperprior-wide \\
        --data ../shared/data/images/train ../shared/data/video

Calibrates on crops of the images and video frames in ``--data``, writes
``codec/weights/<model>.int8-{analysis,synthesis}.onnx`` and their manifest entry (tied to the
float weights' sha256: new float weights need a new build). Needs the ``onnx`` package.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from ..files import write_bytes


def write_graphs(folder: str | os.PathLike, name: str, float_sha256: str, graphs: tuple[bytes, bytes],
          notes: dict | None = None) -> dict:
    """Ship ``graphs`` beside the float weights of ``name`` (``<name>.int8-analysis.onnx`` and
    ``-synthesis.onnx``, each written whole or not at all) with their manifest entry."""
    import hashlib
    import time

    from ..codec.zoo import read_manifest
    from .export import set_manifest_entry

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mpath = folder / "manifest.json"
    # Models that share transforms (a pruned hyper-synthesis) share the graphs' files too.
    shipped = {e[p]["sha256"]: e[p]["file"] for e in (read_manifest(mpath).get("int8", {}).values()
                                                      if mpath.exists() else ()) for p in ("analysis", "synthesis")}
    entry: dict = {"float_sha256": float_sha256}
    for part, data in zip(("analysis", "synthesis"), graphs):
        sha = hashlib.sha256(data).hexdigest()
        path = folder / shipped.get(sha, f"{name}.int8-{part}.onnx")
        if not (path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == sha):
            write_bytes(path, data)
        entry[part] = {"file": path.name, "sha256": sha}
    entry.update(notes or {})
    entry["exported"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    set_manifest_entry(folder, "int8", name, entry)
    return entry


def main(argv=None) -> int:
    from ..codec import DEFAULT_MODEL
    from ..codec import int8
    from ..codec.models import GainedMeanScaleHyperprior
    from ..codec.zoo import MANIFEST, load_shipped
    from ..errors import VidsieveError
    from .prune import sample_crops

    ap = argparse.ArgumentParser(prog="python -m vidsieve.training.quantize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="shipped model name (default %(default)s)")
    ap.add_argument("--data", nargs="+", required=True, help="images or videos to calibrate on")
    ap.add_argument("--crops", type=int, default=24, help="calibration crops (default %(default)s)")
    ap.add_argument("--size", type=int, default=384, help="crop side in pixels (default %(default)s)")
    ap.add_argument("--alpha", type=float, default=int8.EQUALIZE_ALPHA, help="equalisation strength (0: none)")
    ap.add_argument("--quantize-ends", action="store_true",
                    help="quantise the first and last convolution of each transform too")
    ap.add_argument("--out-dir", default=str(MANIFEST.parent), help="where the graphs and manifest go")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    try:
        state, entry = load_shipped(a.model)
        model = GainedMeanScaleHyperprior.from_state_dict(state).eval()
        crops = sample_crops(a.data, a.crops, a.size)
        graphs = int8.build(model, list(crops.split(1)), keep_float_ends=not a.quantize_ends, alpha=a.alpha)
        notes = {"calibration": {"crops": a.crops, "size": a.size, "alpha": a.alpha,
                                 "float_ends": not a.quantize_ends}}
        out = write_graphs(a.out_dir, a.model, entry["sha256"], graphs, notes)
    except (VidsieveError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{p} {len(g) / 1e6:.2f} MB" for p, g in zip(("analysis", "synthesis"), graphs))
    print(f"int8 transforms of {a.model} written to {a.out_dir} ({sizes}; {out['analysis']['sha256'][:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
