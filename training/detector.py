"""Distilling a detector into a small YOLO student that ships with vidsieve.

Knowledge transfer (Hinton et al., "Distilling the Knowledge in a Neural Network", 2015; for detectors,
Chen et al., "Learning Efficient Object Detection Models with Knowledge Distillation", NeurIPS 2017):
a teacher any vidsieve backend loads (a YOLOX ONNX, an ultralytics ``.pt``) labels frames sampled from
folders of footage and photographs; its boxes over a confidence threshold are the student's hard labels,
and an ultralytics YOLO11 of a chosen width (Jocher et al., https://github.com/ultralytics/ultralytics) is
trained on them from scratch. Frames are labelled clean and shown to the student degraded the way fixed
cameras degrade them (night-like gamma and noise, blur, compression artefacts, low resolution), on top of
ultralytics' own mosaic, scale, crop, flip and colour augmentations.

A run lives in one folder: ``dataset/`` (frames, labels, ``data.yaml``), ``student.yaml`` (the
architecture), ``run.json`` (the settings), ``train/`` (ultralytics' run) and ``resume.pt`` (the
newest checkpoint with its optimiser, written after every epoch). ``--resume`` continues it from there;
``--max-time`` ends a working day after the epoch that passes it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..datasets.images import collect_files, load_rgb, sample_video_frames
from ..errors import InputError, ModelError, UsageError

#: What surveillance cares about, in COCO's names (the teacher's), in the student's class order.
STUDENT_CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
#: Groups recall is reported for: a vehicle found as another vehicle class still counts as found.
GROUPS = {"person": ("person",), "vehicle": ("bicycle", "car", "motorcycle", "bus", "truck")}
#: Frames are stored at most this wide or tall (the student sees 320 to 416 pixels).
MAX_SIDE = 640


@dataclass
class DistilConfig:
    """A distillation run's settings (``run.json``)."""

    teacher: str
    data: list[str]
    val: list[str]
    imgsz: int = 320
    width: float = 0.125
    depth: float = 0.33
    epochs: int = 120
    batch: int = 32
    label_conf: float = 0.35
    frames_per_video: int = 160
    degrade: float = 0.4
    seed: int = 0
    classes: tuple[str, ...] = STUDENT_CLASSES
    init: str | None = None  # weights (.pt) a new run starts from, e.g. the shipped student's
    counts: dict = field(default_factory=dict)


def student_yaml(width: float, depth: float, nc: int) -> str:
    """The YOLO11 detection architecture at one width and depth, for ``nc`` classes."""
    import ultralytics

    text = (Path(ultralytics.__file__).parent / "cfg" / "models" / "11" / "yolo11.yaml").read_text()
    max_channels = 1024 if width >= 0.25 else 512
    text, n = re.subn(r"scales:.*?\n\n", f"scales:\n  s: [{depth}, {width}, {max_channels}]\n\n", text, flags=re.S)
    text, m = re.subn(r"^nc: \d+", f"nc: {nc}", text, flags=re.M)
    if n != 1 or m != 1:
        raise ModelError("ultralytics' yolo11.yaml has a layout this version of vidsieve does not know")
    return text


# -- the dataset --------------------------------------------------------------------------------------------

