"""Quality maps: a quality per 64 x 64 block, from the detector's boxes to the decoder's inverse gains."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from conftest import assert_clean_error, run_cli, source_frames
from vidsieve.codec.payload import unpack
from vidsieve.codec.predictive import PredictiveStreamDecoder
from vidsieve.codec.quality_map import QualityMap, offsets_from_steps
from vidsieve.codec.registry import stream_decoder, stream_encoder
from vidsieve.detection.base import Detection
from vidsieve.errors import FormatError
from vidsieve.metrics import masked_sse, psnr_from_mse
from vidsieve.selection.roi import RoiMap

TB = Fraction(1, 10)


def test_a_map_round_trips_through_its_bytes():
    rng = np.random.default_rng(3)
    for grid, levels in (((7, 12), [-4, 0, 6]), ((1, 1), [8]), ((3, 5), list(range(-20, 21, 2)))):
        m = QualityMap(4.0, rng.choice(levels, size=grid).astype(np.int8))
        back = QualityMap.from_bytes(4.0, m.to_bytes(), grid)
        assert back.same(m) and np.array_equal(back.offsets, m.offsets)
    two = QualityMap(4.0, np.array([[0, 6], [6, 6]], np.int8))
    assert len(two.to_bytes()) <= 16  # a map of two levels is a handful of bytes
    assert QualityMap(4.0, np.zeros((2, 2), np.int8)).uniform  # all zero is no map


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x03\x01", b"\x02\x05\x01" + b"\x01\x01", b"\x01\x00"])
def test_a_damaged_map_is_a_format_error(data):
    with pytest.raises(FormatError):
        QualityMap.from_bytes(4.0, data, (2, 3))


def test_qualities_stay_in_the_trained_range():
    m = QualityMap(7.0, offsets_from_steps(np.array([[4.0, -1.0], [0.0, -40.0]])))
    assert m.qualities((2, 2)).tolist() == [[8.0, 6.0], [7.0, 1.0]]


def box(x1, y1, x2, y2, cls="person", score=0.9):
    return Detection((x1, y1, x2, y2), cls, score)


def test_boxes_make_block_steps_with_a_soft_margin_and_class_weights():
    roi = RoiMap(boost=2.0, background=-1.0, margin=64, class_weights={"person": 1.0})
    assert roi.steps([], (256, 384)) is None  # no boxes, no map
    s = roi.steps([box(140, 80, 180, 120, cls="car")], (256, 384))  # inside block (1, 2)
    assert s.shape == (4, 6)
    assert s[1, 2] == 2.0  # a car: no class weight
    assert s[1, 1] == pytest.approx(-1 + 3 * (1 - 12 / 64))  # 12 pixels from the box: most of the boost
    assert -1.0 < s[0, 1] < s[1, 1]  # diagonal: further, less
    assert s[3, 5] == -1.0  # far away: the background's
    p = roi.steps([box(140, 80, 180, 120, cls="person")], (256, 384))
    assert p[1, 2] == 4.0  # person weight 1: twice the boost
    assert roi.steps([box(0, 0, 10, 10, score=0.1)], (256, 384)) is not None
    assert RoiMap(min_score=0.4).steps([box(0, 0, 10, 10, score=0.1)], (256, 384)) is None
    with pytest.raises(ValueError):
        RoiMap(background=0.5)


def coded(codec, frames, rois, q=3.0):
    enc = stream_encoder(codec, TB)
    out = [enc.encode(f, q, i, roi=r) for i, (f, r) in enumerate(zip(frames, rois))]
    return enc, out


def test_maps_decode_exactly_in_intra_and_predicted_frames(codec):
    frames = source_frames(256, 192, 6)
    grid = (3, 4)
    rois = [None, offsets_from_steps(np.full(grid, -1.0)), None] + [
        offsets_from_steps(np.where(np.arange(12).reshape(grid) == i, 3.0, -0.5)) for i in (5, 6, 7)]
    enc, out = coded(codec, frames, rois)
    assert out[0].intra and not any(o.intra for o in out[1:])
    strings = [len(unpack(o.data).strings) for o in out]
    assert strings == [2, 10, 9, 10, 10, 10]  # a map is one more string; none without
    dec = stream_decoder(codec, enc.describe())
    assert isinstance(dec, PredictiveStreamDecoder)
    for i, o in enumerate(out):
        pic = dec.decode(o.data, i, intra=o.intra, ref_pts=None if o.intra else i - 1)
        assert np.array_equal(pic, o.recon), i
    # An intra frame under a map: decodes alone too, through the frame codec.
    enc2, out2 = coded(codec, frames[:1], [offsets_from_steps(np.where(np.arange(12).reshape(grid) < 6, 2.0, 0.0))])
    assert len(unpack(out2[0].data).strings) == 3
    assert np.array_equal(codec.decode(out2[0].data), out2[0].recon)


def test_a_frame_without_boxes_is_coded_as_before(codec):
    frames = source_frames(192, 128, 3)
    _, plain = coded(codec, frames, [None] * 3)
    _, zeros = coded(codec, frames, [np.zeros((2, 3), np.int8)] * 3)
    assert [o.data for o in plain] == [o.data for o in zeros]


def test_a_boosted_box_gains_quality_at_the_cost_of_the_rest(codec):
    """Two steps up in a box give the box what two steps up everywhere give it, for fewer bits; a lower
    background takes from the rest."""
    from conftest import source_frame

    frame = source_frame(384, 256, 11)
    inside = np.zeros((256, 384), bool)
    inside[64:192, 128:256] = True  # blocks (1..2, 2..3)
    target = [box(130, 70, 250, 185)]

    def code(q, boost=0.0, background=0.0):
        r = RoiMap(boost=boost, background=background, margin=0).offsets(target, (256, 384))
        o = stream_encoder(codec, TB).encode(frame, q, 0, roi=r)  # an intra frame others copy from: boosted
        (s_in, n_in), (s_out, n_out) = masked_sse(frame, o.recon, inside), masked_sse(frame, o.recon, ~inside)
        return psnr_from_mse(s_in / n_in), psnr_from_mse(s_out / n_out), len(o.data)

    low, high = code(2.0), code(4.0)
    boxed, traded = code(2.0, boost=2.0), code(2.0, boost=2.0, background=-1.0)
    assert high[0] > low[0] + 0.4  # two steps are worth something in the box
    assert abs(boxed[0] - high[0]) < 0.15 and abs(boxed[1] - low[1]) < 0.15
    assert low[2] < boxed[2] < high[2]
    assert traded[0] > low[0] + 0.4 and traded[1] < low[1] - 0.3 and traded[2] < boxed[2]


def test_cli_refuses_maps_it_cannot_make(small_clip, tmp_path):
    assert_clean_error(run_cli("compress", small_clip, "-o", tmp_path / "a.vsv", "--keep-all", "--roi-boost", "2"),
                       "quality maps need")
    assert_clean_error(run_cli("compress", small_clip, "-o", tmp_path / "a.vsv", "--roi-background", "1"),
                       "0 or less")
    assert not (tmp_path / "a.vsv").exists()


def test_compress_with_maps_round_trips_and_info_counts_them(small_clip, tmp_path):
    from vidsieve.pipeline import CompressOptions, compress, decoded_frames, info

    out = tmp_path / "m.vsv"
    s = compress(small_clip, out, CompressOptions(detector="motion", roi_boost=2.0, roi_background=-1.0,
                                                  sensitivity=4.0))
    assert s.frames == 24
    d = info(out)
    assert d["integrity"] == "complete" and d["gop"]["mapped"] > 0
    assert len(list(decoded_frames(out))) == 24
    assert d["header"]["metadata"]["selector"]["roi"] == {"boost": 2.0, "background": -1.0, "margin": 32}


def test_a_box_over_most_of_the_frame_makes_no_map():
    roi = RoiMap(boost=2.0, background=-1.0)
    assert roi.steps([box(0, 0, 300, 200)], (256, 384)) is None  # 61 % of the frame: exposure, not an object
    assert roi.steps([box(0, 0, 300, 200), box(10, 10, 50, 50)], (256, 384)).max() == 2.0
