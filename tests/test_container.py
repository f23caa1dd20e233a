import os
import warnings
from fractions import Fraction

import pytest

from vidsieve.container import (REC_SEGMENT, ContainerReader, ContainerWriter, CorruptRecordWarning,
                                      FrameRecord, Header, IndexRecord, JsonRecord, SkipRecord, TruncatedWarning)
from vidsieve.errors import FormatError


def header():
    return Header(width=64, height=48, fps=Fraction(10), time_base=Fraction(1, 1000), model="m",
                  weights_sha256="ab" * 32, metadata={"source": "test"})


def write_sample(path, atomic=True):
    """Frames at pts 0,300,600, skips between, two segments; payloads of varied size."""
    with ContainerWriter(path, header(), atomic=atomic) as w:
        for i in range(3):
            w.write_frame(i * 300, 4.0 + i, bytes([i]) * (20 + 7 * i))
            w.write_skip([i * 300 + 100, i * 300 + 200])
            if i == 1:
                w.write_segment({"index": 0, "start_pts": 0, "end_pts": 500, "quality": 4.0})
        w.write_segment({"index": 1, "start_pts": 600, "end_pts": 800, "quality": 6.0})
    return path


def read_all(path, recover=False):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ContainerReader(path, recover=recover) as r:
            recs = list(r.records())
            state = (r.truncated_at, list(r.damaged), r.has_index)
    return recs, state, caught


def test_round_trip(tmp_path):
    p = write_sample(tmp_path / "a.vsv")
    recs, (trunc, damaged, has_index), caught = read_all(p)
    assert trunc is None and not damaged and has_index and not caught
    frames = [r for r in recs if isinstance(r, FrameRecord)]
    assert [f.pts for f in frames] == [0, 300, 600]
    assert [f.quality for f in frames] == [4.0, 5.0, 6.0]
    assert frames[2].payload == bytes([2]) * 34 and frames[0].intra and frames[0].ref_pts == -1
    skips = [p for r in recs if isinstance(r, SkipRecord) for p in r.pts]
    assert skips == [100, 200, 400, 500, 700, 800]
    segs = [r.data for r in recs if isinstance(r, JsonRecord) and r.kind == REC_SEGMENT]
    assert [s["index"] for s in segs] == [0, 1]
    assert isinstance(recs[-1], IndexRecord)
    with ContainerReader(p) as r:
        assert r.header.width == 64 and r.header.fps == 10 and r.header.metadata == {"source": "test"}
        idx = r.read_index()
        assert [pts for pts, _ in idx] == [0, 300, 600]
        assert r.frame_at(idx[1][1]).payload == bytes([1]) * 27


def test_atomic_writer_uses_temp_name_until_close(tmp_path):
    p = tmp_path / "b.vsv"
    w = ContainerWriter(p, header())
    w.write_frame(0, 4.0, b"x")
    assert not p.exists() and (tmp_path / ".b.vsv.part").exists()
    w.close()
    assert p.exists() and not (tmp_path / ".b.vsv.part").exists()
    w2 = ContainerWriter(tmp_path / "c.vsv", header())
    w2.abort()
    assert not list(tmp_path.glob("*c.vsv*"))


def test_cut_at_every_byte(tmp_path):
    full = write_sample(tmp_path / "full.vsv").read_bytes()
    ref, _, _ = read_all(tmp_path / "full.vsv")
    ends = []  # byte where each record ends
    with ContainerReader(tmp_path / "full.vsv") as r:
        header_end = r.data_start
    for rec, nxt in zip(ref, ref[1:] + [None]):
        ends.append(nxt.offset if nxt else len(full) - 16)
    cut = tmp_path / "cut.vsv"
    for n in range(len(full)):
        cut.write_bytes(full[:n])
        if n < header_end:
            with pytest.raises(FormatError):
                ContainerReader(cut)
            continue
        recs, (trunc, damaged, has_index), caught = read_all(cut)
        complete = sum(1 for e in ends if e <= n)
        assert len(recs) == complete, n
        assert not damaged and not has_index
        at_boundary = n == header_end or n in ends
        assert (trunc is None) == at_boundary, n
        assert any(issubclass(w.category, TruncatedWarning) for w in caught) == (not at_boundary)


def test_flipped_bits_report_offset_and_recover(tmp_path):
    p = write_sample(tmp_path / "a.vsv")
    ref, _, _ = read_all(p)
    target = [r for r in ref if isinstance(r, FrameRecord)][1]
    data = bytearray(p.read_bytes())
    data[target.offset + 20] ^= 0x10
    bad = tmp_path / "bad.vsv"
    bad.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=f"byte {target.offset}"):
        read_all(bad)
    recs, (_, damaged, _), caught = read_all(bad, recover=True)
    assert [o for o, _ in damaged] == [target.offset]
    assert any(issubclass(w.category, CorruptRecordWarning) for w in caught)
    assert [r.pts for r in recs if isinstance(r, FrameRecord)] == [0, 600]
    assert len(recs) == len(ref) - 1


def test_damaged_length_field_recovers(tmp_path):
    p = write_sample(tmp_path / "a.vsv")
    ref, _, _ = read_all(p)
    data = bytearray(p.read_bytes())
    off = ref[0].offset
    data[off + 5:off + 9] = (2**31).to_bytes(4, "little")  # absurd length: must not allocate it
    p.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=f"byte {off}"):
        read_all(p)
    recs, _, _ = read_all(p, recover=True)
    assert [r.pts for r in recs if isinstance(r, FrameRecord)] == [300, 600]


@pytest.mark.parametrize("blob", [b"", b"\x00" * 100, os.urandom(5000), b"\x89VSV\r\n\x1a\n" + os.urandom(300)])
def test_random_bytes_are_a_clear_error(tmp_path, blob):
    p = tmp_path / "r.vsv"
    p.write_bytes(blob)
    with pytest.raises(FormatError):
        with ContainerReader(p) as r:
            list(r.records())


def test_header_lies_about_its_size(tmp_path):
    p = write_sample(tmp_path / "a.vsv")
    data = bytearray(p.read_bytes())
    data[10:14] = (2**30).to_bytes(4, "little")
    p.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="header"):
        ContainerReader(p)


def test_missing_file(tmp_path):
    with pytest.raises(FormatError, match="not found"):
        ContainerReader(tmp_path / "nope.vsv")
