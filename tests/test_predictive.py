"""Predicted frames: streams coded against the latents the decoder holds (codec/predictive.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli, source_frame
from vidsieve.codec.entropy import SymbolReader, SymbolWriter, decode_symbols, encode_symbols
from vidsieve.codec.blocks import BLOCK
from vidsieve.codec.latent_codecs import (CODE_BG, CODE_PREV, INTRA, MODES, SKIP_BG, SKIP_PREV, block_modes,
                                         read_modes, toward_zero, write_modes)
from vidsieve.codec.payload import INTRA_EXACT, PREDICTED, PREDICTED_MOTION, PREDICTED_QUADTREE, pack, unpack
from vidsieve.codec.pixels import pad, to_tensor
from vidsieve.codec.predictive import PredictiveStreamDecoder
from vidsieve.codec.models import QUALITY_MAX, QUALITY_MIN
from vidsieve.codec.predictive_encoder import (BOOST_KNEE, INTRA_BOOST, INTRA_BOOST_MIN, PredictiveStreamEncoder,
                                               boxes_to_blocks, choose_modes, coded_qualities,
                                               quadtree_modes)
from vidsieve.codec.registry import load_conditional
from vidsieve.datasets.synthetic import Mover, Scene, render, write_scene
from vidsieve.errors import FormatError
from vidsieve.metrics import psnr

TB = Fraction(1, 10)


@pytest.fixture(scope="module")
def conditional(codec):
    found = load_conditional(codec)
    assert found is not None, "the default codec ships with a conditional entropy model"
    return found


def scene_frames(frames=24, **kw):
    scene = Scene(width=192, height=128, frames=frames, noise=1.0,
                  movers=[Mover(6, 14, (450, 140), 0.5)], **kw)
    return [rgb for _, rgb in render(scene)]


def code(codec, conditional, frames, qualities=None, intra_period=10.0, boxes=None, **kw):
    enc = PredictiveStreamEncoder(codec, conditional[0], TB, intra_period, conditional[1], conditional[2], **kw)
    out = []
    for i, f in enumerate(frames):
        q = 4.0 if qualities is None else qualities[i]
        out.append(enc.encode(f, q, i, boxes=None if boxes is None else boxes[i]))
    return enc, out


def test_symbols_round_trip_and_refuse_damage():
    for sym in ([0] * 50, [0, 1, 3, 3, 2, 0, 1], list(range(4)) * 9, []):
        data = encode_symbols(np.array(sym, int), 4)
        assert decode_symbols(data, len(sym), 4).tolist() == sym
    assert len(encode_symbols(np.zeros(84, int), 4)) == 4  # one value throughout: its frequencies alone
    with pytest.raises(FormatError):
        decode_symbols(b"\x00\x00", 3, 4)
    with pytest.raises(ValueError):
        encode_symbols(np.array([4]), 4)


def test_symbol_groups_round_trip_in_one_string_and_refuse_damage():
    rng = np.random.default_rng(0)
    groups = [(rng.integers(0, 2, 40), 2), (np.zeros(0, int), 2), (np.full(7, 3), 5), (rng.integers(0, 5, 300), 5)]
    w = SymbolWriter()
    for sym, alphabet in groups:
        w.add(sym, alphabet)
    data = w.finish()
    r = SymbolReader(data, 400)
    for sym, alphabet in groups:
        assert r.read(len(sym), alphabet).tolist() == list(sym)
    r.done()
    assert SymbolWriter().finish() == b""
    w = SymbolWriter()
    w.add(np.zeros(84, int), 5)
    assert len(w.finish()) == 6  # one value throughout: a varint and its frequencies, no rANS stream
    with pytest.raises(FormatError):  # asks for more groups than were written
        r = SymbolReader(data, 400)
        for sym, alphabet in groups + groups:
            r.read(len(sym), alphabet)
    with pytest.raises(FormatError):  # asks for more symbols than its bound
        SymbolReader(data, 10).read(40, 2)
    with pytest.raises(FormatError):  # a group left unread
        r = SymbolReader(data, 400)
        r.read(40, 2)
        r.done()
    rng = np.random.default_rng(1)
    for _ in range(200):  # damaged strings read garbage or refuse; they never read past their end
        bad = bytearray(data)
        bad[rng.integers(len(bad))] ^= 1 << int(rng.integers(8))
        try:
            r = SymbolReader(bytes(bad[: rng.integers(1, len(bad) + 1)]), 400)
            for sym, alphabet in groups:
                r.read(len(sym), alphabet)
        except FormatError:
            pass


def test_mode_quadtree_round_trips_and_is_as_small_as_the_map_allows():
    rng = np.random.default_rng(2)
    grid = (3, 5)
    updates = rng.integers(0, 2, grid).astype(bool)
    whole = np.repeat(np.repeat(rng.integers(0, MODES, grid), 4, 0), 4, 1)
    fine = whole.copy()
    fine[4:6, 8:10] = INTRA  # a 32-pixel quarter of block (1, 2)
    fine[9, 17] = CODE_BG  # a 16-pixel cell of block (2, 4)
    for modes in (whole, fine, rng.integers(0, MODES, (12, 20))):
        got, upd = read_modes(write_modes(modes, updates), grid)
        assert np.array_equal(got, modes) and np.array_equal(upd, updates)
    assert len(write_modes(np.zeros((12, 20), int), updates)) < len(write_modes(fine, updates))
    with pytest.raises(FormatError):
        read_modes(b"", grid)  # a predicted frame always has modes


def test_quadtree_decision_splits_only_where_it_pays():
    H, W = 8, 8
    costs = torch.full((MODES, H, W), 100.0)
    costs[SKIP_PREV] = 0.0  # copying is free everywhere ...
    costs[SKIP_PREV, 0, 1] = 1000.0  # ... but one 16-pixel cell, which codes its difference for 10 bits
    costs[CODE_PREV, 0, 1] = 10.0
    costs[INTRA, 4:8, 4:8] = -500.0  # a whole 64-pixel block far cheaper alone
    modes, block_costs = quadtree_modes(costs, 1)
    want = torch.full((H, W), SKIP_PREV)
    want[0, 1] = CODE_PREV
    want[4:8, 4:8] = INTRA
    assert torch.equal(modes, want) and block_costs.shape == (2, 2)
    assert torch.equal(quadtree_modes(costs, 2)[0][0:2, 0:2], torch.full((2, 2), CODE_PREV))  # 32 px at finest
    assert bool((quadtree_modes(costs, 4)[0][0:4, 0:4] == SKIP_PREV).all())  # whole blocks: copying still pays
    costs[SKIP_PREV, 0, 1] = 0.5  # a split costs more than what a cell gains: one mode for the block
    assert bool((quadtree_modes(costs, 1)[0][0:4, 0:4] == SKIP_PREV).all())


def test_a_hyper_latent_is_charged_once_a_block_however_many_cells_read_it():
    costs = torch.full((MODES, 4, 8), 50.0)
    costs[SKIP_PREV] = 0.0
    costs[SKIP_PREV, :, 4:] = 30.0  # the right block: copying costs 30 a cell, coding alone 10
    costs[INTRA, :, 4:] = 10.0
    costs[SKIP_PREV, 0, 0] = 60.0  # the left block: one cell that coding alone would save 50 on
    costs[INTRA, 0, 0] = 10.0
    zero = torch.zeros(1, 2)

    def alone(hyper):
        return (choose_modes(costs, {"alone": hyper, "difference": zero + 1e9}, 1) == INTRA).reshape(4, 2, 4).any((0, 2))

    # Charged 100 a block: the right block pays it once for 16 cells (320 saved), the left one cell does not.
    assert alone(torch.tensor([[100.0, 100.0]])).tolist() == [False, True]
    assert alone(torch.tensor([[20.0, 20.0]])).tolist() == [True, True]
    assert alone(torch.tensor([[1e4, 1e4]])).tolist() == [False, False]


def test_varint_payload_lengths_round_trip_and_refuse_damage():
    strings = [b"", b"x" * 127, b"y" * 128, b"z" * 70000]
    data = pack(64, 64, 4.0, (1, 1), strings, PREDICTED)
    assert unpack(data).strings == strings
    assert len(data) - sum(map(len, strings)) < len(pack(64, 64, 4.0, (1, 1), strings, 5)) - sum(map(len, strings))
    for cut in (15, 17, len(data) - 1):
        with pytest.raises(FormatError):
            unpack(data[:cut])
    with pytest.raises(FormatError):
        unpack(data[:14] + b"\xff" * 8 + data[22:])


def test_stream_round_trip_is_exact_and_cheap_where_nothing_moves(codec, conditional):
    frames = scene_frames()
    enc, coded = code(codec, conditional, frames)
    dec = PredictiveStreamDecoder(codec, conditional[0])
    versions = [unpack(c.data).version for c in coded]
    assert versions[0] == INTRA_EXACT and set(versions[1:]) == {PREDICTED}
    for i, c in enumerate(coded):
        out = dec.decode(c.data, i, c.intra)
        assert np.array_equal(out, c.recon), i  # the encoder knows what the decoder shows
        assert psnr(frames[i], out) > 30
    sizes = [len(c.data) for c in coded]
    # Before the object enters (frames 1-5) a predicted frame costs its header and block modes: under a
    # tenth of the intra frame even at this small size (192 x 128: six blocks).
    assert max(sizes[1:6]) < 0.1 * sizes[0], sizes
    # While it crosses, blocks are coded (against a reference, or alone where it brings new content).
    moving = [block_modes(c.data) for c in coded[7:13]]
    assert all(((m == CODE_PREV) | (m == CODE_BG) | (m == INTRA)).any() for m in moving)
    assert enc.stats.predicted == len(frames) - 1 and 0 < enc.stats.skipped < enc.stats.blocks


def test_small_symbols_go_to_zero_only_where_the_bits_outweigh_the_distortion():
    r = torch.tensor([0.55, 0.55, 0.55, 1.52, -0.6, 0.2, 3.4], dtype=torch.float64)
    sym = torch.round(r)
    scales = torch.tensor([0.3, 0.3, 8.0, 0.3, 0.3, 0.3, 0.3], dtype=torch.float64)
    cost = torch.tensor([0.1, 100.0, 1.0, 0.1, 0.1, 0.1, 0.1], dtype=torch.float64)
    out = toward_zero(r, sym, scales, cost)
    # A 1 under a narrow distribution costs many bits and 0.01 bits of distortion to zero: zeroed; the same 1
    # where distortion is dear, or under a wide distribution (a 1 costs about what a 0 does), stays. Symbols
    # move one step at most (a 2 at 1.52 to 1, a 3 to 2); a 0 never moves.
    assert out.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 2.0]
    assert toward_zero(r, sym, scales, torch.zeros_like(cost)).tolist() == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0]


def test_rdoq_spends_fewer_bits_and_the_decoder_follows(codec, conditional):
    frames = scene_frames(frames=14)
    plain = code(codec, conditional, frames, rdoq=False)[1]
    enc, coded = code(codec, conditional, frames, rdoq=True)
    assert sum(len(c.data) for c in coded[1:]) < sum(len(c.data) for c in plain[1:])
    dec = PredictiveStreamDecoder(codec, conditional[0])
    for i, c in enumerate(coded):
        out = dec.decode(c.data, i, c.intra)
        assert np.array_equal(out, c.recon) and psnr(frames[i], out) > 30, i


def test_uncovered_background_is_predicted_from_the_background_latent(codec, conditional):
    """After the object leaves, the blocks it covered are predicted from (or copied off) the background
    latent, which holds the scene from before it came: cheaper than from the previous frame."""
    frames = scene_frames(frames=22)
    grid = (128 // 64, 192 // 64)
    enc, coded = code(codec, conditional, frames)
    late = [block_modes(c.data) for c in coded[9:14]]  # the object crosses frames 6 to 13
    assert any(((m == SKIP_BG) | (m == CODE_BG)).any() for m in late)
    assert boxes_to_blocks([(70, 10, 90, 40)], grid).tolist() == [[True, True, False], [False, False, False]]


def test_quality_changes_without_an_intra_frame(codec, conditional):
    frames = scene_frames(frames=8)
    qs = [4.0, 4.0, 4.0, 6.5, 6.5, 2.0, 2.0, 2.0]
    _, coded = code(codec, conditional, frames, qs)
    dec = PredictiveStreamDecoder(codec, conditional[0])
    assert [unpack(c.data).version for c in coded].count(INTRA_EXACT) == 1
    for i, c in enumerate(coded):
        # The intra frame, which the others copy from for seconds, gets more quality than they do.
        want = coded_qualities(qs[i]).referenced if i == 0 else coded_qualities(qs[i]).predicted
        assert unpack(c.data).quality == np.float32(want)
        assert np.array_equal(dec.decode(c.data, i, c.intra), c.recon)


def test_coded_qualities_rise_with_the_asked_one_and_keep_a_boost():
    asked = np.linspace(QUALITY_MIN, QUALITY_MAX, 141)
    qs = [coded_qualities(q) for q in asked]
    for field in ("referenced", "predicted", "alone"):
        v = np.array([getattr(q, field) for q in qs])
        assert (np.diff(v) > 0).all(), field  # no two asked qualities code alike
        assert v.min() >= QUALITY_MIN and v.max() <= QUALITY_MAX
    assert [q.alone for q in qs] == pytest.approx(asked)  # a frame nothing refers to: what was asked
    boost = np.array([q.referenced - q.predicted for q in qs])
    assert (boost >= INTRA_BOOST_MIN - 1e-12).all() and (boost <= INTRA_BOOST + 1e-12).all()
    low = asked <= BOOST_KNEE
    assert boost[low] == pytest.approx(INTRA_BOOST) and [q.predicted for q in qs if q.alone <= BOOST_KNEE] == \
        pytest.approx(asked[low])
    assert coded_qualities(QUALITY_MAX).referenced == QUALITY_MAX
    with pytest.raises(ValueError, match="quality must be"):
        coded_qualities(QUALITY_MAX + 0.5)


def test_an_intra_frame_nothing_refers_to_is_not_boosted(codec, conditional):
    frame = scene_frames(frames=1)[0]
    enc = PredictiveStreamEncoder(codec, conditional[0], TB)
    lone = enc.encode(frame, 6.0, 0, referenced=False)
    enc.reset()
    referred = enc.encode(frame, 6.0, 0)
    assert unpack(lone.data).quality == 6.0 and unpack(referred.data).quality == np.float32(coded_qualities(6.0).referenced)
    assert len(lone.data) < len(referred.data) and psnr(frame, lone.recon) < psnr(frame, referred.recon)
    assert np.array_equal(PredictiveStreamDecoder(codec, conditional[0]).decode(lone.data, 0), lone.recon)


def test_intra_period_and_damage(codec, conditional):
    frames = scene_frames(frames=12)
    _, coded = code(codec, conditional, frames, intra_period=0.5)  # every 5 frames at 10 fps
    assert [c.intra for c in coded] == [i % 5 == 0 for i in range(12)]
    dec = PredictiveStreamDecoder(codec, conditional[0])
    with pytest.raises(FormatError, match="no reference"):
        dec.decode(coded[1].data, 1, False)
    bad = bytearray(coded[2].data)
    bad[-3] ^= 0xFF
    dec.decode(coded[0].data, 0)
    try:
        dec.decode(bytes(bad), 2, False)  # damage inside the coded difference: wrong pixels or a clear error
    except FormatError:
        pass
    dec.reset()
    assert np.array_equal(dec.decode(coded[5].data, 5), coded[5].recon)  # back in step at the next intra frame


@pytest.mark.parametrize("name, version", [("quadtree-keepall-q4.vsv", PREDICTED_QUADTREE),
                                           ("motion-keepall-q4.vsv", PREDICTED_MOTION),
                                           ("context-shaken-q4.vsv", PREDICTED)])
def test_damaged_predicted_payloads_decode_or_fail_in_one_line(codec, name, version):
    """Flipped bits and cut ends anywhere in a version 6, 7 or 8 frame (modes and splits, motion, hyper
    latents sent in part, symbols of either checkerboard pass, check value): a picture or a
    :class:`FormatError`, never another exception."""
    from vidsieve.container import ContainerReader, FrameRecord

    with ContainerReader(Path(__file__).parent / "golden" / name) as reader:
        recs = [r for r in reader.records() if isinstance(r, FrameRecord)]
        conditional = load_conditional(codec, reader.header.stream["conditional"])
    assert {unpack(r.payload).version for r in recs if not r.intra} == {version}
    rng = np.random.default_rng(7)
    errors = 0
    for trial in range(24):
        i = int(rng.integers(1, len(recs)))
        while recs[i].intra:
            i -= 1
        if i == 0:
            continue
        start = max(k for k in range(i) if recs[k].intra)
        dec = PredictiveStreamDecoder(codec, conditional[0])
        for r in recs[start:i]:
            dec.decode(r.payload, r.pts, r.intra)
        bad = bytearray(recs[i].payload)
        if trial % 3 == 0:
            bad = bad[: int(rng.integers(1, len(bad)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                bad[int(rng.integers(14, len(bad)))] ^= 1 << int(rng.integers(8))
        try:
            dec.decode(bytes(bad), recs[i].pts, False)
        except FormatError:
            errors += 1
    assert errors > 0  # the check value catches what the rest lets through


_DECODE_IN_A_PROCESS = r"""
import hashlib, sys
import numpy as np
from vidsieve.codec.registry import load_codec, load_conditional
from vidsieve.codec.predictive import PredictiveStreamDecoder
codec = load_codec()
dec = PredictiveStreamDecoder(codec, load_conditional(codec)[0])
h = hashlib.sha256()
for i, path in enumerate(sys.argv[1:]):
    out = dec.decode(open(path, "rb").read(), i)
    h.update(dec.latent.numpy().tobytes())
