"""Writes the golden streams in this folder and the checksums ``test_golden.py`` holds them to.

Each golden is written once, with the code and weights its format version ships with; an
existing one is never rewritten (a failing golden test means a change altered what old files
mean, which is what the goldens are there to catch). A new payload or stream version adds
new entries here and the script writes only those.

    .venv/bin/python tests/golden/make.py            # writes the goldens that do not exist yet
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
from conftest import (latent_sha256, moving_patch, shaken_scene, source_frame, source_frames,  # noqa: E402
                      stopping_patch, symbols_sha256)

from vidsieve.codec.registry import load_codec  # noqa: E402
from vidsieve.codec.registry import stream_decoder  # noqa: E402
from vidsieve.datasets.synthetic import Mover, Scene, render  # noqa: E402
from vidsieve.pipeline import CompressOptions  # noqa: E402

#: (file, model, width, height, quality, source seed)
FRAMES = [
    ("frame-wide-q3.bin", "vidsieve-hyperprior-wide", 96, 72, 3.0, 1),
    ("frame-wide-q6.5.bin", "vidsieve-hyperprior-wide", 77, 53, 6.5, 2),
    ("frame-narrow-q5.bin", "vidsieve-hyperprior", 96, 64, 5.0, 3),
]

#: Streams: intra-only ones (written with payload version 2), then predicted ones (versions 3 and 4), then
#: predicted ones with quality maps; then predicted ones of version 5 (exact gains, check values), one with maps;
#: then predicted ones of version 6 (modes per 64, 32 or 16 pixels, hyper latents sent where read), one with maps;
#: then one coded at half its size, which its decoder scales back up; then one of version 7, with motion; then one
#: of version 7 with the maps of the reuse look-ahead; then one of version 8 (two checkerboard passes, pictures
#: shown shifted).
STREAMS = {
    "keepall-q4.vsv": CompressOptions(keep_all=True, quality=4.0, predict=False),
    "motion-balanced.vsv": CompressOptions(detector="motion", max_gap=0.5, segment_seconds=0.6, predict=False),
    "predicted-keepall-q4.vsv": CompressOptions(keep_all=True, quality=4.0, intra_period=0.6),
    "predicted-motion.vsv": CompressOptions(detector="motion", max_gap=0.5, segment_seconds=0.6, roi_boost=0.0,
                                            roi_background=0.0),
    # Quality maps from the motion boxes (payload strings 3 and 7), on a larger source (SOURCES).
    "predicted-motion-roi.vsv": CompressOptions(detector="motion", max_gap=0.5, segment_seconds=5.0, roi_boost=2.0,
                                                roi_background=-1.0),
    "exact-keepall-q4.vsv": CompressOptions(keep_all=True, quality=4.0, intra_period=0.6),
    "exact-motion-roi.vsv": CompressOptions(detector="motion", max_gap=0.5, segment_seconds=5.0, roi_boost=2.0,
                                            roi_background=-1.0),
    # Modes down to 16 pixels (the format's finest), whatever the encoder's default.
    "quadtree-keepall-q4.vsv": CompressOptions(keep_all=True, quality=4.0, intra_period=0.6, block_px=16),
    "quadtree-motion-roi.vsv": CompressOptions(detector="motion", max_gap=0.5, segment_seconds=5.0, roi_boost=2.0,
                                               roi_background=-1.0, block_px=16),
    "scaled-keepall-q4.vsv": CompressOptions(keep_all=True, quality=4.0, intra_period=0.6, scale=0.5),
    "motion-keepall-q4.vsv": CompressOptions(keep_all=True, quality=4.0, intra_period=0.6, motion=True),
    "lookahead-keepall-q4.vsv": CompressOptions(keep_all=True, quality=4.0, intra_period=1.0, lookahead=6),
    "context-shaken-q4.vsv": CompressOptions(keep_all=True, quality=4.0, intra_period=2.0,
                                             conditional="vidsieve-inter-ctx"),
}
#: A stream's source scene, where not ``source_frames(96, 64, 12)``: a mover small enough not to be a scene cut.
SOURCES = {name: Scene(width=192, height=128, frames=12, noise=0.0, movers=[Mover(3, 9, (300, 120), 0.5)])
           for name in ("predicted-motion-roi.vsv", "exact-motion-roi.vsv", "scaled-keepall-q4.vsv")}
#: Version 6's: movers smaller than a 64-pixel block, so that blocks split.
SOURCES.update({name: Scene(width=256, height=192, frames=12, noise=0.0,
                            movers=[Mover(1, 11, (120, 90), 0.3), Mover(4, 12, (90, 70), 0.7, (40, 160, 60), -1)])
                for name in ("quadtree-keepall-q4.vsv", "quadtree-motion-roi.vsv")})
#: Streams whose source is not a synthetic scene.
FRAME_SOURCES = {"motion-keepall-q4.vsv": moving_patch, "lookahead-keepall-q4.vsv": stopping_patch,
                 # Version 8's: differences coded in two passes, pictures shown shifted.
                 "context-shaken-q4.vsv": shaken_scene}


def write_png(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    from vidsieve.container import ContainerReader, FrameRecord, SkipRecord
    from vidsieve.datasets.video import VideoWriter
    from vidsieve.pipeline import compress

    path = HERE / "golden.json"
    doc = json.loads(path.read_text()) if path.exists() else {"frames": {}, "streams": {}}
    added = []
    codecs = {}
    for name, model, w, h, q, seed in FRAMES:
        if name in doc["frames"]:
            continue
        codec = codecs.setdefault(model, load_codec(model))
        enc = codec.encode_batch([source_frame(w, h, seed)], [q])[0]
        (HERE / name).write_bytes(enc.data)
        write_png(HERE / name.replace(".bin", ".png"), enc.recon)
        doc["frames"][name] = {"model": model, "weights_sha256": codec.weights_sha256, "width": w, "height": h,
                               "quality": q, "seed": seed, "payload_sha256": hashlib.sha256(enc.data).hexdigest(),
                               "symbols_sha256": symbols_sha256(codec.decode_symbols(enc.data))}
        added.append(name)

    todo = {name: opts for name, opts in STREAMS.items() if name not in doc["streams"]}
    for name, opts in todo.items():
        clip = HERE / "_source.mkv"
        scene = SOURCES.get(name)
        if name in FRAME_SOURCES:
            frames_in = FRAME_SOURCES[name]()
        else:
            frames_in = source_frames(96, 64, 12) if scene is None else [rgb for _, rgb in render(scene)]
        h, w = frames_in[0].shape[:2]
        writer = VideoWriter(clip, w, h, Fraction(1, 10), Fraction(10), codec="ffv1")
        for i, rgb in enumerate(frames_in):
            writer.write(rgb, i)
        writer.close()
        compress(clip, HERE / name, opts, progress=False)
        frames, pictures = [], {}
        with ContainerReader(HERE / name) as r:
            codec = codecs.setdefault(r.header.model, load_codec(r.header.model))
            decoder = stream_decoder(codec, r.header.stream)
            for rec in r.records():
                if isinstance(rec, FrameRecord):
                    rgb = decoder.decode(rec.payload, rec.pts, rec.intra)
                    f = {"pts": rec.pts, "kept": True, "quality": rec.quality}
                    if r.header.stream:  # predicted: the exact latent each frame leaves as reference
                        f["latent_sha256"] = latent_sha256(decoder.latent)
                    else:
                        f["symbols_sha256"] = symbols_sha256(codec.decode_symbols(rec.payload))
                    frames.append(f)
                    pictures[f"pts{rec.pts}"] = rgb
                elif isinstance(rec, SkipRecord):
                    frames.extend({"pts": p, "kept": False} for p in rec.pts)
        np.savez_compressed(HERE / f"{name}.decoded.npz", **pictures)
        doc["streams"][name] = {"file_sha256": hashlib.sha256((HERE / name).read_bytes()).hexdigest(),
                                "frames": frames}
        added.append(name)
        clip.unlink()
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"added {', '.join(added) or 'nothing'} in {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
