"""Test clips made from other clips, for the measurements docs/RESULTS.md quotes.

Usage::

    python tools/clips.py shake --help
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import _tool
import numpy as np

from vidsieve.errors import InputError


def shake_offsets(frames: int, fps: float, seed: int = 0) -> list[tuple[int, int]]:
    """Each frame's offset (dy, dx pixels) of a fixed camera that shakes: every 5 seconds a gust of wind
    jitters it for a second (each frame up to 4 pixels either way), and halfway through it is bumped and
    stays 3 pixels down and 5 to the left."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(frames):
        t = i / fps
        if i >= frames // 2:
            out.append((3, -5))
        elif t % 5.0 >= 4.0:
            out.append(tuple(int(v) for v in rng.integers(-4, 5, 2)))
        else:
            out.append((0, 0))
    return out


def add_shake(sub) -> None:
    ap = _tool.command(sub, "shake", shake_offsets.__doc__.replace("Each frame's offset (dy, dx pixels) of",
                                                                   "A clip as seen by"))
    ap.add_argument("clip", help="the clip to shake")
    ap.add_argument("dst", help="where to write it (lossless FFV1, .mkv)")
    ap.add_argument("--frames", type=int, default=300, help="frames to take from the start (default 300)")
    ap.add_argument("--seed", type=int, default=0)
    ap.set_defaults(body=shake_main)


def shake_main(a) -> None:
    from vidsieve.codec.stabilise import shown
    from vidsieve.datasets.video import VideoReader, VideoWriter

    if not Path(a.clip).is_file():
        raise InputError(f"clip not found: {a.clip}")
    writer = None
    with VideoReader(a.clip) as r:
        offsets = shake_offsets(a.frames, float(r.fps), a.seed)
        for f in r:
            if f.index >= a.frames:
                break
            if writer is None:
                h, w = f.rgb.shape[:2]
                fps = Fraction(r.fps).limit_denominator(1000)
                writer = VideoWriter(a.dst, w, h, 1 / fps, fps, codec="ffv1")
            writer.write(shown(f.rgb, offsets[f.index]), f.index)
    if writer is None:
        raise InputError(f"{a.clip} has no frames")
    writer.close()
    print(f"{a.dst}: {min(a.frames, len(offsets))} frames, {sum(o != (0, 0) for o in offsets)} of them moved")


def main(argv=None) -> int:
    return _tool.main(__doc__, [add_shake], argv)


if __name__ == "__main__":
    raise SystemExit(main())
