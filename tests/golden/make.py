"""Writes the golden streams in this folder and the checksums ``test_golden.py`` holds them to.

Run once, with the code and weights a format version ships with; never re-run to make
a failing golden test pass (that is what the goldens are there to catch). A new payload or
container version adds new files beside these and keeps the old ones.

    .venv/bin/python tests/golden/make.py            # refuses to replace existing goldens
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from conftest import source_frame, source_frames, symbols_sha256  # noqa: E402

from vidsieve.codec.registry import load_codec  # noqa: E402

#: (file, model, width, height, quality, source seed)
FRAMES = [
    ("frame-wide-q3.bin", "vidsieve-hyperprior-wide", 96, 72, 3.0, 1),
    ("frame-wide-q6.5.bin", "vidsieve-hyperprior-wide", 77, 53, 6.5, 2),
    ("frame-narrow-q5.bin", "vidsieve-hyperprior", 96, 64, 5.0, 3),
]


def write_png(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="replace existing goldens (changes what old files mean)")
    a = ap.parse_args()
    if (HERE / "golden.json").exists() and not a.force:
        print("goldens exist; they are what old files must keep decoding to (use --force only for a new set)")
        return 2
    from vidsieve.pipeline import CompressOptions, compress

    doc = {"frames": {}, "streams": {}}
    codecs = {}
    for name, model, w, h, q, seed in FRAMES:
        codec = codecs.setdefault(model, load_codec(model))
        enc = codec.encode_batch([source_frame(w, h, seed)], [q])[0]
        (HERE / name).write_bytes(enc.data)
        write_png(HERE / name.replace(".bin", ".png"), enc.recon)
        doc["frames"][name] = {"model": model, "weights_sha256": codec.weights_sha256, "width": w, "height": h,
                               "quality": q, "seed": seed, "payload_sha256": hashlib.sha256(enc.data).hexdigest(),
                               "symbols_sha256": symbols_sha256(codec.decode_symbols(enc.data))}

    from vidsieve.datasets.video import VideoWriter

    clip = HERE / "_source.mkv"
    w = VideoWriter(clip, 96, 64, Fraction(1, 10), Fraction(10), codec="ffv1")
    for i, rgb in enumerate(source_frames(96, 64, 12)):
        w.write(rgb, i)
    w.close()
    streams = {
        "keepall-q4.vsv": CompressOptions(keep_all=True, quality=4.0),
        "motion-balanced.vsv": CompressOptions(detector="motion", max_gap=0.5, segment_seconds=0.6),
    }
    for name, opts in streams.items():
        compress(clip, HERE / name, opts, progress=False)
        codec = codecs["vidsieve-hyperprior-wide"]
        from vidsieve.container import ContainerReader, FrameRecord, SkipRecord

        frames, pictures = [], {}
        with ContainerReader(HERE / name) as r:
            for rec in r.records():
                if isinstance(rec, FrameRecord):
                    frames.append({"pts": rec.pts, "kept": True, "quality": rec.quality,
                                   "symbols_sha256": symbols_sha256(codec.decode_symbols(rec.payload))})
                    pictures[f"pts{rec.pts}"] = codec.decode(rec.payload)
                elif isinstance(rec, SkipRecord):
                    frames.extend({"pts": p, "kept": False} for p in rec.pts)
        np.savez_compressed(HERE / f"{name}.decoded.npz", **pictures)
        doc["streams"][name] = {"file_sha256": hashlib.sha256((HERE / name).read_bytes()).hexdigest(),
                                "frames": frames}
    clip.unlink()
    (HERE / "golden.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(FRAMES)} frame payloads and {len(streams)} streams to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
