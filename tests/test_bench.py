"""The comparison harness: outputs, schema, and agreement with independent computations."""

import json
from fractions import Fraction

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
            "coded_fraction", "selected_fraction", "recall", "f1", "objects", "roi_psnr"}
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
    from vidsieve.metrics.curves import bd_rate

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
    run_cli("bench", clip, "--out", out, "--codecs", "jpeg", "--points", "8", "--frames", "16", check=True)
    third = {p["setting"]: p for p in json.loads((out / "results.json").read_text())["points"]}
    old = {p["setting"]: p for p in first if p["codec"] == "jpeg"}
    assert len(third) == 8 and set(old) < set(third)
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


def without_timings(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    for p in doc["points"]:
        p.pop("enc_fps"), p.pop("dec_fps")
    return doc


def test_a_sweep_on_ray_gives_the_local_results(bench_run, tmp_path, ray_local):
    from vidsieve.bench.runner import run_bench
    from vidsieve.executor import LocalExecutor, RayExecutor

    clip = bench_run[0]
    codecs = ["x265", "jpeg", "vidsieve-keepall"]
    local = run_bench([str(clip)], tmp_path / "local", codecs, frames=8, points=2, executor=LocalExecutor(2),
                      progress=False)
    doc = run_bench([str(clip)], tmp_path / "ray", codecs, frames=8, points=2, executor=RayExecutor(),
                    progress=False)
    assert doc["failures"] == [] and len(doc["points"]) == 6
    assert without_timings(doc) == without_timings(local)
    assert "| vidsieve-keepall | quality=8 |" in (tmp_path / "ray" / "report.md").read_text()


def test_at_kbps_interpolates_in_log_rate():
    from vidsieve.metrics.curves import at_kbps

    pts = [{"clip": "c", "codec": "k", "kbps": 25.0, "recall": 0.5, "f1": 0.6, "roi_psnr": 30.0,
            "background_psnr": None, "psnr_rgb": 31.0},
           {"clip": "c", "codec": "k", "kbps": 100.0, "recall": 0.9, "f1": 0.8, "roi_psnr": 34.0,
            "background_psnr": None, "psnr_rgb": 35.0}]
    row = at_kbps(pts, 50.0)["per_clip"]["c"]["k"]
    assert row == {"recall": 0.7, "f1": 0.7, "roi_psnr": 32.0, "background_psnr": None, "psnr_rgb": 33.0}
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


def test_one_table_codes_video_and_stills():
    """Every codec that codes a still image is in the table the video harness runs: JPEG is coded one way."""
    from vidsieve.bench.codecs import CODECS, VIDEO_DEFAULT, Clip
    from vidsieve.bench.image import still_codecs
    from vidsieve.datasets.synthetic import background

    img = background(96, 64, seed=3).astype(np.uint8)
    stills = {c.still_name: (c, s) for c, s in still_codecs(DEFAULT_MODEL, zoo=True)}
    assert {DEFAULT_MODEL, "jpeg", "webp"} <= set(stills) and "ffv1-lossless" not in stills
    assert len(stills[DEFAULT_MODEL][1]) == 8
    jpeg = CODECS["jpeg"]()
    clip = Clip("one", [img], [0], Fraction(1, 10), Fraction(10), "")
    # The video row and the still row of JPEG are the same bytes and pixels.
    video, still = jpeg.run(clip, "q=45"), jpeg.code_still(img, "q=45")
    assert video.bytes == still.bytes and np.array_equal(video.decoded[0], still.decoded[0])
    ours = stills[DEFAULT_MODEL][0].code_still(img, "quality=4")
    assert ours.bytes > 0 and psnr(img, ours.decoded[0]) > psnr(img, jpeg.code_still(img, "q=10").decoded[0])
    assert "webp" not in VIDEO_DEFAULT and "ffv1-lossless" in VIDEO_DEFAULT


def test_the_lossless_row_gives_back_the_originals():
    from vidsieve.bench.codecs import CODECS, Clip
    from vidsieve.datasets.synthetic import background

    frames = [background(97, 65, seed=s).astype(np.uint8) for s in range(3)]  # odd sizes: no 4:2:0 cropping
    enc = CODECS["ffv1-lossless"]().run(Clip("odd", frames, [0, 1, 2], Fraction(1, 10), Fraction(10), ""), "lossless")
    assert all(np.array_equal(a, b) for a, b in zip(frames, enc.decoded)) and enc.bytes > 0


def test_survival_counts_a_flicker_at_the_threshold_as_found():
    from vidsieve.bench.detection_eval import CONF, MATCH_CONF, Survival
    from vidsieve.detection.base import Detection

    car = (10.0, 10.0, 50.0, 40.0)
    s = Survival()
    s.add([Detection(car, "car", CONF + 0.01)], [Detection(car, "car", CONF - 0.01)])  # flickered below
    s.add([Detection(car, "car", 0.9)], [Detection(car, "person", 0.9)])  # another class: lost, and a false one
    s.add([Detection(car, "car", 0.9)], [Detection(car, "car", MATCH_CONF - 0.01)])  # gone: lost
    s.add([Detection(car, "car", MATCH_CONF + 0.01)], [])  # never an object
    assert (s.reference, s.found, s.decoded, s.confirmed) == (3, 1, 1, 0)
    assert s.recall == pytest.approx(1 / 3) and s.precision == 0.0 and s.f1 == 0.0
    same = Survival()
    same.add([Detection(car, "car", 0.5)], [Detection(car, "car", 0.5)])
    assert (same.recall, same.precision, same.f1) == (1.0, 1.0, 1.0)
