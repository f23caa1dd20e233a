"""The comparison harness: outputs, schema, and agreement with independent computations."""

import json

import av
import numpy as np
import pytest

from conftest import YOLOX, need_shared, read_frames, run_cli
from vidsieve.codec import DEFAULT_MODEL
from vidsieve.datasets.synthetic import Mover, Scene, write_scene
from vidsieve.metrics import psnr


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    clip = write_scene(Scene(width=192, height=176, frames=16, noise=1.5,
                             movers=[Mover(3, 14, (450, 120), 0.5)]), d / "scene.mkv")
    out = d / "out"
    r = run_cli("bench", clip, "--out", out, "--codecs", "x265,x264,jpeg,vidsieve-keepall", "--points", "4",
                "--frames", "16", "--jobs", "2", check=True)
    return clip, out, r


def test_outputs_and_schema(bench_run):
    clip, out, r = bench_run
    assert "BD-rate vs x265" in r.stdout
    for name in ("results.json", "results.csv", "report.md", "rd-psnr-scene.png", "rd-psnr-scene.svg"):
        assert (out / name).exists(), name
    doc = json.loads((out / "results.json").read_text())
    assert doc["clips"] == [{"name": "scene", "frames": 16, "fps": 10.0, "width": 192, "height": 176,
                             "path": str(clip)}]
    keys = {"clip", "codec", "setting", "kbps", "bpp", "psnr_rgb", "psnr_y", "ms_ssim", "enc_fps", "dec_fps",
            "kept_fraction", "recall", "roi_psnr"}
    assert len(doc["points"]) == 16
    for p in doc["points"]:
        assert keys <= set(p)
        assert p["kbps"] > 0 and 10 < p["psnr_rgb"] <= 100
    settings = {p["setting"] for p in doc["points"] if p["codec"] == "x265"}
    assert all(s.startswith("crf=") for s in settings) and len(settings) == 4
    bd = doc["bd_rate"]
    assert bd["anchor"] == "x265" and bd["metric"] == "psnr_rgb" and bd["method"] == "pchip"
    assert set(bd["per_clip"]["scene"]) == {"x264", "jpeg", "vidsieve-keepall"}
    assert "| x264 |" in (out / "report.md").read_text()


def test_bd_rate_matches_bjontegaard_by_hand(bench_run):
    import bjontegaard as bd

    _, out, _ = bench_run
    doc = json.loads((out / "results.json").read_text())
    pts = doc["points"]

    def curve(codec):
        c = sorted((p["kbps"], p["psnr_rgb"]) for p in pts if p["codec"] == codec)
        return [r for r, _ in c], [d for _, d in c]

    ra, da = curve("x265")
    rt, dt = curve("jpeg")
    want = bd.bd_rate(ra, da, rt, dt, method="pchip", require_matching_points=False, min_overlap=0)
    got = doc["bd_rate"]["per_clip"]["scene"]["jpeg"]
    if got is None:
        pytest.skip("curves did not overlap enough on this scene")
    assert got == pytest.approx(want, abs=0.01)
    assert want > 0  # JPEG needs more bits than x265 for the same quality


def test_bd_rate_over_a_quality_range():
    from vidsieve.bench.bdrate import bd_rate

    psnrs = [26.0, 28.0, 30.0, 32.0, 34.0, 36.0, 38.0]
    anchor = [{"kbps": 100.0 * 1.5 ** i, "psnr_rgb": d} for i, d in enumerate(psnrs)]
    # 20 % fewer bits up to 32 dB, 25 % more from 34 dB: the answer depends on the range.
    test = [{"kbps": p["kbps"] * (0.8 if p["psnr_rgb"] <= 32 else 1.25), "psnr_rgb": p["psnr_rgb"]} for p in anchor]
    whole = bd_rate(anchor, test)
    assert -20 < whole < 25
    assert bd_rate(anchor, test, over=(0, 100)) == pytest.approx(whole, abs=1e-9)
    # pchip is local: between points whose neighbours share a factor, the curves differ by exactly it.
    assert bd_rate(anchor, test, over=(26, 29)) == pytest.approx(-20.0, abs=1e-6)
    assert bd_rate(anchor, test, over=(36, 40)) == pytest.approx(25.0, abs=1e-6)
    with pytest.warns(UserWarning, match="no overlap"):
        assert bd_rate(anchor, test, over=(40, 45)) is None