print(h.hexdigest())
"""


def test_references_are_the_same_with_any_thread_count(tmp_path, codec, conditional):
    """The latents predicted frames refer to are exact: decoders with 1 and 3 threads hold the same bits
    as the encoder (a float path anywhere in the entropy model would make them drift apart)."""
    frames = scene_frames(frames=8)
    enc, coded = code(codec, conditional, frames)
    paths = []
    for i, c in enumerate(coded):
        paths.append(tmp_path / f"{i}.bin")
        paths[-1].write_bytes(c.data)
    want = hashlib.sha256()
    dec = PredictiveStreamDecoder(codec, conditional[0])
    for i, c in enumerate(coded):
        dec.decode(c.data, i)
        want.update(dec.latent.numpy().tobytes())
    assert torch.equal(dec.latent, enc.refs.prev)
    for threads in (1, 3):
        env = dict(os.environ, VIDSIEVE_THREADS=str(threads), PYTHONWARNINGS="ignore")
        got = subprocess.run([sys.executable, "-c", _DECODE_IN_A_PROCESS, *map(str, paths)], env=env, check=True,
                             capture_output=True, text=True, timeout=300).stdout.strip()
        assert got == want.hexdigest(), threads


def test_files_with_predicted_frames_seek_recover_and_report(tmp_path):
    scene = Scene(width=160, height=96, frames=30, noise=1.0, movers=[Mover(5, 25, (450, 150), 0.5)])
    src = write_scene(scene, tmp_path / "s.mkv")
    out = tmp_path / "s.vsv"
    run_cli("compress", src, "-o", out, "--keep-all", "--intra-period", "1", check=True)
    import json

    d = json.loads(run_cli("info", out, "--json", check=True).stdout)
    assert d["stream"] == "predictive" and d["gop"]["intra"] == 3 and d["gop"]["predicted"] == 27
    assert d["index_entries"] == 3 and d["gop"]["skipped_block_share"] is not None
    text = run_cli("info", out, check=True).stdout
    assert "3 intra frames" in text
    # Damage one predicted frame: --recover holds the picture until the next intra frame, keeps the count.
    from vidsieve.container import ContainerReader, FrameRecord

    with ContainerReader(out) as r:
        recs = [x for x in r.records() if isinstance(x, FrameRecord)]
    victim = recs[4]
    blob = bytearray(out.read_bytes())
    blob[victim.offset + 30] ^= 0xFF
    bad = tmp_path / "bad.vsv"
    bad.write_bytes(bytes(blob))
    assert run_cli("decompress", bad, "-o", tmp_path / "x.mkv").returncode != 0
    r = run_cli("decompress", bad, "-o", f"{tmp_path}/frames/", "--recover", check=True)
    rows = (tmp_path / "frames" / "timestamps.csv").read_text().splitlines()[1:]
    assert len(rows) == 29  # the damaged frame's record is gone; every other frame is there
    ok = tmp_path / "ok"
    run_cli("decompress", out, "-o", f"{ok}/", "--lossless", check=True)
    import cv2

    a = cv2.imread(str(tmp_path / "frames" / "frame_000009.png"))  # pts 10: the next intra frame
    b = cv2.imread(str(ok / "frame_000010.png"))
    assert np.array_equal(a, b)
    # Seeking: a stretch from 1.5 s decodes from the intra frame at 1 s and gives the same pictures.
    run_cli("decompress", out, "-o", f"{tmp_path}/cut/", "--start", "1.5", "--duration", "1", check=True)
    rows = (tmp_path / "cut" / "timestamps.csv").read_text().splitlines()[1:]
    assert len(rows) == 10 and rows[0].endswith(",1.500000")
    for i in range(10):
        assert np.array_equal(cv2.imread(str(tmp_path / "cut" / f"frame_{i:06d}.png")),
                              cv2.imread(str(ok / f"frame_{15 + i:06d}.png")))


def test_only_changed_tiles_are_synthesised_and_match_the_whole_frame(codec):
    """Tiles around the changed blocks, computed with the synthesis's margin, give what synthesising the
    whole frame gives (to float rounding in the last level of a few pixels), and nothing else moves."""
    from vidsieve.codec.blocks import tiles
    from vidsieve.codec.incremental import Picture
    from vidsieve.codec.pixels import pad, to_tensor, to_uint8
    from vidsieve.codec.quality_map import QualityMap

    assert tiles(np.array([[0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]], bool)) == [(0, 1, 1, 2), (1, 2, 5, 6)]
    assert tiles(np.array([[1, 0, 1]], bool)) == [(0, 1, 0, 3)]  # a one-block gap joins
    m = codec.model
    frame = scene_frames(frames=1)[0]
    h, w = 100, 300
    big = np.ascontiguousarray(np.tile(frame, (1, 2, 1))[:h, :w])
    y = torch.round(m.gained_latent(pad(to_tensor(big)), [4.0])).double()
    pic = Picture()
    first = pic.synthesise(m, y, QualityMap(4.0), h, w)
    y2 = y.clone()
    y2[..., 0:4, 8:12] += 3.0  # one block (rows 0-63, columns 128-191) changes
    tiled = pic.synthesise(m, y2, QualityMap(4.0), h, w)
    whole = to_uint8(m.synthesis(y2.float(), 4.0), h, w)
    diff = np.abs(tiled.astype(int) - whole)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001
    assert np.array_equal(tiled[:, :64], first[:, :64]) and np.array_equal(tiled[:, 256:], first[:, 256:])
    assert not np.array_equal(tiled[:64, 128:192], first[:64, 128:192])


def test_entropy_parameters_computed_in_windows_are_the_whole_frames(codec, conditional):
    """The exact nets' spans say what an output reads: inputs outside a block's span leave it alone, one
    at its edge moves it. A window of the output, computed with just the positions its layers read, is
    the whole frame's there, bit for bit, wherever it lies (corners, edges, inside, one position wide)."""
    from vidsieve.codec.fixed_point import exact_in_blocks
    from vidsieve.codec.latent_codecs import conditional_in_blocks

    m = codec.model
    net, exact = m.exact_hyper_synthesis(), conditional[0].exact()
    assert net.windowed and exact.windowed
    frame = source_frame(640, 384, seed=3)
    with torch.inference_mode():
        y = m.gained_latent(pad(to_tensor(frame)), [4.0])
        z_hat = torch.round(m.h_a(y))
        ref = torch.round(m.gained_latent(pad(to_tensor(source_frame(640, 384, seed=4))), [4.0])).double()
        cz = torch.round(conditional[0].h_a((y - ref).float()))  # the difference's hyper latent
        hb, wb = z_hat.shape[-2:]
        assert (hb, wb) == (6, 10) == tuple(cz.shape[-2:])
        whole_intra = net(z_hat, exact_means=True)
        whole_cond = exact(cz, ref)

        # Block (2, 3), latent rows 8-11 and columns 12-15: what it reads, and nothing beyond.
        rows, cols = net.span(8, 11, 0), net.span(12, 15, 1)
        assert rows[0] < 2 and rows[1] > 2 and cols[0] < 3 and cols[1] > 3  # its neighbours, at least
        block = (slice(8, 12), slice(12, 16))
        far = z_hat.clone()
        far[..., :, cols[1] + 1 :] += 2.0
        far[..., : rows[0], :] -= 2.0
        at_block = (..., block[0], block[1])
        assert torch.equal(net(far, exact_means=True)[0][at_block], whole_intra[0][at_block])
        edge = z_hat.clone()
        edge[..., 2, cols[1]] += 2.0
        assert not torch.equal(net(edge, exact_means=True)[0][at_block], whole_intra[0][at_block])
        (_, ref_rows), (z_cols, _) = exact.spans(8, 11, 0), exact.spans(12, 15, 1)
        far_z, far_ref = cz.clone(), ref.clone()
        far_z[..., :, z_cols[1] + 1 :] += 2.0
        far_ref[..., ref_rows[1] + 1 :, :] += 3.0
        for got, want in zip(exact(far_z, far_ref), whole_cond):
            assert torch.equal(got[at_block], want[at_block])

        H, W = ref.shape[-2:]
        windows = [((0, 4), (0, 4)), ((20, 24), (16, 24)), ((8, 16), (36, 40)), ((9, 10), (17, 18)), ((0, H), (0, W))]
        for window in windows:
            (r0, r1), (c0, c1) = window
            for got, want in zip(net(z_hat, exact_means=True, window=window), whole_intra):
                assert torch.equal(got, want[..., r0:r1, c0:c1]), window
            for got, want in zip(exact(cz, ref, window=window), whole_cond):
                assert torch.equal(got, want[..., r0:r1, c0:c1]), window

        needed = np.zeros((hb, wb), bool)
        needed[0, 0] = needed[5, 4:6] = needed[2, 9] = True
        sel = torch.from_numpy(needed).repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)
        for got, want in zip(conditional_in_blocks(exact, needed, cz, ref), whole_cond):
            assert torch.equal(got[..., sel], want[..., sel]) and not got[..., ~sel].any()
        for got, want in zip(exact_in_blocks(needed, lambda w: net(z_hat, exact_means=True, window=w)), whole_intra):
            assert torch.equal(got[..., sel], want[..., sel]) and not got[..., ~sel].any()


