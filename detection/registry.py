"""The table of detector backends, and turning ``--detector SPEC`` into one of them."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import ModelError
from .base import DEFAULT_CLASSES, Detector


def _ultralytics(spec, size, classes):
    from .ultralytics_backend import UltralyticsDetector

    return UltralyticsDetector(spec, size=size, classes=classes)


def _yolox(spec, size, classes):
    from .yolox import YoloxDetector

    return YoloxDetector(spec, size=size, classes=classes)


def _yolo_onnx(spec, size, classes):
    from .yolo_onnx import YoloOnnxDetector

    return YoloOnnxDetector(spec, size=size, classes=classes)


def _student(spec, size, classes):
    from .student import load_student

    return load_student(spec, size=size, classes=classes)


def _motion(spec, size, classes):
    from .motion import MotionDetector

    return MotionDetector(size=size)


BACKENDS: dict[str, Callable[..., Detector]] = {"ultralytics": _ultralytics, "yolox": _yolox,
                                                "yolo-onnx": _yolo_onnx, "student": _student, "motion": _motion}
#: What ``--detector auto`` runs when its weights are on this machine (it never downloads them).
AUTO_MODEL = "yolo11n.pt"


def guess_format(spec: str) -> str:
    """Backend for a detector spec: 'motion', a shipped detector's name, a YOLOX- or ultralytics-layout
    .onnx, or anything ultralytics loads."""
    from .student import manifest

    if spec == "motion":
        return "motion"
    if spec in manifest():
        return "student"
    p = Path(spec)
    if p.suffix.lower() == ".onnx":
        if not p.exists():
            raise ModelError(f"detector model not found: {spec}")
        return "yolox" if _looks_like_yolox(p) else "yolo-onnx"
    if p.suffix.lower() in (".pt", ".yaml", ".yml", ".torchscript", ".engine") or p.name.startswith(("yolo", "rtdetr")):
        return "ultralytics"
    if p.suffix:
        raise ModelError(f"cannot tell which backend runs {spec}; pass --detector-format")
    raise ModelError(f"unknown detector {spec!r}: use auto, motion, vidsieve-student, a yolo*.pt name, "
                     f"or a .pt/.onnx path")


def _looks_like_yolox(p: Path) -> bool:
    """YOLOX exports [1, anchors, 5 + classes]; ultralytics exports [1, 4 + classes, anchors]."""
    try:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        out = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]).get_outputs()[0].shape
        return isinstance(out[-1], int) and isinstance(out[1], int) and out[1] > out[-1]
    except Exception:
        return "yolox" in p.name.lower()


def load_detector(spec: str = "auto", fmt: str | None = None, size: int | None = None,
                  classes: tuple[str, ...] | None = None, log_fn: Callable[[str], None] | None = None) -> Detector:
    """The detector ``spec`` names. ``auto``: ultralytics' ``yolo11n.pt`` when its weights are on this
    machine, else vidsieve's shipped detector (no download either way); motion boxes only when neither
    loads, with a note to ``log_fn``."""
    classes = tuple(classes) if classes else DEFAULT_CLASSES
    if spec == "auto" and fmt is None:
        from .student import DEFAULT_STUDENT
        from .ultralytics_backend import local_weights

        reasons = []
        if local_weights(AUTO_MODEL) is not None:
            try:
                return _ultralytics(AUTO_MODEL, size, classes)
            except ModelError as exc:
                reasons.append(str(exc))
        try:
            return _student(DEFAULT_STUDENT, size, classes)
        except ModelError as exc:
            reasons.append(str(exc))
        if log_fn:
            log_fn(f"vidsieve: detector: {'; '.join(reasons)}; using motion (background subtraction) instead")
        return _motion("motion", size, classes)
    fmt = fmt or guess_format(spec)
    if fmt not in BACKENDS:
        raise ModelError(f"unknown detector format {fmt!r}; choose from {', '.join(BACKENDS)}")
    return BACKENDS[fmt](spec, size, classes)
