"""The shipped detector: a small YOLO distilled from YOLOX-Nano, run by onnxruntime, what ``auto`` uses offline."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from conftest import CAR_CLIP, PERSON_CLIP, YOLOX, assert_clean_error, need_shared, run_cli
from vidsieve.detection import student
from vidsieve.detection.base import iou_matrix
from vidsieve.detection.registry import guess_format, load_detector
from vidsieve.errors import ModelError


def test_the_shipped_student_matches_its_manifest_and_loads_without_torch_or_ultralytics():
    entry = student.manifest()[student.DEFAULT_STUDENT]
    path = student.WEIGHTS / entry["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    assert path.stat().st_size < 8 << 20  # a few MB in the repository
    assert {"person", "car", "truck", "bus"} <= set(entry["classes"])
    assert entry["results"]["held_out"]["person"]["recall"] is not None  # measured, not promised
    det = load_detector(student.DEFAULT_STUDENT)
    assert det.name == f"{student.DEFAULT_STUDENT}:{entry['sha256'][:12]}" and det.size == entry["imgsz"]
    assert guess_format(student.DEFAULT_STUDENT) == "student"
    assert det.detect(np.full((90, 160, 3), 128, np.uint8)) == []  # a grey picture holds nothing


def test_auto_is_the_student_when_no_ultralytics_weights_are_here(monkeypatch):
    from vidsieve.detection import ultralytics_backend

    monkeypatch.setattr(ultralytics_backend, "local_weights", lambda spec: None)
    notes = []
    det = load_detector("auto", log_fn=notes.append)
    assert det.name.startswith(student.DEFAULT_STUDENT) and notes == []


@pytest.fixture(scope="module")
def scene_parts():
    """A person the teacher (YOLOX-Nano) is sure of, cut from a frame of the shared person clip and
    scaled to 100 pixels (a person at a surveillance camera's usual distance in a 640x360 frame), and an
    empty scene: a frame of the shared car park clip, where no one walks."""
    need_shared(PERSON_CLIP)
    need_shared(CAR_CLIP)
    need_shared(YOLOX)
    import cv2

    from vidsieve.datasets.images import sample_video_frames

    teacher = load_detector(str(YOLOX))
    empty = cv2.resize(sample_video_frames(CAR_CLIP, 3)[1], (640, 360), interpolation=cv2.INTER_AREA)
    for rgb in sample_video_frames(PERSON_CLIP, 40):
        people = [d for d in teacher.detect(rgb) if d.cls == "person" and d.score > 0.7]
        if people:
            x1, y1, x2, y2 = (int(round(v)) for v in people[0].box)
            crop = rgb[y1:y2, x1:x2]
            h = 100
            person = cv2.resize(crop, (max(1, round(crop.shape[1] * h / crop.shape[0])), h),
                                interpolation=cv2.INTER_AREA)
            return person, empty
    pytest.fail("the teacher found no person in the shared person clip")


def test_the_student_finds_a_person_placed_in_a_scene_where_it_was_placed(scene_parts):
    person, empty = scene_parts
    det = load_detector(student.DEFAULT_STUDENT)
    h, w = person.shape[:2]
    places = [(200, 240), (430, 120)]
    boxes = [(x, y, x + w, y + h) for x, y in places]
    before = [d.box for d in det.detect(empty) if d.cls == "person"]
    assert not before or iou_matrix(boxes, before).max() < 0.1  # nobody there before
    for (x, y), box in zip(places, boxes):
        frame = empty.copy()
        frame[y : y + h, x : x + w] = person
        people = [d.box for d in det.detect(frame) if d.cls == "person"]
        assert people, f"no person found at {x}, {y}"
        best = iou_matrix([box], people).max()
        assert best >= 0.5, f"the person box at {x}, {y} overlaps the placed person by {best:.2f}"


def test_damaged_weights_are_refused_in_one_line(tmp_path, monkeypatch, small_clip):
    weights = tmp_path / "weights"
    shutil.copytree(student.WEIGHTS, weights)
    entry = student.manifest()[student.DEFAULT_STUDENT]
    onnx = weights / entry["file"]
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    monkeypatch.setattr(student, "WEIGHTS", weights)
    monkeypatch.setattr(student, "MANIFEST", weights / "manifest.json")
    with pytest.raises(ModelError, match="damaged.*sha256"):
        load_detector(student.DEFAULT_STUDENT)
    notes = []
    from vidsieve.detection import ultralytics_backend

    monkeypatch.setattr(ultralytics_backend, "local_weights", lambda spec: None)
    assert load_detector("auto", log_fn=notes.append).name == "motion"
    assert len(notes) == 1 and "damaged" in notes[0] and "using motion" in notes[0]

    cut = tmp_path / "cut.onnx"
    cut.write_bytes(bytes(data[: len(data) // 3]))
    assert_clean_error(run_cli("compress", small_clip, "-o", tmp_path / "o.vsv", "--detector", cut),
                       "cannot load detector")
    assert not (tmp_path / "o.vsv").exists()


def test_the_cli_uses_the_student_by_default_and_info_names_it(small_clip, tmp_path):
    out = tmp_path / "o.vsv"
    r = run_cli("compress", small_clip, "-o", out, check=True)
    assert "using motion" not in r.stderr, r.stderr
    r = run_cli("info", out, "--json", check=True)
    import json

    entry = student.manifest()[student.DEFAULT_STUDENT]
    assert f"{student.DEFAULT_STUDENT}:{entry['sha256'][:12]}" in json.dumps(json.loads(r.stdout))