def test_hyper_latents_sent_where_read_give_the_whole_frames_parameters(codec, conditional):
    """Version 6 sends a hyper latent only where the blocks that use it read it: decoded, the rest is
    zero, and the entropy parameters at those blocks are those of the whole hyper latent, bit for bit,
    however sparse or dense the blocks (windows or the whole frame)."""
    from vidsieve.codec.fixed_point import exact_in_blocks
    from vidsieve.codec.latent_codecs import (IntraBlocks, code_hyper, conditional_in_blocks, conditional_reads,
                                              decode_hyper)

    m, cond = codec.model, conditional[0]
    net, exact = m.exact_hyper_synthesis(), cond.exact()
    with torch.inference_mode():
        y = m.gained_latent(pad(to_tensor(source_frame(640, 384, seed=5))), [4.0]).double()
        ref = torch.round(m.gained_latent(pad(to_tensor(source_frame(640, 384, seed=6))), [4.0])).double()
        z, cz = m.h_a(y.float()), cond.h_a((y - ref).float())
        z_whole = m.entropy_bottleneck.decompress(m.entropy_bottleneck.compress(z), tuple(z.shape[-2:]))
        cz_whole = cond.entropy_bottleneck.decompress(cond.entropy_bottleneck.compress(cz), tuple(cz.shape[-2:]))
        grid = tuple(z.shape[-2:])
        sparse = np.zeros(grid, bool)
        sparse[0, 0] = sparse[3, 6] = True
        dense = np.ones(grid, bool)
        dense[1, 1] = False
        for needed in (sparse, dense):
            sel = torch.from_numpy(needed).repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)
            read = IntraBlocks.reads(m, needed)
            assert read[needed].all() and (needed is dense or not read.all())
            string, z_hat = code_hyper(m.entropy_bottleneck, z, read)
            assert torch.equal(z_hat, decode_hyper(m.entropy_bottleneck, string, read))
            assert torch.equal(z_hat[..., torch.from_numpy(read)], z_whole[..., torch.from_numpy(read)])
            assert not z_hat[..., ~torch.from_numpy(read)].any()
            got = exact_in_blocks(needed, lambda w: net(z_hat, exact_means=True, window=w))
            for g, want in zip(got, net(z_whole, exact_means=True)):
                assert torch.equal(g[..., sel], want[..., sel])
            cread = conditional_reads(exact, needed, tuple(y.shape[-2:]))
            cstring, cz_hat = code_hyper(cond.entropy_bottleneck, cz, cread)
            assert torch.equal(cz_hat, decode_hyper(cond.entropy_bottleneck, cstring, cread))
            for g, want in zip(conditional_in_blocks(exact, needed, cz_hat, ref), exact(cz_whole, ref)):
                assert torch.equal(g[..., sel], want[..., sel])
        read = IntraBlocks.reads(m, sparse)
        assert read.sum() == 9 + 25  # a corner block's reach, and an inner one's
        assert len(code_hyper(m.entropy_bottleneck, z, read)[0]) < len(m.entropy_bottleneck.compress(z)[0])


