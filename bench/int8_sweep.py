"""How the int8 transforms' settings trade bits: each setting built afresh and measured against float.

    python -m vidsieve.bench.int8_sweep --kodak ../shared/data/images/kodak --images 6 \\
        --calibrate ../shared/data/images/train ../shared/data/video --out bench/results/int8-sweep.json

For every equalisation strength (``--alphas``) the int8 graphs are built into a scratch folder
and the BD-rate (PSNR-RGB) against the float codec is measured on real bitstreams for an int8
analysis, an int8 synthesis, and both. Needs the ``onnx`` package (``vidsieve[quantize]``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from . import tool
from .jsonfile import write_json


def main(argv=None) -> int:
    from ..codec import DEFAULT_MODEL

    ap = tool.parser("int8_sweep", __doc__, out="bench/results/int8-sweep.json")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--kodak", required=True, help="images to measure on")
    ap.add_argument("--images", type=int, default=6, help="how many of them (default %(default)s)")
    ap.add_argument("--calibrate", nargs="+", required=True, help="images or videos to calibrate on")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    return tool.run(ap, sweep, argv)


def sweep(a) -> dict:
    import torch

    from ..codec import int8
    from ..training.quantize import write_graphs
    from ..codec.registry import load_codec
    from ..codec.zoo import load_shipped
    from ..codec.models import GainedMeanScaleHyperprior
    from ..datasets.images import IMAGE_EXTS, load_rgb
    from ..metrics import psnr
    from ..training.prune import sample_crops
    from .bdrate import bd_rate

    files = sorted(p for p in Path(a.kodak).iterdir() if p.suffix.lower() in IMAGE_EXTS)[: a.images]
    images = [load_rgb(p) for p in files]
    codec = load_codec(a.model)
    state, entry = load_shipped(a.model)
    float_model = GainedMeanScaleHyperprior.from_state_dict(state).eval()
    torch.manual_seed(0)
    crops = list(sample_crops(a.calibrate, 24, 384).split(1))

    def curve(enc, dec):
        pts = []
        for q in (1, 2.5, 4, 6, 8):
            bits, ps = [], []
            for img in images:
                codec.model.use_int8(enc)
                data = codec.encode(img, q)
                codec.model.use_int8(dec)
                bits.append(8 * len(data) / (img.shape[0] * img.shape[1]))
                ps.append(psnr(img, codec.decode(data)))
            pts.append({"quality": q, "kbps": float(np.mean(bits)), "psnr_rgb": float(np.mean(ps))})
        codec.model.use_int8(None)
        return pts

    ref = curve(None, None)
    res = {"model": a.model, "weights_sha256": entry["sha256"][:12], "images": len(images), "float": ref,
           "alphas": {}}
    for alpha in a.alphas:
        with tempfile.TemporaryDirectory() as d:
            write_graphs(d, a.model, entry["sha256"], int8.build(float_model, crops, alpha=alpha))
            t = int8.load(a.model, entry["sha256"], d)
        row = {}
        for label, enc, dec in (("both", t, t), ("analysis", t, None), ("synthesis", None, t)):
            pts = curve(enc, dec)
            row[label] = {"bd_rate_vs_float": round(float(bd_rate(ref, pts)), 2), "curve": pts}
        res["alphas"][str(alpha)] = row
    write_json(a.out, res)
    print(json.dumps({al: {k: v["bd_rate_vs_float"] for k, v in row.items()} for al, row in res["alphas"].items()}))
    return res


if __name__ == "__main__":
    raise SystemExit(main())
