"""vidsieve's own detector: a small YOLO distilled from a larger teacher (:mod:`vidsieve.training.detector`),
shipped as an ONNX export in ``detection/weights`` with a manifest (sha256, teacher, footage, classes,
input size, measured recall and speed), so that the product detects objects on a machine with no network.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import ModelError
from .base import DEFAULT_CLASSES
from .yolo_onnx import YoloOnnxDetector

WEIGHTS = Path(__file__).resolve().parent / "weights"
MANIFEST = WEIGHTS / "manifest.json"
#: The shipped detector ``--detector auto`` falls back to when no ultralytics weights are on the machine.
DEFAULT_STUDENT = "vidsieve-student"


def manifest() -> dict:
    """The shipped detectors, by name (empty when none is shipped)."""
    if not MANIFEST.exists():
        return {}
    return json.loads(MANIFEST.read_text())["models"]


def available(name: str = DEFAULT_STUDENT) -> bool:
    entry = manifest().get(name)
    return entry is not None and (WEIGHTS / entry["file"]).exists()


def student_path(name: str = DEFAULT_STUDENT) -> tuple[Path, dict]:
    """The weights file of a shipped detector and its manifest entry, checked against its sha256."""
    entry = manifest().get(name)
    if entry is None:
        raise ModelError(f"no shipped detector named {name!r} (shipped: {', '.join(manifest()) or 'none'})")
    path = WEIGHTS / entry["file"]
    if not path.exists():
        raise ModelError(f"the shipped detector's weights are missing: {path}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry["sha256"]:
        raise ModelError(f"the shipped detector's weights are damaged: {path} has sha256 {digest[:12]}, "
                         f"its manifest says {entry['sha256'][:12]}")
    return path, entry


def load_student(name: str = DEFAULT_STUDENT, size: int | None = None,
                 classes: tuple[str, ...] = DEFAULT_CLASSES) -> YoloOnnxDetector:
    path, entry = student_path(name)
    names = {i: n for i, n in enumerate(entry["classes"])}
    det = YoloOnnxDetector(path, size=size or entry["imgsz"], classes=classes, conf=entry.get("conf", 0.25),
                           names=names)
    det.name = f"{name}:{entry['sha256'][:12]}"
    return det