def test_x265_point_matches_an_independent_encode(bench_run, tmp_path):
    clip_path, out, _ = bench_run
    doc = json.loads((out / "results.json").read_text())
    point = next(p for p in doc["points"] if p["codec"] == "x265" and p["setting"] == "crf=32")
    # Independent: PyAV straight into an MP4 file, then decoded back from disk.
    frames, times = read_frames(clip_path)
    path = tmp_path / "ind.mp4"
    size = 0
    with av.open(str(path), "w") as o:
        st = o.add_stream("libx265", rate=10)
        st.width, st.height, st.pix_fmt = 192, 176, "yuv420p"
        st.options = {"crf": "32", "preset": "medium", "x265-params": "log-level=error:frame-threads=1"}
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for pkt in st.encode(vf):
                size += pkt.size
                o.mux(pkt)
        for pkt in st.encode(None):
            size += pkt.size
            o.mux(pkt)
    dec, _ = read_frames(path)
    kbps = size * 8 / 1000 / 1.6
    p = float(np.mean([psnr(a, b) for a, b in zip(frames, dec)]))
    assert point["kbps"] == pytest.approx(kbps, rel=0.05)
    assert abs(point["psnr_rgb"] - p) <= 0.3


def test_a_rerun_reads_its_points_from_the_cache(bench_run):
    """Measured timings never repeat to the last digit: equal ones prove the points were not measured again."""
    clip, out, _ = bench_run
    first = json.loads((out / "results.json").read_text())["points"]
    run_cli("bench", clip, "--out", out, "--codecs", "x265,jpeg", "--points", "4", "--frames", "16", check=True)
    again = json.loads((out / "results.json").read_text())["points"]
    assert len(again) == 8
    assert again == [p for p in first if p["codec"] in ("x265", "jpeg")]
    # Settings not measured before are measured; the others still come from the cache.
    run_cli("bench", clip, "--out", out, "--codecs", "jpeg", "--points", "6", "--frames", "16", check=True)
    third = {p["setting"]: p for p in json.loads((out / "results.json").read_text())["points"]}
    old = {p["setting"]: p for p in first if p["codec"] == "jpeg"}
    assert len(third) == 6 and set(old) < set(third)
    assert all(third[s] == p for s, p in old.items())


def test_recall_and_roi_with_reference_detector(tmp_path):
    need_shared(YOLOX)
    from conftest import PERSON_CLIP

    need_shared(PERSON_CLIP)
    # Frames 150.. of the person clip have someone in view.
    import av as _av
    src = tmp_path / "people.mkv"
    with _av.open(str(PERSON_CLIP)) as c, _av.open(str(src), "w") as o:
        st = o.add_stream("ffv1", rate=10)
        st.width, st.height, st.pix_fmt = 768, 432, "bgr0"
        n = 0
        for i, f in enumerate(c.decode(c.streams.video[0])):
            if i < 230:
                continue
            vf = _av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24"), format="rgb24")
            vf.pts = n
            for pkt in st.encode(vf):
                o.mux(pkt)
            n += 1
            if n == 12:
                break
        for pkt in st.encode(None):
            o.mux(pkt)
    out = tmp_path / "b"
    run_cli("bench", src, "--out", out, "--codecs", "jpeg,x264,x265,x265-roi", "--points", "3",
            "--reference-detector", YOLOX, "--detector", "motion", check=True)
    doc = json.loads((out / "results.json").read_text())
    roi = doc["bd_rate_extra"]["roi_psnr"]
    assert roi["metric"] == "roi_psnr" and set(roi["per_clip"]["people"]) == {"jpeg", "x264", "x265-roi"}
    assert doc["bd_rate_extra"]["roi_psnr_vs_x265_roi"]["anchor"] == "x265-roi"
    assert doc["at_kbps"]["kbps"] == 50 and set(doc["at_kbps"]["per_clip"]["people"]) == {"jpeg", "x264", "x265",
                                                                                          "x265-roi"}
    report = (out / "report.md").read_text()
    assert "selection and quality maps (vidsieve, x265-roi's boxes): `motion`" in report
    assert "reference for recall, ROI-PSNR and background PSNR: `yolox_nano.onnx`" in report
    assert "BD-rate vs x265 (ROI-PSNR, pchip)" in report and (out / "rd-roi-people.png").exists()
    best = max((p for p in doc["points"] if p["codec"] == "jpeg"), key=lambda p: p["kbps"])
    worst = min((p for p in doc["points"] if p["codec"] == "jpeg"), key=lambda p: p["kbps"])
    assert best["recall"] is not None and best["recall"] >= worst["recall"]
    assert best["roi_psnr"] > worst["roi_psnr"]
    assert (out / "recall-people.png").exists()


def test_bench_image_on_a_few_images(tmp_path):
    from PIL import Image

    from vidsieve.datasets.synthetic import background

    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        Image.fromarray(background(192, 176, seed=i).astype(np.uint8)).save(d / f"{i}.png")
    r = run_cli("bench-image", d, "--out", tmp_path / "o", "--no-zoo", check=True)
    doc = json.loads((tmp_path / "o" / "image_results.json").read_text())
    assert doc["images"] == 2
    ours = doc["curves"][DEFAULT_MODEL]
    assert len(ours) == 8 and ours[0]["bpp"] < ours[-1]["bpp"]
    assert {"jpeg", "webp"} <= set(doc["curves"])
    assert (tmp_path / "o" / "image-rd.png").exists()
    assert "BD-rate vs JPEG" in r.stdout


