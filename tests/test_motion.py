"""Motion in the latent domain (codec/motion.py) and its coding in predicted payloads (version 7)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from conftest import moving_patch
from vidsieve.codec.blocks import BLOCK
from vidsieve.codec.exact import GRID_BITS
from vidsieve.codec.latent_codecs import (CODE_BG, CODE_PREV, INTRA, S_MOTION, SKIP_BG, SKIP_PREV, Motion,
                                         read_motion, write_motion)
from vidsieve.codec.motion import MAX_VECTOR, compensated, predictor, shifted
from vidsieve.codec.payload import PREDICTED, pack, unpack
from vidsieve.codec.predictive import PredictiveStreamDecoder
from vidsieve.codec.predictive_encoder import PredictiveStreamEncoder
from vidsieve.codec.registry import load_conditional
from vidsieve.errors import FormatError

TB = Fraction(1, 10)


def grid_latent(shape=(1, 3, 8, 12), seed=0) -> torch.Tensor:
    """A latent on the references' fixed-point grid, as references are."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-40 << GRID_BITS, 40 << GRID_BITS, size=shape)
    return torch.from_numpy(q.astype(np.float64) / (1 << GRID_BITS))


def test_a_whole_position_shift_moves_the_latent_with_its_edges_replicated():
    y = grid_latent()
    down = shifted(y, 16, 0)  # each position reads the one below it
    assert torch.equal(down[..., :-1, :], y[..., 1:, :]) and torch.equal(down[..., -1, :], y[..., -1, :])
    left = shifted(y, 0, -32)
    assert torch.equal(left[..., 2:], y[..., :-2]) and torch.equal(left[..., 1], y[..., 0])
    assert shifted(y, 0, 0) is y


def test_a_half_position_shift_is_the_mean_rounded_onto_the_grid():
    y = grid_latent()
    half = shifted(y, 0, 8)
    q = (y * (1 << GRID_BITS)).long()
    want = torch.div(q[..., :-1] * 128 + q[..., 1:] * 128 + 128, 256, rounding_mode="floor")
    assert torch.equal((half[..., :-1] * (1 << GRID_BITS)).long(), want)
    frac = half * (1 << GRID_BITS)
    assert torch.equal(frac, frac.round()), "a moved reference stays on the grid"
    # A quarter and three quarters: weights 12/4 and 4/12 of the same two neighbours.
    q1 = (shifted(y, 4, 0)[..., :-1, :] * (1 << GRID_BITS)).long()
    assert torch.equal(q1, torch.div(q[..., :-1, :] * 192 + q[..., 1:, :] * 64 + 128, 256, rounding_mode="floor"))


def test_compensation_moves_each_block_by_its_own_vector_and_leaves_the_others():
    y = grid_latent((1, 2, 3 * BLOCK, 4 * BLOCK), seed=1)
    vectors = np.zeros((3, 4, 2), dtype=np.int64)
    vectors[1, 2] = (5, -11)
    vectors[0, 0] = (-32, 32)
    out = compensated(y, vectors)
    for r in range(3):
        for c in range(4):
            sl = (..., slice(r * BLOCK, (r + 1) * BLOCK), slice(c * BLOCK, (c + 1) * BLOCK))
            want = shifted(y, *vectors[r, c].tolist())[sl]
            assert torch.equal(out[sl], want), (r, c)
    assert compensated(y, np.zeros((3, 4, 2), dtype=np.int64)) is y


def test_the_predictor_is_the_median_of_left_top_and_top_right():
    v = np.zeros((3, 3, 2), dtype=np.int64)
    v[0, 0], v[0, 1], v[0, 2], v[1, 0] = (1, 2), (5, -3), (9, 0), (2, 2)
    assert predictor(v, 0, 1) == (1, 2)  # first row: its left neighbour
    assert predictor(v, 1, 1) == (5, 0)  # median of (2, 2), (5, -3), (9, 0)
    v[1, 1] = (7, 7)
    assert predictor(v, 1, 2) == (7, 0)  # no top-right: top-left (5, -3), top (9, 0), left (7, 7)
    assert predictor(v, 0, 0) == (0, 0)


def random_modes(grid, rng) -> np.ndarray:
    per_block = rng.choice([SKIP_PREV, CODE_PREV, SKIP_BG, CODE_BG, INTRA], size=grid)
    return np.repeat(np.repeat(per_block, BLOCK, 0), BLOCK, 1)


