"""Frame selection on generated scenes with known events, and the score's pure functions."""

import json
from fractions import Fraction

import numpy as np

from conftest import YOLOX, need_shared, run_cli
from vidsieve.datasets.synthetic import Mover, Scene, render, write_scene
from vidsieve.detection.base import Detection
from vidsieve.detection.motion import MotionDetector
from vidsieve.rate import RateController, RatePolicy
from vidsieve.selection.base import Selector
from vidsieve.selection.detect import DetectionSelector, SelectionConfig
from vidsieve.selection.keepall import KeepAllSelector
from vidsieve.selection.score import change_score, small_luma


def select(scene, **cfg):
    tb = Fraction(1, scene.fps)
    sel = DetectionSelector(MotionDetector(), RateController(RatePolicy(), time_base=tb), tb, SelectionConfig(**cfg))
    decisions = [sel.decide(rgb, i) for i, rgb in render(scene)]
    return decisions, sel


def kept_frames(decisions):
    return [i for i, d in enumerate(decisions) if d.keep]


def test_kept_frames_land_on_events():
    scene = Scene(width=320, height=240, frames=120, noise=2.0,
                  movers=[Mover(30, 50, (400, 100), 0.5), Mover(80, 100, (350, 90), 0.3, direction=-1)])
    decisions, _ = select(scene, max_gap=100)
    kept = kept_frames(decisions)
    assert kept[0] == 0
    for start, end in scene.events():
        # Kept soon after the object enters, while it moves, and soon after it leaves.
        assert any(start <= k <= start + 4 for k in kept), (start, kept)
        assert sum(start <= k < end for k in kept) >= 4
        assert any(end - 2 <= k <= end + 4 for k in kept), (end, kept)
    quiet = [k for k in kept if 8 <= k < 28 or 58 <= k < 78 or 108 <= k]
    assert len(quiet) <= 2, quiet


def test_noise_alone_keeps_only_max_gap_frames():
    scene = Scene(width=320, height=240, frames=100, noise=4.0)
    decisions, _ = select(scene, max_gap=4.0)
    kept = kept_frames(decisions)
    # First frame plus one every 4 s (40 frames at 10 fps).
    assert kept == [0, 40, 80], kept
    assert {decisions[k].reason for k in kept[1:]} == {"max-gap"}


def test_lighting_change_is_not_content():
    scene = Scene(width=320, height=240, frames=60, noise=2.0, light_change_at=30, light_gain=1.3)
    decisions, _ = select(scene, max_gap=100)
    assert len(kept_frames(decisions)) <= 2


def test_segments_follow_activity_and_quality_favours_it():
    scene = Scene(width=320, height=240, frames=100, noise=2.0, movers=[Mover(30, 60, (400, 100), 0.5)])
    decisions, sel = select(scene, max_gap=100)
    segs = [s for d in decisions for s in d.closed] + sel.finish()
    assert [s.active for s in segs] == [False, True, False]
    idle, active, _ = segs
    assert active.quality > idle.quality
    assert 28 <= active.start_pts <= 34 and 58 <= active.end_pts <= 75
    assert active.classes.get("motion", 0) >= 1


def test_segment_seconds_splits_long_segments():
    scene = Scene(width=160, height=120, frames=70, noise=1.0)
    decisions, sel = select(scene, segment_seconds=2.0, max_gap=100)
    segs = [s for d in decisions for s in d.closed] + sel.finish()
    assert len(segs) == 4 and all(s.frames <= 20 for s in segs)
    assert all(decisions[s.start_pts].keep for s in segs)


def test_score_terms():
    rgb = next(render(Scene(width=320, height=240, frames=1, noise=0)))[1]
    luma = small_luma(rgb)
    person = Detection((100, 50, 140, 150), "person", 0.9)
    moved = Detection((130, 50, 170, 150), "person", 0.9)
    nudged = Detection((102, 50, 142, 150), "person", 0.9)
    fragment = Detection((105, 60, 135, 100), "person", 0.5)
    assert change_score([person], [], luma, luma, (240, 320)).appeared == 1
    assert change_score([], [person], luma, luma, (240, 320)).left == 1
    assert change_score([moved], [person], luma, luma, (240, 320)).total >= 1
    assert change_score([nudged], [person], luma, luma, (240, 320)).total < 1
    assert change_score([person, fragment], [person], luma, luma, (240, 320)).appeared == 0
    # A class flip on the same box is detector hesitation; a box elsewhere is a new object.
    assert change_score([Detection(person.box, "car", 0.9)], [person], luma, luma, (240, 320)).appeared == 0
    car = Detection((200, 100, 260, 140), "car", 0.9)
    assert change_score([person, car], [person], luma, luma, (240, 320)).appeared == 1
    dark = (luma * 0.7).astype(np.float32)
    s = change_score([], [], dark, luma, (240, 320))
    assert s.total < 0.2 and not s.scene_cut
    other = small_luma(next(render(Scene(width=320, height=240, frames=1, seed=7)))[1])
    assert change_score([], [], other, luma, (240, 320)).scene_cut


