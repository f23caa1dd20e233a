"""The reuse look-ahead: blocks that later frames copy get more quality (pipeline.lookahead)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from conftest import run_cli, stopping_patch

from vidsieve.codec import DEFAULT_LOOKAHEAD
from vidsieve.codec.quality_map import has_map, offsets_from_steps
from vidsieve.container import ContainerReader, FrameRecord
from vidsieve.datasets.video import VideoWriter
from vidsieve.pipeline import CompressOptions, compress, decoded_frames
from vidsieve.pipeline.lookahead import STRENGTH, ReuseTree, block_luma


def _frames(n: int, changes: dict[int, tuple[int, int]]) -> list[np.ndarray]:
    """n 256x128 frames (4 x 2 blocks) of a flat grey; ``changes[i] = (row, col)``: from frame i on, that
    block is brighter by a further 40 levels."""
    out, f = [], np.full((128, 256, 3), 100, np.uint8)
    for i in range(n):
        if i in changes:
            r, c = changes[i]
            f = f.copy()
            f[r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64] += 40
        out.append(f)
    return out


def test_a_block_that_changes_then_stays_is_raised_by_how_long_it_stays():
    # Block (0, 1) changes at frame 2 and then stays for 7 frames; block (1, 3) changes at 2 and again at 3.
    frames = _frames(10, {2: (0, 1), 3: (1, 3)})
    frames[2] = frames[2].copy()
    frames[2][64:, 192:] += 80
    lumas = [block_luma(f) for f in frames]
    tree = ReuseTree()
    assert tree.offsets(lumas[0], lumas[1:]) is not None  # the first frame: every block counts as new
    tree.restart()  # ... and is coded alone: nothing stays raised
    assert tree.offsets(lumas[1], lumas[2:]) is None  # nothing changed since
    got = tree.offsets(lumas[2], lumas[3:])
    assert got[0, 1] == offsets_from_steps(STRENGTH * np.log2(1 + 7)) > 0
    assert got[1, 3] == 0  # overwritten by the next frame: nothing reuses it
    assert got[0, 0] == got[1, 0] == 0  # still since the last frame: keeps what it had
    got = tree.offsets(lumas[3], lumas[4:])
    assert got[0, 1] == offsets_from_steps(STRENGTH * np.log2(8))  # copied: keeps the quality it was coded at
    assert got[1, 3] == offsets_from_steps(STRENGTH * np.log2(1 + 6))  # changed again, then stays for 6
    tree.restart()
    assert not tree.held.any()


def test_the_window_bounds_the_raise_and_noise_does_not_count():
    rng = np.random.default_rng(0)
    frames = [np.clip(f.astype(int) + rng.normal(0, 2, f.shape), 0, 255).astype(np.uint8)
              for f in _frames(30, {1: (0, 0)})]
    lumas = [block_luma(f) for f in frames]
    tree = ReuseTree()
    tree.offsets(lumas[0], lumas[1:5])
    tree.restart()
    got = tree.offsets(lumas[1], lumas[2:6])  # four frames ahead
    assert got[0, 0] == offsets_from_steps(STRENGTH * np.log2(5))
    assert np.count_nonzero(got) == 1  # sensor noise moves no block past the threshold


@pytest.fixture(scope="module")
def patch_clip(tmp_path_factory):
    """A patch that crosses the scene and stops: the blocks it leaves and the ones it stops in are reused."""
    frames = stopping_patch()
    path = tmp_path_factory.mktemp("la") / "patch.mkv"
    h, w = frames[0].shape[:2]
    writer = VideoWriter(path, w, h, Fraction(1, 10), Fraction(10), codec="ffv1")
    for i, rgb in enumerate(frames):
        writer.write(rgb, i)
    writer.close()
    return path


def _payloads(path) -> list[bytes]:
    with ContainerReader(path) as r:
        return [rec.payload for rec in r.records() if isinstance(rec, FrameRecord)]


def test_a_file_coded_with_the_lookahead_raises_blocks_and_decodes_in_order(patch_clip, tmp_path):
    with_la, without = tmp_path / "la.vsv", tmp_path / "none.vsv"
    s1 = compress(patch_clip, with_la, CompressOptions(keep_all=True, quality=3.0, lookahead=6), progress=False)
    s0 = compress(patch_clip, without, CompressOptions(keep_all=True, quality=3.0, lookahead=0), progress=False)
    assert s1.coded == s0.coded == 18
    mapped = [has_map(p) for p in _payloads(with_la)]
    assert not mapped[0] and any(mapped[1:])  # the intra frame has its own boost; predicted frames get maps
    assert not any(has_map(p) for p in _payloads(without))
    a = list(decoded_frames(with_la))
    b = list(decoded_frames(without))
    assert [f.pts for f in a] == [f.pts for f in b] == sorted(f.pts for f in a)
    # What the look-ahead buys: the stopped patch, shown for ten frames, at a higher quality.
    src = stopping_patch()[-1].astype(float)
    err1 = np.mean((a[-1].rgb - src) ** 2)
    err0 = np.mean((b[-1].rgb - src) ** 2)
    assert err1 < err0


def test_a_rate_target_codes_without_the_lookahead(patch_clip, tmp_path):
    """The target's feedback needs each segment's bits when the next one starts: no frames held back."""
    out = tmp_path / "t.vsv"
    compress(patch_clip, out, CompressOptions(keep_all=True, quality=3.0, lookahead=6, target_kbps=200.0),
             progress=False)
    assert not any(has_map(p) for p in _payloads(out))


def test_lookahead_on_the_command_line(tmp_path):
    from vidsieve.cli.args import options_from_args
    from vidsieve.cli.main import build_parser

    p = build_parser()
    assert options_from_args(p.parse_args(["compress", "in.mp4", "-o", "o.vsv", "--lookahead", "4"])).lookahead == 4
    assert options_from_args(p.parse_args(["compress", "in.mp4", "-o", "o.vsv"])).lookahead == DEFAULT_LOOKAHEAD
    r = run_cli("compress", "in.mp4", "-o", str(tmp_path / "d.vsv"), "--lookahead", "-1")
    assert r.returncode == 2 and "--lookahead: must be 0 or more" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "d.vsv").exists()
