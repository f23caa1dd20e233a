"""Old files keep decoding: committed frame payloads and ``.vsv`` streams, checked against committed checksums.

The latent's integer symbols a payload decodes to are exact on every machine (the entropy model
that reads them is computed in fixed point), so their checksum must match to the bit. Pixels
come from the float synthesis,
which may round differently on another processor: they must match the committed pictures
but for a rare one-level difference. ``tests/golden/make.py`` wrote these once; a failure
here means a change altered what existing files mean.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import latent_sha256, source_frame, symbols_sha256
from vidsieve.codec.registry import load_codec

GOLDEN = Path(__file__).resolve().parent / "golden"
DOC = json.loads((GOLDEN / "golden.json").read_text())


@pytest.fixture(scope="module")
def codecs():
    cache = {}
    return lambda name: cache.setdefault(name, load_codec(name))


def assert_same_picture(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.995, (diff.max(), (diff == 0).mean())


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]


def exact_sums(reader, codec) -> list[str]:
    """Per coded frame of a stream, the checksum of what is exact on every machine: the latent each
    frame leaves for the next to refer to (predicted streams), or its symbols (intra-only streams)."""
    from vidsieve.codec.registry import stream_decoder
    from vidsieve.container import FrameRecord

    decoder = stream_decoder(codec, reader.header.stream)
    sums = []
    for rec in reader.records():
        if isinstance(rec, FrameRecord):
            decoder.decode(rec.payload, rec.pts, rec.intra)
            sums.append(latent_sha256(decoder.latent) if reader.header.stream
                        else symbols_sha256(codec.decode_symbols(rec.payload)))
    return sums


@pytest.mark.parametrize("name", sorted(DOC["frames"]))
def test_golden_frame_payload_decodes_as_committed(codecs, name):
    g = DOC["frames"][name]
    data = (GOLDEN / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == g["payload_sha256"], "the committed golden file itself changed"
    codec = codecs(g["model"])
    assert codec.weights_sha256 == g["weights_sha256"], "the shipped weights changed: old files name the old ones"
    assert symbols_sha256(codec.decode_symbols(data)) == g["symbols_sha256"]
    assert_same_picture(codec.decode(data), read_png(GOLDEN / name.replace(".bin", ".png")))


@pytest.mark.parametrize("name", sorted(DOC["frames"]))
def test_encoder_still_writes_the_golden_payload(codecs, name):
    """The encoder's analysis is float, so on another processor a rare latent value may round the other
    way; on the machine that wrote the goldens the payload is identical, elsewhere nearly all of it."""
    g = DOC["frames"][name]
    codec = codecs(g["model"])
    data = codec.encode(source_frame(g["width"], g["height"], g["seed"]), g["quality"])
    want = codec.decode_symbols((GOLDEN / name).read_bytes())
    got = codec.decode_symbols(data)
    assert got.shape == want.shape
    assert (got == want).float().mean() >= 0.99
    assert abs(len(data) - (GOLDEN / name).stat().st_size) <= 0.03 * len(data)


@pytest.mark.parametrize("name", sorted(DOC["streams"]))
def test_golden_stream_decodes_as_committed(codecs, name):
    """Intra-only streams: each frame's symbols; predicted streams: the exact latent each frame leaves
    for the next to refer to; both: the pictures, and dropped frames showing the last decoded one."""
    from vidsieve.container import ContainerReader
    from vidsieve.pipeline import iter_decoded

    g = DOC["streams"][name]
    path = GOLDEN / name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == g["file_sha256"], "the committed golden file changed"
    pictures = np.load(GOLDEN / f"{name}.decoded.npz")
    with ContainerReader(path) as reader:
        codec = codecs(reader.header.model)
        assert codec.weights_sha256 == reader.header.weights_sha256
        decoded = list(iter_decoded(reader, codec))
        sums = exact_sums(reader, codec)
    assert [(d.pts, d.kept) for d in decoded] == [(f["pts"], f["kept"]) for f in g["frames"]]
    assert sums == [f.get("latent_sha256", f.get("symbols_sha256")) for f in g["frames"] if f["kept"]]
    last = None
    for d in decoded:
        if d.kept:
            last = pictures[f"pts{d.pts}"]
        assert_same_picture(d.rgb, last)  # a dropped frame shows the last kept one


@pytest.mark.parametrize("name, version", [("predicted-motion-roi.vsv", 4), ("exact-motion-roi.vsv", 5),
                                           ("quadtree-motion-roi.vsv", 6), ("lookahead-keepall-q4.vsv", 7)])
def test_the_quality_map_goldens_have_maps_in_predicted_frames(name, version):
    """What makes the -roi goldens and the look-ahead's worth keeping: predicted frames (of their payload
    version) that carry quality maps."""
    from vidsieve.codec.payload import unpack
    from vidsieve.codec.quality_map import has_map
    from vidsieve.container import ContainerReader, FrameRecord

    with ContainerReader(GOLDEN / name) as reader:
        recs = [r for r in reader.records() if isinstance(r, FrameRecord)]
    assert {unpack(r.payload).version for r in recs if not r.intra} == {version}
    assert any(has_map(r.payload) and not r.intra for r in recs)
    assert any(not has_map(r.payload) for r in recs)


@pytest.mark.parametrize("name, alone", [("quadtree-keepall-q4.vsv", True), ("quadtree-motion-roi.vsv", False)])
def test_the_quadtree_goldens_split_blocks_and_use_every_model(name, alone):
    """What makes the version 6 goldens worth keeping: blocks whose quarters or cells take different
    modes, and predicted frames that code differences (both) and blocks alone (one of them): their hyper
    latents sent in part."""
    from vidsieve.codec.blocks import BLOCK
    from vidsieve.codec.latent_codecs import CODE_BG, CODE_PREV, INTRA, block_modes
    from vidsieve.container import ContainerReader, FrameRecord

    with ContainerReader(GOLDEN / name) as reader:
        modes = [block_modes(r.payload) for r in reader.records() if isinstance(r, FrameRecord) and not r.intra]
    assert modes
    split = 0
    for m in modes:
        h, w = m.shape
        blocks = m.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK)
        split += int((blocks.max((1, 3)) != blocks.min((1, 3))).sum())
    assert split > 0
    every = np.concatenate([m.reshape(-1) for m in modes])
    assert ((every == CODE_PREV) | (every == CODE_BG)).any() and (every == INTRA).any() == alone


def test_the_motion_golden_moves_blocks():
    """What makes the version 7 golden worth keeping: predicted frames whose blocks read moved references."""
    from vidsieve.codec.latent_codecs import S_MOTION, block_modes, read_motion
    from vidsieve.codec.payload import PREDICTED_MOTION, unpack
    from vidsieve.container import ContainerReader, FrameRecord

    with ContainerReader(GOLDEN / "motion-keepall-q4.vsv") as reader:
        recs = [r for r in reader.records() if isinstance(r, FrameRecord) and not r.intra]
    assert {unpack(r.payload).version for r in recs} == {PREDICTED_MOTION}
    moved = 0
    for r in recs:
        p = unpack(r.payload)
        moved += int(read_motion(p.strings[S_MOTION], block_modes(r.payload), p.latent_hw).vectors.any(-1).sum())
    assert moved >= len(recs)


def test_the_version_8_golden_codes_both_halves_of_the_board_and_shifts_pictures():
    """What makes the version 8 golden worth keeping: predicted frames that code differences in both
    checkerboard passes, and frames shown shifted (a shaken camera)."""
    from vidsieve.codec.latent_codecs import S_DIFF, S_DIFF_SECOND, picture_shift
    from vidsieve.codec.payload import PREDICTED, unpack
    from vidsieve.container import ContainerReader, FrameRecord

    with ContainerReader(GOLDEN / "context-shaken-q4.vsv") as reader:
        recs = [unpack(r.payload) for r in reader.records() if isinstance(r, FrameRecord) and not r.intra]
    assert {p.version for p in recs} == {PREDICTED}
    assert sum(bool(p.strings[S_DIFF]) and bool(p.strings[S_DIFF_SECOND]) for p in recs) >= 2
    assert sum(picture_shift(p) != (0, 0) for p in recs) >= 4


@pytest.mark.parametrize("name", sorted(DOC["streams"]))
def test_golden_streams_decode_at_int8_from_the_same_latents(codecs, name):
    """A precision changes the pictures only: every frame's exact latent is the committed one, and
    the pictures stay within the int8 synthesis's measured distance of the committed ones."""
    from vidsieve.container import ContainerReader
    from vidsieve.metrics import psnr
    from vidsieve.pipeline import iter_decoded

    g = DOC["streams"][name]
    path = GOLDEN / name
    pictures = np.load(GOLDEN / f"{name}.decoded.npz")
    with ContainerReader(path) as reader:
        codec = load_codec(reader.header.model, precision="int8")
        sums = exact_sums(reader, codec)
    assert sums == [f.get("latent_sha256", f.get("symbols_sha256")) for f in g["frames"] if f["kept"]]
    with ContainerReader(path) as reader:
        for d in iter_decoded(reader, codec):
            if d.kept:
                assert psnr(pictures[f"pts{d.pts}"], d.rgb) > 30