def test_both_selectors_implement_the_interface_and_report_segments():
    scene = Scene(width=160, height=120, frames=30, noise=1.0, movers=[Mover(10, 20, (450, 110), 0.5)])
    detect = select(scene, max_gap=100)[1]
    keep = KeepAllSelector(3.0, Fraction(1, 10), segment_seconds=1.0)
    decisions = [keep.decide(rgb, i) for i, rgb in render(scene)]
    for sel in (detect, keep):
        assert isinstance(sel, Selector)
        assert sel.describe()["name"] == sel.name
    assert detect.detector_name == "motion" and keep.detector_name == "none"
    # Keep-all: every frame kept at its quality, a new segment every second (10 frames).
    assert all(d.keep and d.quality == 3.0 for d in decisions)
    assert [i for i, d in enumerate(decisions) if d.new_segment] == [0, 10, 20]
    assert [len(d.closed) for d in decisions].count(1) == 2 and keep.last_kept_pts == 29
    assert [s.frames for s in keep.finish()] == [10]


def test_lag_guard_degrades_selection_and_comes_back():
    from vidsieve.rate import LagGuard

    scene = Scene(width=160, height=120, frames=4, noise=1.0)
    _, sel = select(scene, max_gap=100, detect_every=2, sensitivity=1.5)
    sel.degrade(LagGuard.FEWER_ANALYSES)
    assert sel.cfg.detect_every == 6 and sel.cfg.sensitivity == 0.75 and sel.rate.offset < 0
    sel.degrade(0)
    assert sel.cfg.detect_every == 2 and sel.cfg.sensitivity == 1.5 and sel.rate.offset == 0


def test_cli_segments_in_info_and_target_kbps(tmp_path):
    scene = Scene(width=192, height=128, frames=80, noise=1.0, movers=[Mover(20, 45, (450, 110), 0.5)])
    src = write_scene(scene, tmp_path / "s.mkv")
    out = tmp_path / "s.vsv"
    s = json.loads(run_cli("compress", src, "-o", out, "--detector", "motion", "--hold-dropped", "--json",
                           check=True).stdout)
    assert s["coded"] == s["selected"] < s["frames"] and s["held"] == s["frames"] - s["coded"]
    d = json.loads(run_cli("info", out, "--json", check=True).stdout)
    assert d["frames"] == 80 and len(d["segments"]) >= 2
    active = [g for g in d["segments"] if g["active"]]
    assert active and active[0]["classes"] and active[0]["event_start_s"] >= 1.5
    # Aim at the middle of the reachable range and land within 10%.
    lo = json.loads(run_cli("compress", src, "-o", tmp_path / "lo.vsv", "--detector", "motion", "--quality", "1",
                            "--policy", "archive", "--json", check=True).stdout)["kbps"]
    target = round(lo * 2.0, 1)
    t = json.loads(run_cli("compress", src, "-o", tmp_path / "t.vsv", "--detector", "motion",
                           "--target-kbps", target, "--json", check=True).stdout)
    assert abs(t["kbps"] - target) / target <= 0.10, (t["kbps"], target)


def test_yolox_backend_finds_people(tmp_path):
    need_shared(YOLOX)
    from conftest import PERSON_CLIP
    from vidsieve.datasets.video import VideoReader
    from vidsieve.detection.registry import guess_format, load_detector

    need_shared(PERSON_CLIP)
    assert guess_format(str(YOLOX)) == "yolox"
    det = load_detector(str(YOLOX))
    found = 0
    with VideoReader(PERSON_CLIP) as r:
        for f in r:
            if f.index % 50 == 0:
                found += sum(d.cls == "person" and d.score > 0.5 for d in det.detect(f.rgb))
            if f.index > 600:
                break
    assert found >= 3


def test_detector_errors_are_clean(tmp_path, small_clip):
    from conftest import assert_clean_error

    r = run_cli("compress", small_clip, "-o", tmp_path / "o.vsv", "--detector", "yolo11n.pt")
    assert_clean_error(r, "yolo11n.pt")
    r = run_cli("compress", small_clip, "-o", tmp_path / "o.vsv", "--detector", "missing.onnx")
    assert_clean_error(r, "not found")
    r = run_cli("compress", small_clip, "-o", tmp_path / "o.vsv", "--detector", "yolo11n.yaml",
                "--max-frames", "3", check=True)
    assert "coded" in r.stdout and "selected" in r.stdout
