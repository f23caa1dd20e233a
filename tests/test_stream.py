"""Stream coders (codec.stream): streams coded at a fraction of their size and scaled back up."""

from fractions import Fraction

import numpy as np
import pytest

from conftest import assert_clean_error, read_frames, run_cli
from vidsieve.codec.registry import stream_decoder, stream_encoder
from vidsieve.codec.stream import ScaledStreamEncoder, coded_size, scaled_blocks, stream_predicts
from vidsieve.errors import FormatError, UsageError
from vidsieve.metrics import psnr
from vidsieve.pipeline import CompressOptions, compress, decoded_frames, info

TB = Fraction(1, 10)


def test_coded_size_is_even_bounded_and_checked():
    assert coded_size(768, 432, 1.0) == (768, 432)
    assert coded_size(768, 432, 0.5) == (384, 216)
    assert coded_size(161, 121, 0.5) == (80, 60)  # even sides
    assert coded_size(40, 30, 0.125) == (16, 16)  # never under 16 pixels ...
    assert coded_size(12, 10, 0.5) == (12, 10)  # ... nor above the source
    for bad in (0.0, 0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="scale"):
            coded_size(768, 432, bad)


def test_scaled_blocks_keep_a_boost_where_its_object_is():
    roi = np.full((7, 12), -4, dtype=np.int8)  # 768x432 in 64-pixel blocks
    roi[5, 9] = 6  # one boosted block at x 576-640, y 320-384
    out = scaled_blocks(roi, (768, 432), (384, 216))
    assert out.shape == (4, 6) and out.dtype == np.int8
    assert out[2, 4] == 6 and (out == 6).sum() == 1 and (out[out != 6] == -4).all()
    assert scaled_blocks(roi, (768, 432), (768, 432)).tolist() == roi.tolist()


def test_scaled_stream_codes_small_and_shows_at_full_size(codec, small_clip):
    frames, _ = read_frames(small_clip)
    size = (frames[0].shape[1], frames[0].shape[0])
    full = stream_encoder(codec, TB, size=size)
    half = stream_encoder(codec, TB, scale=0.5, size=size)
    assert isinstance(half, ScaledStreamEncoder) and stream_predicts(half) and stream_predicts(full)
    assert half.describe()["scale"] == {"coded": [80, 60], "shown": [160, 120]}
    assert not isinstance(stream_encoder(codec, TB, scale=0.9, size=(16, 16)), ScaledStreamEncoder)  # same size
    dec = stream_decoder(codec, half.describe())
    bits = {"full": 0, "half": 0}
    for i, f in enumerate(frames[:8]):
        e = half.encode(f, 3.0, i, boxes=[(10, 10, 60, 50)])
        bits["half"] += len(e.data)
        bits["full"] += len(full.encode(f, 3.0, i).data)
        shown = dec.decode(e.data, i, e.intra, None if e.intra else i - 1)
        assert shown.shape == f.shape and np.array_equal(shown, e.recon)  # the encoder saw what is shown
        assert psnr(f, shown) > 24
    assert bits["half"] < 0.6 * bits["full"]


@pytest.mark.parametrize("scale", [{"coded": [0, 60], "shown": [160, 120]}, {"coded": [200, 60], "shown": [160, 120]},
                                   {"coded": "80x60"}, None, 3])
def test_a_damaged_scale_description_is_a_format_error(codec, scale):
    with pytest.raises(FormatError, match="coded"):
        stream_decoder(codec, {"coder": "predictive", "conditional": "vidsieve-inter-wide", "scale": scale})


def test_a_scaled_frame_of_another_size_is_refused(codec):
    frame = np.full((120, 160, 3), 90, np.uint8)
    data = stream_encoder(codec, TB, predict=False).encode(frame, 2.0, 0).data  # coded at 160x120
    dec = stream_decoder(codec, {"scale": {"coded": [80, 60], "shown": [160, 120]}})
    with pytest.raises(FormatError, match="coded size is 80x60"):
        dec.decode(data, 0)


def test_compress_at_half_size_round_trip(tmp_path, small_clip, codec):
    out = tmp_path / "half.vsv"
    s = compress(small_clip, out, CompressOptions(keep_all=True, quality=2.0, scale=0.5), progress=False, codec=codec)
    full = compress(small_clip, tmp_path / "full.vsv", CompressOptions(keep_all=True, quality=2.0), progress=False,
                    codec=codec)
    assert s.frame_bytes < 0.75 * full.frame_bytes and (s.width, s.height) == (160, 120)
    d = info(out)
    assert d["coded_size"] == [80, 60] and d["stream"] == "predictive" and d["gop"]["predicted"] == 23
    src, _ = read_frames(small_clip)
    dec = [f.rgb for f in decoded_frames(out)]
    assert len(dec) == 24 and dec[0].shape == src[0].shape
    # What the encoder reported is what the decoder shows.
    assert np.mean([psnr(a, b) for a, b in zip(src, dec)]) == pytest.approx(s.psnr_coded, abs=0.01)
    # Intra only, scaled: the description holds the scale and nothing else.
    compress(small_clip, tmp_path / "intra.vsv", CompressOptions(keep_all=True, quality=2.0, scale=0.5, predict=False,
                                                                 max_frames=3), progress=False, codec=codec)
    d = info(tmp_path / "intra.vsv")
    assert d["stream"] == "intra" and d["coded_size"] == [80, 60] and d["gop"]["intra"] == 3
    assert [f.rgb.shape for f in decoded_frames(tmp_path / "intra.vsv")] == [src[0].shape] * 3


def test_cli_scale(tmp_path, small_clip):
    out = tmp_path / "a.vsv"
    r = run_cli("compress", str(small_clip), "-o", str(out), "--keep-all", "--scale", "0.5", "--max-frames", "4",
                "-q", check=True)
    r = run_cli("info", str(out), check=True)
    assert "coded at 80x60, shown at 160x120" in r.stdout
    for bad in ("2", "0.05", "half"):
        r = run_cli("compress", str(small_clip), "-o", str(tmp_path / "b.vsv"), "--scale", bad)
        assert r.returncode == 2 and "--scale" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "b.vsv").exists()


def test_config_scale_is_checked(tmp_path):
    from vidsieve.ingest.cameras import load_config
    from vidsieve.ingest.live import IngestOptions

    cfg = tmp_path / "c.toml"
    cfg.write_text('scale = 0.5\n[cameras.gate]\nurl = "rtsp://x"\n[cameras.yard]\nurl = "rtsp://y"\nscale = 1\n')
    cams, _ = load_config(str(cfg), IngestOptions(), str(tmp_path))
    assert {c.name: c.opts.compress.scale for c in cams} == {"gate": 0.5, "yard": 1.0}
    cfg.write_text('[cameras.gate]\nurl = "rtsp://x"\nscale = 3\n')
    with pytest.raises(UsageError, match="scale must be a number from 0.125 to 1"):
        load_config(str(cfg), IngestOptions(), str(tmp_path))
    r = run_cli("ingest", "--config", str(cfg), "--out-dir", str(tmp_path / "o"))
    assert_clean_error(r, "scale")
