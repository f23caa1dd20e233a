"""Backend for any model ultralytics loads: ``yolo11n.pt``, a ``.pt`` path, an exported ``.onnx``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .base import COCO_NAMES, DEFAULT_CLASSES, Detection, Detector


def offline() -> bool:
    return os.environ.get("YOLO_OFFLINE", "").lower() in ("1", "true", "yes") or bool(
        os.environ.get("VIDSIEVE_OFFLINE"))


def local_weights(spec: str) -> Path | None:
    """Where ultralytics would find ``spec`` without downloading, if anywhere (without importing it: an
    ingester that never runs it should not pay for it)."""
    p = Path(spec)
    if p.exists():
        return p
    if p.suffix in (".yaml", ".yml"):
        return p  # an architecture definition builds a model, no weights needed
    d = _weights_dir()
    if d is not None and (d / p.name).exists():
        return d / p.name
    return None


def _weights_dir() -> Path | None:
    """ultralytics' ``weights_dir`` setting, read from its settings file."""
    import json
    import platform

    if os.environ.get("YOLO_CONFIG_DIR"):
        base = Path(os.environ["YOLO_CONFIG_DIR"])
    elif platform.system() == "Windows":
        base = Path.home() / "AppData" / "Roaming" / "Ultralytics"
    elif platform.system() == "Darwin":
        base = Path.home() / "Library" / "Application Support" / "Ultralytics"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "Ultralytics"
    try:
        return Path(json.loads((base / "settings.json").read_text())["weights_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class UltralyticsDetector(Detector):
    """Ultralytics YOLO models (Jocher et al., https://github.com/ultralytics/ultralytics)."""

    name = "ultralytics"
    default_size = 320

    def __init__(self, spec: str = "yolo11n.pt", size: int | None = None,
                 classes: tuple[str, ...] = DEFAULT_CLASSES, conf: float = 0.2):
        os.environ.setdefault("YOLO_VERBOSE", "False")
        from ultralytics import YOLO

        if local_weights(spec) is None and offline():
            raise ModelError(f"{spec} is not on this machine and downloads are off (YOLO_OFFLINE); "
                             f"place {Path(spec).name} in the working folder or pass --detector PATH")
        try:
            self.model = YOLO(spec, task="detect")
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            msg = msg.encode("ascii", "ignore").decode().strip()
            raise ModelError(f"cannot load detector {spec} ({msg}); offline, place {Path(spec).name} "
                             f"in the working folder or pass --detector PATH") from None
        self.spec = spec
        self.size = int(size or self.default_size)
        self.conf = conf
        names = getattr(self.model, "names", None) or dict(enumerate(COCO_NAMES))
        self.names = dict(names) if isinstance(names, dict) else dict(enumerate(names))
        wanted = set(classes) if classes else None
        self.class_ids = [i for i, n in self.names.items() if wanted is None or n in wanted] or None
        self.name = f"ultralytics:{Path(spec).name}"

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        res = self.model.predict(np.ascontiguousarray(rgb[:, :, ::-1]), imgsz=self.size, conf=self.conf,
                                 classes=self.class_ids, verbose=False, device="cpu")[0]
        b = res.boxes
        if b is None or len(b) == 0:
            return []
        xyxy = b.xyxy.cpu().numpy()
        cls = b.cls.cpu().numpy().astype(int)
        sc = b.conf.cpu().numpy()
        return [Detection(tuple(map(float, xyxy[i])), self.names.get(int(cls[i]), str(cls[i])), float(sc[i]))
                for i in range(len(xyxy))]