def test_streams_are_the_same_whether_entropy_parameters_run_in_windows_or_whole_frames(codec, conditional,
                                                                                       monkeypatch):
    """A scene where few blocks change (what windows are for): the payloads are byte for byte those of
    computing every frame's entropy parameters whole, and decode to the encoder's latents."""
    import vidsieve.codec.fixed_point as fixed_point

    scene = Scene(width=640, height=384, frames=9, noise=1.0, movers=[Mover(2, 8, (120, 80), 0.3)])
    frames = [rgb for _, rgb in render(scene)]
    enc, windowed = code(codec, conditional, frames)
    # Sparse (windows, not the frame), with blocks that use an entropy model: coded against a reference or
    # alone (which the encoder picks depends on its estimates; both nets' windows are checked bit for bit
    # in test_hyper_latents_sent_where_read_give_the_whole_frames_parameters).
    assert enc.stats.skipped < enc.stats.blocks and enc.stats.skipped > enc.stats.blocks // 2
    dec = PredictiveStreamDecoder(codec, conditional[0])
    for i, c in enumerate(windowed):
        dec.decode(c.data, i, c.intra)
        assert np.array_equal(dec.picture.rgb, c.recon)
    with monkeypatch.context() as mp:
        mp.setattr(fixed_point, "WINDOWS_MAX_SHARE", -1.0)  # every frame whole
        _, whole = code(codec, conditional, frames)
    assert [c.data for c in windowed] == [c.data for c in whole]
