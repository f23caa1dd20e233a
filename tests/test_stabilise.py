"""Camera shake: frames that moved as a whole coded aligned with their references and shown moved
(codec/stabilise.py, the picture shift of payload version 8)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from conftest import SHAKE, shaken, source_frame
from vidsieve.codec.latent_codecs import MAX_SHIFT, S_SHIFT, picture_shift
from vidsieve.codec.payload import PREDICTED, pack, unpack
from vidsieve.codec.incremental import IncrementalAnalysis
from vidsieve.codec.predictive import PredictiveStreamDecoder
from vidsieve.codec.predictive_encoder import PredictiveStreamEncoder
from vidsieve.codec.registry import load_conditional
from vidsieve.codec.stabilise import aligned, find_shift, shown
from vidsieve.datasets.synthetic import Mover, Scene, render
from vidsieve.errors import FormatError
from vidsieve.metrics import psnr

def scene_frames(n=len(SHAKE)):
    scene = Scene(width=320, height=192, frames=n, noise=1.0, movers=[Mover(0, 3 * n, (200, 60), 0.3)])
    return [rgb for _, rgb in render(scene)]


def test_shown_and_aligned_undo_each_other_away_from_the_uncovered_strip():
    x = source_frame(96, 64, seed=1)
    s = shown(x, (3, -2))
    assert np.array_equal(s[3:, :-2], x[:-3, 2:])  # (r, c) shows x[r - 3, c + 2]
    assert np.array_equal(s[:3, :-2], np.repeat(x[:1, 2:], 3, 0))  # the nearest edge where that is outside
    prev = np.zeros_like(x)
    back = aligned(s, (3, -2), prev)
    assert np.array_equal(back[:-3, 2:], x[:-3, 2:])
    assert not back[-3:].any() and not back[:, :2].any()  # the strip comes from the previous picture
    assert shown(x, (0, 0)) is x


def test_a_whole_pixel_shift_is_found_and_a_changed_scene_is_not_taken_for_one():
    frames = [IncrementalAnalysis.luma_of(f) for f in scene_frames(4)]
    for o in [(3, 1), (-4, -4), (0, 2), (6, -8)]:
        assert find_shift(shown(frames[0][..., None], o)[..., 0], frames[0], searching=True) == o
    assert find_shift(frames[1], frames[0]) == (0, 0)
    other = IncrementalAnalysis.luma_of(source_frame(320, 192, seed=9))
    assert find_shift(other, frames[0]) == (0, 0)
    assert find_shift(frames[0][:40, :40], frames[0][:40, :40]) == (0, 0)  # too small to tell


@pytest.fixture(scope="module")
def conditional(codec):
    return load_conditional(codec)


def code(codec, conditional, frames, stabilise):
    enc = PredictiveStreamEncoder(codec, conditional[0], Fraction(1, 10), 10.0, conditional[1], conditional[2],
                                  stabilise=stabilise)
    return enc, [enc.encode(f, 4.0, i) for i, f in enumerate(frames)]


def test_a_shaken_stream_costs_about_what_a_still_one_does_and_decodes_where_the_camera_looked(codec,
                                                                                                  conditional):
    frames = scene_frames()
    moved = shaken(frames)
    enc, coded = code(codec, conditional, moved, True)
    _, plain = code(codec, conditional, moved, False)
    _, still = code(codec, conditional, frames, True)
    shifts = [picture_shift(unpack(c.data)) for c in coded[1:]]
    assert shifts == SHAKE[1:] and enc.stats.shifted == sum(o != (0, 0) for o in SHAKE)
    size = [sum(len(c.data) for c in s[1:]) for s in (coded, plain, still)]
    assert size[0] < 0.7 * size[1] and size[0] < 1.1 * size[2], size
    dec = PredictiveStreamDecoder(codec, conditional[0])
    for i, (c, f, o) in enumerate(zip(coded, moved, SHAKE)):
        got = dec.decode(c.data, i, c.intra)
        assert np.array_equal(got, c.recon)
        # Where the camera looked, away from the strip it turned towards, the picture is the scene's.
        m = max(map(abs, o))
        inner = (slice(m, f.shape[0] - m), slice(m, f.shape[1] - m))
        assert psnr(got[inner], f[inner]) > 30, i


def test_a_damaged_picture_shift_is_a_format_error(codec, conditional):
    moved = shaken(scene_frames(6))
    _, coded = code(codec, conditional, moved, True)
    p = unpack(coded[4].data)
    assert p.version == PREDICTED and picture_shift(p) == (3, 1)
    for bad in (b"\x03", b"\x03\x01\x00", bytes([MAX_SHIFT + 1, 0])):
        strings = list(p.strings)
        strings[S_SHIFT] = bad
        with pytest.raises(FormatError, match="shift"):
            picture_shift(unpack(pack(p.width, p.height, p.quality, p.latent_hw, strings, p.version)))


def test_the_cli_codes_a_shaken_clip_aligned_says_so_and_can_be_told_not_to(tmp_path):
    from conftest import run_cli
    from vidsieve.datasets.video import VideoWriter

    src = tmp_path / "shaken.mkv"
    frames = shaken(scene_frames())
    writer = VideoWriter(src, 320, 192, Fraction(1, 10), Fraction(10), codec="ffv1")
    for i, f in enumerate(frames):
        writer.write(f, i)
    writer.close()
    sizes = {}
    for flags in ([], ["--no-stabilise"]):
        out = tmp_path / f"out{len(flags)}.vsv"
        run_cli("compress", src, "-o", out, "--keep-all", *flags, check=True)
        sizes[bool(flags)] = out.stat().st_size
        text = run_cli("info", out, check=True).stdout
        assert ("frames shown shifted" in text) != bool(flags), text
        assert "predicted under the conditional model vidsieve-inter" in text
    assert sizes[False] < sizes[True]
