"""`vidsieve train-detector`: teacher labels, a resumable ultralytics run, an ONNX export vidsieve runs."""

from __future__ import annotations

import json

import numpy as np

from conftest import PERSON_CLIP, YOLOX, assert_clean_error, need_shared, run_cli
from vidsieve.detection.base import Detection
from vidsieve.training import detector as distil


def test_labels_are_the_teachers_boxes_over_the_threshold_in_the_students_classes():
    dets = [Detection((10, 20, 50, 100), "person", 0.9), Detection((0, 0, 40, 30), "car", 0.3),
            Detection((60, 10, 100, 50), "truck", 0.5), Detection((5, 5, 6, 6), "person", 0.9),
            Detection((0, 0, 100, 100), "dog", 0.9)]
    lines = distil.label_lines(dets, distil.STUDENT_CLASSES, 200, 100, 0.35)
    assert lines == ["0 0.150000 0.600000 0.200000 0.800000", "5 0.400000 0.300000 0.200000 0.400000"]


def test_degraded_frames_keep_their_size_and_differ():
    rng = np.random.default_rng(0)
    rgb = (np.random.default_rng(1).random((60, 80, 3)) * 255).astype(np.uint8)
    for _ in range(8):
        out = distil.degrade(rgb, rng)
        assert out.shape == rgb.shape and out.dtype == np.uint8 and not np.array_equal(out, rgb)


def test_agreement_counts_found_objects_by_class_and_by_group():
    class Fixed:
        def __init__(self, dets):
            self.dets = dets

        def detect(self, rgb):
            return self.dets

    teacher = Fixed([Detection((0, 0, 10, 20), "person", 0.9), Detection((50, 50, 90, 70), "truck", 0.8),
                     Detection((100, 0, 140, 20), "car", 0.3)])
    student = Fixed([Detection((1, 0, 10, 20), "person", 0.6), Detection((50, 50, 90, 71), "car", 0.7),
                     Detection((100, 0, 140, 20), "car", 0.5), Detection((200, 200, 220, 240), "person", 0.5)])
    got = distil.agreement(student, teacher, [np.zeros((1, 1, 3), np.uint8)] * 2)
    assert got["person"]["recall"] == 1.0 and got["person"]["precision"] == 0.5
    assert got["vehicle"]["recall"] == 1.0 and got["vehicle"]["precision"] == 1.0  # a truck seen as a car
    assert got["truck"]["recall"] == 0.0 and got["car"]["objects"] == 0 and got["car"]["precision"] == 0.5
    assert got["frames"] == 2


def test_a_run_trains_resumes_exports_and_the_export_detects(tmp_path):
    need_shared(PERSON_CLIP)
    need_shared(YOLOX)
    run = tmp_path / "run"
    common = ["--epochs", "2", "--frames-per-video", "6", "--batch", "4", "--workers", "0", "-q"]
    r = run_cli("train-detector", "--teacher", YOLOX, "--data", PERSON_CLIP, "--val", PERSON_CLIP,
                "--out", run, "--max-time", "1s", *common, timeout=900)
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "progress.json").read_text())["epochs_done"] == 1  # stopped after its first epoch
    labels = list((run / "dataset" / "labels" / "train").glob("*.txt"))
    assert len(labels) == 6 and any(p.read_text().startswith("0 ") for p in labels)  # people, class 0
    import yaml

    assert yaml.safe_load((run / "train" / "args.yaml").read_text())["warmup_epochs"] > 0  # from scratch: warm-up
    out = tmp_path / "weights"
    r = run_cli("train-detector", "--resume", run, "--export", out, "--workers", "0", "-q", timeout=900)
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "progress.json").read_text())["epochs_done"] == 2
    entry = json.loads((out / "manifest.json").read_text())["models"]["vidsieve-student"]
    assert entry["training"]["epochs"] == 2 and entry["teacher"]["file"] == YOLOX.name
    assert set(entry["results"]["held_out"]) >= {"person", "vehicle", "frames"}
    assert entry["results"]["fps"]["student"] > 0
    from vidsieve.detection.yolo_onnx import YoloOnnxDetector

    det = YoloOnnxDetector(out / entry["file"], classes=tuple(entry["classes"]))
    assert det.size == 320 and det.names == dict(enumerate(distil.STUDENT_CLASSES))
    assert isinstance(det.detect(np.zeros((90, 160, 3), np.uint8)), list)
    r = run_cli("train-detector", "--resume", run, "-q")  # its schedule is spent: nothing to do, no error
    assert r.returncode == 0, r.stderr


def test_bad_requests_are_one_line_errors(tmp_path):
    assert_clean_error(run_cli("train-detector", "--data", tmp_path), "--out")
    assert_clean_error(run_cli("train-detector", "--resume", tmp_path), "not a train-detector run")
    assert_clean_error(run_cli("train-detector", "--out", tmp_path / "r", "--data", tmp_path,
                               "--teacher", "motion"), "--val")
    (tmp_path / "empty").mkdir()
    assert_clean_error(run_cli("train-detector", "--out", tmp_path / "r", "--data", tmp_path / "empty",
                               "--val", tmp_path / "empty", "--teacher", "motion"), "no images or videos")
    assert not (tmp_path / "r" / "run.json").exists()


def test_a_new_run_can_start_from_the_shipped_weights(tmp_path):
    """--init: the architecture of the run, the weights of a .pt (here the shipped student's, whose
    ultralytics checkpoint is part of vidsieve)."""
    import torch
    from ultralytics import YOLO

    from vidsieve.detection.student import WEIGHTS, manifest

    entry = manifest()["vidsieve-student"]
    y = tmp_path / "student.yaml"
    y.write_text(distil.student_yaml(0.1875, 0.33, len(distil.STUDENT_CLASSES)))
    fresh = YOLO(str(y), task="detect")
    before = next(fresh.model.parameters()).detach().clone()
    fresh.load(str(WEIGHTS / entry["pt"]))
    shipped = YOLO(str(WEIGHTS / entry["pt"]), task="detect")
    after, want = next(fresh.model.parameters()), next(shipped.model.parameters())
    assert torch.equal(after.float(), want.float()) and not torch.equal(before, after.float())


def test_a_run_from_trained_weights_trains_them_without_a_warm_up(tmp_path):
    """--init: what trains is the given weights (ultralytics drops loaded weights when told they are not
    pretrained), without the warm-up (a bias learning rate of 0.1 for three epochs) that would undo them."""
    import torch
    import yaml
    from ultralytics import YOLO

    from vidsieve.detection.student import WEIGHTS, manifest

    need_shared(PERSON_CLIP)
    need_shared(YOLOX)
    run = tmp_path / "run"
    r = run_cli("train-detector", "--teacher", YOLOX, "--data", PERSON_CLIP, "--val", PERSON_CLIP, "--out", run,
                "--init", WEIGHTS / manifest()["vidsieve-student"]["pt"], "--epochs", "1", "--frames-per-video", "4",
                "--batch", "4", "--workers", "0", "-q", timeout=900)
    assert r.returncode == 0, r.stderr
    args = yaml.safe_load((run / "train" / "args.yaml").read_text())
    assert args["warmup_epochs"] == 0
    trained = next(YOLO(str(run / "resume.pt"), task="detect").model.parameters()).detach().float().reshape(-1)
    shipped = YOLO(str(WEIGHTS / manifest()["vidsieve-student"]["pt"]), task="detect")
    start = next(shipped.model.parameters()).detach().float().reshape(-1)
    assert torch.nn.functional.cosine_similarity(trained, start, dim=0) > 0.9  # a fresh start would be near 0