def degrade(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the ways a fixed camera's picture is worse than a photograph's."""
    import cv2

    kind = rng.integers(4)
    img = rgb.astype(np.float32) / 255
    if kind == 0:  # night: dark, low-contrast, grey-ish and noisy
        img = img ** rng.uniform(1.8, 3.0) * rng.uniform(0.5, 0.9)
        grey = img.mean(2, keepdims=True)
        img = grey + (img - grey) * rng.uniform(0.0, 0.5)
        img = img + rng.normal(0, rng.uniform(0.01, 0.04), img.shape)
    elif kind == 1:  # out of focus or moving
        k = int(rng.choice([3, 5, 7]))
        img = cv2.GaussianBlur(img, (k, k), 0)
    elif kind == 2:  # a low-resolution camera scaled up
        h, w = img.shape[:2]
        f = rng.uniform(0.3, 0.6)
        small = cv2.resize(img, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    out = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    if kind == 3 or rng.random() < 0.3:  # compression artefacts, alone or after the rest
        ok, enc = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(8, 35))])
        out = np.ascontiguousarray(cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1])
    return out


def _fit(rgb: np.ndarray) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    s = MAX_SIDE / max(h, w)
    if s >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def source_frames(sources: list[str], frames_per_video: int):
    """(name, RGB frame) for every photograph under ``sources`` and ``frames_per_video`` frames spread over
    every video (fewer for short ones: at most one in two)."""
    from ..datasets.video import VideoReader

    images, videos = collect_files(sources)
    if not images and not videos:
        raise InputError(f"no images or videos under {', '.join(map(str, sources))}")
    for p in images:
        yield f"{p.stem}", _fit(load_rgb(p))
    for p in videos:
        with VideoReader(p) as r:
            total = r.frame_count_hint()
        count = min(frames_per_video, max(1, total // 2)) if total else frames_per_video
        for k, rgb in enumerate(sample_video_frames(p, count)):
            yield f"{p.stem}-{k:04d}", _fit(rgb)


def label_lines(dets, classes: tuple[str, ...], w: int, h: int, conf: float) -> list[str]:
    """A teacher's detections over ``conf`` as YOLO label lines (class, centre and size as fractions)."""
    lines = []
    for d in dets:
        if d.score < conf or d.cls not in classes:
            continue
        x1, y1, x2, y2 = d.box
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        lines.append(f"{classes.index(d.cls)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                     f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
    return lines


def build_dataset(cfg: DistilConfig, root: Path, progress: bool = True) -> dict:
    """Label every frame of ``cfg.data`` (train) and ``cfg.val`` (val) with the teacher; write YOLO
    images, labels and ``data.yaml`` under ``root``. Returns the counts per split and class."""
    from PIL import Image

    from tqdm import tqdm

    from ..detection.registry import load_detector

    teacher = load_detector(cfg.teacher, classes=cfg.classes)
    rng = np.random.default_rng(cfg.seed)
    counts: dict = {}
    for split, sources in (("train", cfg.data), ("val", cfg.val)):
        img_dir, lab_dir = root / "images" / split, root / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lab_dir.mkdir(parents=True, exist_ok=True)
        c = counts.setdefault(split, {"frames": 0, **{k: 0 for k in cfg.classes}})
        for name, rgb in tqdm(source_frames(sources, cfg.frames_per_video), desc=f"teacher labels ({split})",
                              unit="frame", disable=not progress):
            lines = label_lines(teacher.detect(rgb), cfg.classes, rgb.shape[1], rgb.shape[0], cfg.label_conf)
            for ln in lines:
                c[cfg.classes[int(ln.split()[0])]] += 1
            c["frames"] += 1
            shown = degrade(rgb, rng) if split == "train" and rng.random() < cfg.degrade else rgb
            Image.fromarray(shown).save(img_dir / f"{name}.jpg", quality=93)
            (lab_dir / f"{name}.txt").write_text("".join(ln + "\n" for ln in lines))
    (root / "data.yaml").write_text(
        f"path: {root.resolve()}\ntrain: images/train\nval: images/val\nnames:\n"
        + "".join(f"  {i}: {n}\n" for i, n in enumerate(cfg.classes)))
    return counts


# -- training -----------------------------------------------------------------------------------------------

class Run:
    """One distillation run's folder."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    @property
    def config_path(self) -> Path:
        return self.folder / "run.json"

    @property
    def resume_path(self) -> Path:
        return self.folder / "resume.pt"

    def config(self) -> DistilConfig:
        if not self.config_path.exists():
            raise InputError(f"{self.folder} is not a train-detector run (no run.json)")
        d = json.loads(self.config_path.read_text())
        d["classes"] = tuple(d["classes"])
        return DistilConfig(**d)

    def save_config(self, cfg: DistilConfig) -> None:
        from ..files import write_json

        write_json(self.config_path, asdict(cfg), indent=1)

    @property
    def progress_path(self) -> Path:
        return self.folder / "progress.json"

    def epochs_done(self) -> int:
        return json.loads(self.progress_path.read_text())["epochs_done"] if self.progress_path.exists() else 0


def start(folder: str | os.PathLike, cfg: DistilConfig, progress: bool = True) -> Run:
    """A new run: the teacher labels the footage, the architecture is written down."""
    run = Run(folder)
    if run.config_path.exists():
        raise UsageError(f"{folder} already holds a run; pass --resume {folder} to continue it")
    if not cfg.val:
        raise UsageError("pass --val with footage kept out of training (the run is measured on it)")
    run.folder.mkdir(parents=True, exist_ok=True)
    cfg.counts = build_dataset(cfg, run.folder / "dataset", progress)
    (run.folder / "student.yaml").write_text(student_yaml(cfg.width, cfg.depth, len(cfg.classes)))
    run.save_config(cfg)
    return run


def train(run: Run, max_time: float | None = None, workers: int = 2, threads: int = 0,
          log: Callable[[str], None] = print) -> Path:
    """Train (or go on training) until the schedule ends or an epoch ends past ``max_time`` seconds, on
    ``threads`` torch threads (0: every core). Returns the checkpoint to go on from."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    from ultralytics import YOLO

    cfg = run.config()
    began = time.monotonic()
    resuming = run.resume_path.exists()
    model = YOLO(str(run.resume_path if resuming else run.folder / "student.yaml"), task="detect")
    if not resuming and cfg.init:
        model.load(cfg.init)  # the layers whose shapes match; a run from the shipped weights goes on from them

    def keep(trainer) -> None:
        # ultralytics strips the optimiser from last.pt when a run ends; keep a copy that can go on.
        from ..files import write_json

        m = trainer.metrics or {}
        log(f"epoch {trainer.epoch + 1}/{trainer.epochs}: mAP50 {m.get('metrics/mAP50(B)', 0):.3f}, "
            f"recall {m.get('metrics/recall(B)', 0):.3f} on the held-out frames "
            f"({(time.monotonic() - began) / 60:.1f} min)")
        if max_time is not None and time.monotonic() - began > max_time:
            trainer.stop = True

        tmp = run.resume_path.with_suffix(".tmp")
        shutil.copyfile(trainer.last, tmp)
        os.replace(tmp, run.resume_path)
        write_json(run.progress_path, {"epochs_done": trainer.epoch + 1, "epochs": trainer.epochs,
                                       "metrics": {k: float(v) for k, v in (trainer.metrics or {}).items()}})

    def use_threads(trainer) -> None:
        # ultralytics trains a CPU on one core fewer than it has (one core of two), keeping one for its
        # data loaders; on CPU it loads data in the training process, so every core can compute.
        import torch

        torch.set_num_threads(threads or os.cpu_count() or 1)

    model.add_callback("on_model_save", keep)
    model.add_callback("on_train_start", use_threads)
    if resuming:
        if run.epochs_done() >= cfg.epochs:
            log(f"{run.folder}: its {cfg.epochs} epochs are done")
            return run.resume_path
        model.train(resume=True, workers=workers, plots=False)
    else:
        model.train(data=str(run.folder / "dataset" / "data.yaml"), epochs=cfg.epochs, imgsz=cfg.imgsz,
                    batch=cfg.batch, device="cpu", workers=workers, project=str(run.folder), name="train",
                    exist_ok=True, plots=False, cache="ram", amp=False, seed=cfg.seed, deterministic=False,
                    patience=0, close_mosaic=max(1, cfg.epochs // 10), scale=0.6, translate=0.2,
                    hsv_v=0.5, fliplr=0.5, mosaic=1.0, verbose=False,
                    # pretrained=False would make ultralytics drop the weights loaded above; and its warm-up
                    # (three epochs, a bias learning rate of 0.1) is for weights that know nothing yet.
                    pretrained=bool(cfg.init), **({"warmup_epochs": 0} if cfg.init else {}))
    return run.resume_path



# -- export and measurement ---------------------------------------------------------------------------------

def export_student(run: Run, out_dir: str | os.PathLike, name: str = "vidsieve-student",
                   measured: bool = True) -> Path:
    """The run's newest weights as ``out_dir/NAME.onnx`` (what vidsieve runs, through onnxruntime) and
    ``NAME.pt`` (for ultralytics), with their entry in ``out_dir/manifest.json``; with ``measured``, the
    entry holds the export's agreement with the teacher on the held-out frames and its speed
    (:func:`measure`)."""
    import hashlib
    from datetime import datetime, timezone

    from ultralytics import YOLO

    from ..files import write_json

    cfg = run.config()
    if not run.resume_path.exists():
        raise InputError(f"{run.folder} has no trained epoch to export yet")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = run.folder / "export"
    work.mkdir(exist_ok=True)
    ckpt = work / f"{name}.pt"
    shutil.copyfile(run.resume_path, ckpt)
    from ultralytics.utils.torch_utils import strip_optimizer

    strip_optimizer(ckpt)  # weights only, half precision: the .pt users load
    onnx = Path(YOLO(str(ckpt), task="detect").export(format="onnx", imgsz=cfg.imgsz, simplify=False,
                                                       dynamic=False, half=False))
    for f in (onnx, ckpt):
        shutil.copyfile(f, out / f.name)
    results = measure(run, out / onnx.name) if measured else {}
    doc_path = out / "manifest.json"
    doc = json.loads(doc_path.read_text()) if doc_path.exists() else {"format": 1, "models": {}}
    teacher = Path(cfg.teacher)
    doc["models"][name] = {
        "file": onnx.name, "sha256": hashlib.sha256((out / onnx.name).read_bytes()).hexdigest(),
        "pt": ckpt.name, "pt_sha256": hashlib.sha256((out / ckpt.name).read_bytes()).hexdigest(),
        "architecture": f"YOLO11 detect, depth {cfg.depth}, width {cfg.width}",
        "classes": list(cfg.classes), "imgsz": cfg.imgsz, "conf": results.get("conf", 0.25),
        "teacher": {"file": teacher.name, "sha256": hashlib.sha256(teacher.read_bytes()).hexdigest()
                    if teacher.exists() else None, "label_conf": cfg.label_conf},
        "training": {"footage": [_source_name(d) for d in cfg.data], "held_out": [_source_name(d) for d in cfg.val],
                     "frames": cfg.counts, "epochs": run.epochs_done(), "of_epochs": cfg.epochs,
                     "batch": cfg.batch, "degraded_share": cfg.degrade},
        "results": results,
        "exported": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    write_json(doc_path, doc)
    return out / onnx.name


def _source_name(path: str) -> str:
    """A footage source as the manifest names it: a file by its name, a folder by its last two parts."""
    p = Path(path)
    return p.name if p.suffix else f"{p.parent.name}/{p.name}/"


def _group_of(cls: str) -> str | None:
    return next((g for g, members in GROUPS.items() if cls in members), None)


def _matches(objects, candidates, same) -> int:
    from ..detection.base import iou_matrix

    if not objects or not candidates:
        return 0
    m = iou_matrix([d.box for d in objects], [d.box for d in candidates])
    ok = np.array([[same(a, b) for b in candidates] for a in objects])
    return int((np.where(ok, m, 0.0) >= 0.5).any(1).sum())


def agreement(student, teacher, frames, teacher_conf: float = 0.4, match_conf: float = 0.2) -> dict:
    """Recall and precision of ``student`` against ``teacher`` over ``frames`` (RGB arrays).

    The teacher's boxes at ``teacher_conf`` or above are the objects; the student finds one when a box it
    reports (at its own operating threshold) overlaps it by IoU 0.5 with the same class (per class) or a
    class of the same group (person, vehicle). Precision is the converse, against the teacher's boxes down
    to ``match_conf`` (the hysteresis of :mod:`vidsieve.bench.detection_eval`)."""
    return agreement_of([(teacher.detect(f), student.detect(f)) for f in frames], 0.0, teacher_conf, match_conf)


def agreement_of(pairs, student_conf: float = 0.0, teacher_conf: float = 0.4, match_conf: float = 0.2) -> dict:
    """:func:`agreement` of detections already made: (teacher's, student's) per frame, the student's
    kept from ``student_conf`` up (what running it at that threshold gives: non-maximum suppression
    never lets a box suppress a better-scored one)."""
    keys = list(GROUPS) + list(STUDENT_CLASSES)
    tally = {k: {"objects": 0, "found": 0, "reported": 0, "confirmed": 0} for k in keys}
    n = 0
    for t_all, s_all in pairs:
        n += 1
        t = [d for d in t_all if d.score >= teacher_conf]
        t_low = [d for d in t_all if d.score >= match_conf]
        s = [d for d in s_all if d.score >= student_conf]
        for k in keys:
            if k in GROUPS:
                sel = lambda ds, k=k: [d for d in ds if _group_of(d.cls) == k]  # noqa: E731
                same = lambda a, b: _group_of(a.cls) == _group_of(b.cls)  # noqa: E731
            else:
                sel = lambda ds, k=k: [d for d in ds if d.cls == k]  # noqa: E731
                same = lambda a, b: a.cls == b.cls  # noqa: E731
            tk, sk = sel(t), sel(s)
            row = tally[k]
            row["objects"] += len(tk)
            row["reported"] += len(sk)
            row["found"] += _matches(tk, sk, same)
            row["confirmed"] += _matches(sk, sel(t_low), same)
    out = {"frames": n}
    for k, row in tally.items():
        p = row["confirmed"] / row["reported"] if row["reported"] else None
        r = row["found"] / row["objects"] if row["objects"] else None
        out[k] = {**row, "recall": None if r is None else round(r, 4), "precision": None if p is None else round(p, 4),
                  "f1": round(2 * p * r / (p + r), 4) if p and r else (0.0 if r is not None else None)}
    return out


#: Operating thresholds the export chooses among (the one with the best mean F1 of people and vehicles).
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def held_out_frames(run: Run):
    """(scene, RGB) of the run's held-out frames, as the teacher labelled them."""
    for p in sorted((run.folder / "dataset" / "images" / "val").glob("*.jpg")):
        yield p.stem.rsplit("-", 1)[0], load_rgb(p)


def frames_per_second(detector, rgb: np.ndarray, seconds: float = 5.0) -> float:
    """Frames a second ``detector`` takes ``rgb`` through, pre- and post-processing included."""
    for _ in range(3):
        detector.detect(rgb)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        detector.detect(rgb)
        n += 1
    return n / (time.perf_counter() - t0)


def measure(run: Run, onnx: Path) -> dict:
    """The exported student against its teacher on the held-out frames: its operating threshold (of
    :data:`THRESHOLDS`, the best mean F1 of people and vehicles there: chosen on the frames it is
    reported on, and said so in the docs), recall and precision at it overall and per scene, the sweep;
    and the frames per second of the student, the teacher and the motion detector on this machine (pre-
    and post-processing included)."""
    from datetime import datetime, timezone

    from ..detection.registry import load_detector
    from ..detection.yolo_onnx import YoloOnnxDetector

    cfg = run.config()
    student = YoloOnnxDetector(onnx, size=cfg.imgsz, classes=cfg.classes, names=dict(enumerate(cfg.classes)),
                               conf=min(THRESHOLDS))
    teacher = load_detector(cfg.teacher, classes=cfg.classes)
    frames = list(held_out_frames(run))
    if not frames:
        raise InputError(f"{run.folder} has no held-out frames to measure on")
    scenes = sorted({s for s, _ in frames})
    pairs = [(sc, (teacher.detect(f), student.detect(f))) for sc, f in frames]
    sweep = {c: agreement_of([p for _, p in pairs], c) for c in THRESHOLDS}

    def score(a: dict) -> float:
        return sum(a[g]["f1"] or 0.0 for g in GROUPS) / len(GROUPS)

    conf = max(THRESHOLDS, key=lambda c: score(sweep[c]))
    student.conf = conf
    rgb = frames[len(frames) // 2][1]
    return {
        "conf": conf,
        "held_out": sweep[conf],
        "per_scene": {sc: agreement_of([p for s, p in pairs if s == sc], conf) for sc in scenes},
        "thresholds": {str(c): {g: {k: sweep[c][g][k] for k in ("recall", "precision", "f1")} for g in GROUPS}
                       for c in THRESHOLDS},
        "fps": {"student": round(frames_per_second(student, rgb), 1),
                "teacher": round(frames_per_second(teacher, rgb), 1),
                "motion": round(frames_per_second(load_detector("motion"), rgb), 1), "threads": os.cpu_count(),
                "frame": f"{rgb.shape[1]}x{rgb.shape[0]}"},
        "measured": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