def test_speed_results_name_the_processor(tmp_path):
    import platform

    from vidsieve.bench.speed import cpu_name

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n")
    assert cpu_name(info) == "AMD EPYC 7B13 64-Core Processor"
    info.write_text("processor\t: 0\nHardware\t: BCM2835\n")  # no model name (some ARM boards)
    assert cpu_name(info) == (platform.processor() or platform.machine())
    assert cpu_name(tmp_path / "absent") == (platform.processor() or platform.machine())


def test_results_are_written_whole_or_not_at_all(tmp_path):
    from vidsieve.bench.jsonfile import write_json

    p = write_json(tmp_path / "deep" / "r.json", {"bd": -18.0})
    assert json.loads(p.read_text()) == {"bd": -18.0}
    # A result that cannot be written leaves the previous one, and no temp file beside it.
    with pytest.raises(TypeError):
        write_json(p, {"bd": object()})
    assert json.loads(p.read_text()) == {"bd": -18.0}
    assert [f.name for f in p.parent.iterdir()] == ["r.json"]


def without_timings(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    for p in doc["points"]:
        p.pop("enc_fps"), p.pop("dec_fps")
    return doc


def test_a_sweep_on_ray_gives_the_local_results(bench_run, tmp_path, ray_local):
    from vidsieve.bench.runner import run_bench
    from vidsieve.executor import LocalExecutor, RayExecutor

    clip = bench_run[0]
    codecs = ["x265", "x264", "jpeg", "vidsieve-keepall"]
    local = run_bench([str(clip)], tmp_path / "local", codecs, frames=16, points=3, executor=LocalExecutor(2),
                      progress=False)
    doc = run_bench([str(clip)], tmp_path / "ray", codecs, frames=16, points=3, executor=RayExecutor(),
                    progress=False)
    assert doc["failures"] == [] and len(doc["points"]) == 12
    assert without_timings(doc) == without_timings(local)
    assert "| vidsieve-keepall | quality=8 |" in (tmp_path / "ray" / "report.md").read_text()


def test_at_kbps_interpolates_in_log_rate():
    from vidsieve.bench.runner import at_kbps

    pts = [{"clip": "c", "codec": "k", "kbps": 25.0, "recall": 0.5, "roi_psnr": 30.0, "background_psnr": None,
            "psnr_rgb": 31.0},
           {"clip": "c", "codec": "k", "kbps": 100.0, "recall": 0.9, "roi_psnr": 34.0, "background_psnr": None,
            "psnr_rgb": 35.0}]
    row = at_kbps(pts, 50.0)["per_clip"]["c"]["k"]
    assert row == {"recall": 0.7, "roi_psnr": 32.0, "background_psnr": None, "psnr_rgb": 33.0}
    assert at_kbps(pts, 200.0)["per_clip"]["c"]["k"]["recall"] is None  # no extrapolation


def test_x265_roi_spends_its_bits_in_the_boxes(tmp_path):
    """x265-roi's boxes keep their quality while the rest of frames with boxes is coded 3 QP coarser (fewer
    bytes: the region side data reached the encoder)."""
    from vidsieve.bench.codecs import CODECS
    from vidsieve.bench.runner import load_clip
    from vidsieve.metrics import masked_sse, psnr_from_mse

    clip = load_clip(write_scene(Scene(width=256, height=192, frames=20, noise=1.0,
                                       movers=[Mover(2, 19, (350, 160), 0.5)]), tmp_path / "m.mkv"), None)
    roi = CODECS["x265-roi"](detector="motion")
    regions = roi.regions(clip)
    assert len(regions) == 20 and all(regions)  # every frame carries regions (a neutral one without boxes)
    assert regions[0] == [(0, 0, 256, 192, 0.0)]
    boxed = [i for i, r in enumerate(regions) if len(r) > 1]
    assert boxed, "the motion detector found the mover"
    plain, with_roi = CODECS["x265"]().run(clip, "crf=30"), roi.run(clip, "crf=30")
    assert with_roi.bytes < plain.bytes
    masks = {}
    for i in boxed:
        masks[i] = np.zeros((192, 256), bool)
        for x, y, w, h, q in regions[i][:-1]:
            masks[i][y:y + h, x:x + w] = True

    def psnr(enc, inside: bool):
        s = [masked_sse(clip.frames[i], enc.decoded[i], m if inside else ~m) for i, m in masks.items()]
        return psnr_from_mse(sum(a for a, _ in s) / sum(b for _, b in s))

    assert with_roi.bytes < 0.95 * plain.bytes
    assert psnr(with_roi, True) > psnr(plain, True) - 0.3
    assert psnr(with_roi, False) <= psnr(plain, False)