def test_motion_round_trips_and_sends_vectors_only_for_blocks_that_read_the_previous_latent():
    rng = np.random.default_rng(3)
    for trial in range(20):
        grid = (int(rng.integers(1, 6)), int(rng.integers(1, 8)))
        modes = random_modes(grid, rng)
        vectors = rng.integers(-MAX_VECTOR, MAX_VECTOR + 1, size=(*grid, 2))
        vectors[rng.random(grid) < 0.5] = 0
        motion = Motion(vectors, tuple(rng.integers(-MAX_VECTOR, MAX_VECTOR + 1, 2)))
        got = read_motion(write_motion(motion, modes), modes, grid)
        reads = ((modes == SKIP_PREV) | (modes == CODE_PREV)).reshape(grid[0], BLOCK, grid[1], BLOCK).any((1, 3))
        assert np.array_equal(got.vectors, np.where(reads[..., None], vectors, 0)), trial
        assert got.background == motion.background
    assert write_motion(Motion.none((2, 2)), random_modes((2, 2), rng)) == b""
    assert read_motion(b"", random_modes((2, 2), rng), (2, 2)).still
    with pytest.raises(ValueError):
        Motion(np.full((1, 1, 2), MAX_VECTOR + 1))


def test_same_vectors_everywhere_cost_a_few_bytes():
    """A camera that moved as a whole: every block's vector is its predictor after the first."""
    grid = (7, 12)
    modes = np.full((grid[0] * BLOCK, grid[1] * BLOCK), SKIP_PREV)
    data = write_motion(Motion(np.tile(np.array([3, -6]), (*grid, 1)), (3, -6)), modes)
    assert len(data) <= 12, len(data)


def test_damaged_motion_strings_give_format_errors():
    rng = np.random.default_rng(5)
    grid = (3, 4)
    modes = random_modes(grid, rng)
    modes[:BLOCK, :] = CODE_PREV
    data = write_motion(Motion(rng.integers(-8, 9, size=(*grid, 2)), (2, -1)), modes)
    for cut in range(len(data)):
        try:
            read_motion(data[:cut], modes, grid)
        except FormatError:
            pass
    for _ in range(200):
        bad = bytearray(data)
        bad[int(rng.integers(len(bad)))] ^= int(rng.integers(1, 256))
        try:
            got = read_motion(bytes(bad), modes, grid)
        except FormatError:
            continue
        assert np.abs(got.vectors).max() <= MAX_VECTOR and max(map(abs, got.background)) <= MAX_VECTOR


@pytest.fixture(scope="module")
def conditional(codec):
    found = load_conditional(codec)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def coded(codec, conditional):
    """A patch crossing a scene, coded with motion: the payloads and the encoder's pictures."""
    enc = PredictiveStreamEncoder(codec, conditional[0], TB, 10.0, conditional[1], conditional[2], motion=True)
    return [enc.encode(f, 4.0, i) for i, f in enumerate(moving_patch(8))]


def test_an_encoder_with_motion_sends_vectors_and_its_decoder_follows(codec, conditional, coded):
    versions = [unpack(e.data).version for e in coded[1:]]
    assert set(versions) == {PREDICTED}
    moving = 0
    for e in coded[1:]:
        p = unpack(e.data)
        if p.strings[S_MOTION]:
            moving += 1
    assert moving >= len(coded) // 2, "the patch's blocks take vectors"
    dec = PredictiveStreamDecoder(codec, conditional[0])
    for i, e in enumerate(coded):
        pic = dec.decode(e.data, i)  # a check value per frame: the decoder's latents are the encoder's
        assert np.abs(pic.astype(int) - e.recon.astype(int)).max() <= 1


def test_a_damaged_motion_string_stops_at_its_frame(codec, conditional, coded):
    """Damage that changes the motion changes the latents, which the frame's check value catches; damage
    that leaves it as it was (a frequency the symbols do not depend on) decodes the same picture."""
    rng = np.random.default_rng(7)
    k = next(i for i, e in enumerate(coded) if i and unpack(e.data).strings[S_MOTION])
    errors = 0
    for _ in range(12):
        dec = PredictiveStreamDecoder(codec, conditional[0])
        for i in range(k):
            dec.decode(coded[i].data, i)
        p = unpack(coded[k].data)
        bad = bytearray(p.strings[S_MOTION])
        bad[int(rng.integers(len(bad)))] ^= int(rng.integers(1, 256))
        strings = list(p.strings)
        strings[S_MOTION] = bytes(bad)
        try:
            pic = dec.decode(pack(p.width, p.height, p.quality, p.latent_hw, strings, p.version), k)
        except FormatError:
            errors += 1
            continue
        assert np.abs(pic.astype(int) - coded[k].recon.astype(int)).max() <= 1
    assert errors >= 6


def test_without_motion_the_encoder_writes_no_vectors(codec, conditional):
    enc = PredictiveStreamEncoder(codec, conditional[0], TB, 10.0, conditional[1], conditional[2])
    for i, f in enumerate(moving_patch(4)):
        p = unpack(enc.encode(f, 4.0, i).data)
        assert i == 0 or p.strings[S_MOTION] == b""
