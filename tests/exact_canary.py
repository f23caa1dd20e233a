"""Runs in a subprocess of tests/test_exactness.py, under one set of math back ends (its environment).

    python tests/exact_canary.py [--perturb] sums FILE.vsv ...   # JSON: per file, the exact checksum per coded frame
    python tests/exact_canary.py [--perturb] encode SOURCE OUT.vsv SETTINGS_JSON

``--perturb`` stands in for another machine's math library: every transcendental function torch,
numpy and ``math`` offer (exp, log, pow, ...) returns results one ulp off for about half of its
elements. Nothing that decides how bits are read may notice.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

_TORCH = ("exp", "log", "log2", "log10", "expm1", "log1p", "pow", "sigmoid", "tanh", "erf", "erfc")


def _nudge_tensor(t):
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
        return t
    flat = t.detach().reshape(-1)
    odd = (torch.arange(flat.numel()) % 2 == 1).reshape(t.shape)
    return torch.where(odd, torch.nextafter(t, torch.full_like(t, math.inf)), t)


def perturb() -> None:
    """Make every transcendental function return slightly different last bits."""
    for name in _TORCH:
        for owner in (torch, torch.Tensor):
            orig = getattr(owner, name, None)
            if orig is None:
                continue

            def wrapped(*a, _orig=orig, **k):
                return _nudge_tensor(_orig(*a, **k))

            setattr(owner, name, wrapped)
    for name in ("exp", "log", "log2", "power", "expm1", "log1p"):
        orig = getattr(np, name)

        def npwrapped(*a, _orig=orig, **k):
            r = _orig(*a, **k)
            if isinstance(r, np.ndarray) and r.dtype.kind == "f" and r.size:
                flat = r.reshape(-1)
                flat[1::2] = np.nextafter(flat[1::2], np.inf)
            return r

        setattr(np, name, npwrapped)
    for name in ("exp", "log", "pow", "log2"):
        orig = getattr(math, name)
        setattr(math, name, lambda *a, _orig=orig: math.nextafter(_orig(*a), math.inf))


def sums(paths: list[str]) -> dict:
    from conftest import latent_sha256, symbols_sha256

    from vidsieve.codec.registry import load_codec, stream_decoder
    from vidsieve.container import ContainerReader, FrameRecord

    out = {}
    for path in paths:
        with ContainerReader(path) as reader:
            codec = load_codec(reader.header.model)
            decoder = stream_decoder(codec, reader.header.stream)
            got = []
            for rec in reader.records():
                if isinstance(rec, FrameRecord):
                    decoder.decode(rec.payload, rec.pts, rec.intra, None if rec.intra else rec.ref_pts)
                    got.append(latent_sha256(decoder.latent) if reader.header.stream
                               else symbols_sha256(codec.decode_symbols(rec.payload)))
        out[Path(path).name] = got
    return out


def encode(source: str, out: str, settings: str) -> dict:
    from vidsieve.pipeline import CompressOptions, compress

    compress(source, out, CompressOptions(**json.loads(settings)), progress=False)
    return {}


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--perturb":
        perturb()
        argv = argv[1:]
    if argv[0] == "sums":
        result = sums(argv[1:])
    else:
        result = encode(*argv[1:4])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
