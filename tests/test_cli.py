"""compress / decompress / info as a user runs them."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import (CAR_CLIP, PERSON_CLIP, assert_clean_error, need_shared, read_frames, run_cli)
from vidsieve.codec import DEFAULT_MODEL
from vidsieve.datasets.synthetic import Scene, write_scene
from vidsieve.metrics import psnr


def test_keep_all_lossless_round_trip_and_summary_psnr(tmp_path, small_clip):
    vsv, mkv = tmp_path / "a.vsv", tmp_path / "a.mkv"
    r = run_cli("compress", small_clip, "-o", vsv, "--keep-all", "--quality", "5", "--json", check=True)
    summary = json.loads(r.stdout)
    assert summary["frames"] == summary["coded"] == summary["selected"] == 24 and summary["held"] == 0
    run_cli("decompress", vsv, "-o", mkv, "--lossless", check=True)
    src, src_t = read_frames(small_clip)
    out, out_t = read_frames(mkv)
    assert len(out) == len(src) == 24
    assert np.allclose(out_t, src_t, atol=1e-3)
    # The summary's PSNR is the PSNR a user measures on the decoded video.
    independent = float(np.mean([psnr(a, b) for a, b in zip(src, out)]))
    assert abs(independent - summary["psnr_coded"]) < 0.01
    assert summary["kbps"] == pytest.approx(os.path.getsize(vsv) * 8 / 1000 / 2.4, rel=1e-3)


def test_decompress_mp4_and_png_folder(tmp_path, small_clip):
    vsv = tmp_path / "a.vsv"
    run_cli("compress", small_clip, "-o", vsv, "--keep-all", "--quality", "3", check=True)
    run_cli("decompress", vsv, "-o", tmp_path / "a.mp4", check=True)
    frames, _ = read_frames(tmp_path / "a.mp4")
    assert len(frames) == 24
    run_cli("decompress", vsv, "-o", f"{tmp_path}/pngs/", check=True)
    pngs = sorted((tmp_path / "pngs").glob("*.png"))
    assert len(pngs) == 24
    rows = (tmp_path / "pngs" / "timestamps.csv").read_text().splitlines()
    assert len(rows) == 25 and rows[2].endswith("0.100000")
    assert not list(tmp_path.glob(".pngs*"))


def test_info_text_and_json(tmp_path, small_clip):
    vsv = tmp_path / "a.vsv"
    run_cli("compress", small_clip, "-o", vsv, "--keep-all", check=True)
    d = json.loads(run_cli("info", vsv, "--json", check=True).stdout)
    assert d["integrity"] == "complete" and d["frames"] == 24 and d["coded"] == 24
    assert d["header"]["width"] == 160 and d["header"]["model"] == DEFAULT_MODEL
    assert d["bytes"] == os.path.getsize(vsv)
    text = run_cli("info", vsv, check=True).stdout
    assert "integrity:   complete" in text and "160x120" in text


def test_truncated_container_still_decompresses(tmp_path, small_clip):
    vsv = tmp_path / "a.vsv"
    run_cli("compress", small_clip, "-o", vsv, "--keep-all", check=True)
    data = vsv.read_bytes()
    cut = tmp_path / "cut.vsv"
    cut.write_bytes(data[: int(len(data) * 0.55)])
    d = json.loads(run_cli("info", cut, "--json", check=True).stdout)
    assert d["integrity"] == "truncated" and 0 < d["coded"] < 24
    r = run_cli("decompress", cut, "-o", tmp_path / "cut.mkv", "--lossless", check=True)
    assert "cut off" in r.stderr + r.stdout
    frames, _ = read_frames(tmp_path / "cut.mkv")
    assert len(frames) == d["coded"]
    full, _ = read_frames(small_clip)
    assert psnr(frames[-1], full[len(frames) - 1]) > 15


def test_corrupted_container_needs_recover(tmp_path, small_clip):
    vsv = tmp_path / "a.vsv"
    run_cli("compress", small_clip, "-o", vsv, "--keep-all", check=True)
    data = bytearray(vsv.read_bytes())
    data[len(data) // 2] ^= 0x55
    vsv.write_bytes(bytes(data))
    r = run_cli("decompress", vsv, "-o", tmp_path / "x.mkv")
    assert_clean_error(r, "corrupt record at byte", "--recover")
    assert not (tmp_path / "x.mkv").exists()
    run_cli("decompress", vsv, "-o", tmp_path / "x.mkv", "--recover", check=True)
    frames, _ = read_frames(tmp_path / "x.mkv")
    assert 20 <= len(frames) < 24


def test_still_image_grayscale_and_odd_size(tmp_path):
    img = (np.arange(17 * 33) % 251).astype(np.uint8).reshape(17, 33)
    Image.fromarray(img).save(tmp_path / "g.png")
    run_cli("compress", tmp_path / "g.png", "-o", tmp_path / "g.vsv", "--keep-all", check=True)
    run_cli("decompress", tmp_path / "g.vsv", "-o", f"{tmp_path}/g/", check=True)
    out = np.asarray(Image.open(tmp_path / "g" / "frame_000000.png"))
    assert out.shape == (17, 33, 3)
    # The picture itself came back (a hard one: a ramp that wraps every 251 pixels), and gray stays
    # nearly gray (the codec works in RGB: ~2.8 levels of channel spread on average at quality 4).
    assert np.abs(out.astype(int) - out[:, :, :1]).mean() < 5
    assert psnr(np.repeat(img[:, :, None], 3, axis=2), out) > 25


def test_ten_bit_input(tmp_path):
    scene = Scene(width=96, height=64, frames=5)
    src = write_scene(scene, tmp_path / "deep.mkv", codec="ffv1", pix_fmt="yuv420p10le")
    run_cli("compress", src, "-o", tmp_path / "d.vsv", "--keep-all", "--quality", "6", check=True)
    d = json.loads(run_cli("info", tmp_path / "d.vsv", "--json", check=True).stdout)
    assert d["frames"] == 5
    run_cli("decompress", tmp_path / "d.vsv", "-o", tmp_path / "d.mkv", "--lossless", check=True)
    src_frames, src_times = read_frames(src)  # 10-bit read as 8-bit RGB: what the codec was given
    out_frames, out_times = read_frames(tmp_path / "d.mkv")
    assert out_times == src_times
    assert min(psnr(a, b) for a, b in zip(src_frames, out_frames)) > 30


@pytest.mark.parametrize("kind", ["missing", "text", "empty", "dir"])
def test_bad_inputs(tmp_path, kind):
    p = tmp_path / "in.mp4"
    if kind == "text":
        p.write_text("this is not a video\n" * 50)
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "dir":
        p.mkdir()
    r = run_cli("compress", p, "-o", tmp_path / "o.vsv", "--keep-all")
    assert_clean_error(r)
    assert r.returncode == 2
    assert not list(tmp_path.glob("*o.vsv*"))


def test_not_a_vsv_and_unwritable_output(tmp_path, small_clip):
    junk = tmp_path / "junk.vsv"
    junk.write_bytes(os.urandom(1000))
    assert_clean_error(run_cli("info", junk), "not a vidsieve")
    assert_clean_error(run_cli("decompress", junk, "-o", tmp_path / "o.mkv"), "not a vidsieve")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        r = run_cli("compress", small_clip, "-o", ro / "o.vsv", "--keep-all")
        assert_clean_error(r, "not writable")
        assert r.returncode == 3
    finally:
        ro.chmod(0o700)


def test_unwritable_output_as_root_safe(tmp_path, small_clip):
    # Writing under a regular file fails for every user, root included.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli("compress", small_clip, "-o", blocker / "sub" / "o.vsv", "--keep-all")
    assert_clean_error(r, "output folder")
    assert r.returncode == 3
    good = tmp_path / "good.vsv"
    run_cli("compress", small_clip, "-o", good, "--keep-all", "--max-frames", "2", check=True)
    for out in (blocker / "sub" / "o.mkv", f"{blocker}/sub/frames/"):
        r = run_cli("decompress", good, "-o", out)
        assert_clean_error(r, "output folder")
        assert r.returncode == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "good.vsv"]


def test_help_explains():
    r = run_cli("--help", check=True)
    for cmd in ("compress", "decompress", "info"):
        assert cmd in r.stdout
    r = run_cli("compress", "--help", check=True)
    assert "--keep-all" in r.stdout and "--quality" in r.stdout
    r = run_cli("info", "--help", "--quiet", check=True)
    assert "--json" in r.stdout
    r = run_cli("compress", "x.mp4", "-o", "y.vsv", "--quality", "9")
    assert r.returncode == 2 and "quality" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("clip", [PERSON_CLIP, CAR_CLIP], ids=["person", "car"])
def test_shared_clip_round_trip(tmp_path, clip):
    need_shared(clip)
    vsv, mkv = tmp_path / "c.vsv", tmp_path / "c.mkv"
    s = json.loads(run_cli("compress", clip, "-o", vsv, "--keep-all", "--quality", "4", "--max-frames", "30",
                           "--json", check=True).stdout)
    run_cli("decompress", vsv, "-o", mkv, "--lossless", check=True)
    src, src_t = read_frames(clip)
    out, out_t = read_frames(mkv)
    assert len(out) == 30 and s["frames"] == 30
    assert np.allclose(out_t, src_t[:30], atol=1e-3)
    assert abs(np.mean([psnr(a, b) for a, b in zip(src, out)]) - s["psnr_coded"]) < 0.01


def test_durations_take_units_alone_or_together():
    import argparse

    from vidsieve.cli.args import duration

    assert [duration(s) for s in ("90", "90s", "15m", "2h", "2h40m", "1m30s", "1.5h", "1d")] == \
        [90, 90, 900, 7200, 9600, 90, 5400, 86400]
    for bad in ("", "h", "2h2h", "abc", "-5", "2x", "inf"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
            duration(bad)
