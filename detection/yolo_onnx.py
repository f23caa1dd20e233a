"""Backend for ultralytics-layout YOLO ONNX exports, run by onnxruntime (no torch, no ultralytics).

Input 1x3xSxS RGB 0..1, letterboxed in the centre with value 114; output [1, 4 + C, A]: per anchor
point the box centre and size in input pixels and C class probabilities (YOLOv8/YOLO11 heads, Jocher et
al., https://github.com/ultralytics/ultralytics). Class names come from the export's ``names`` metadata.
vidsieve's shipped detector (:mod:`.student`) is one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cv2
import numpy as np

from ..errors import ModelError
from .base import DEFAULT_CLASSES, Detection, Detector


def open_session(path: Path, threads: int = 0):
    """An onnxruntime session for ``path``; :class:`ModelError` in one line when it cannot be one."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("onnxruntime is not installed (pip install onnxruntime)") from None
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load detector {path}: {first[:200]}") from None


class YoloOnnxDetector(Detector):
    name = "yolo-onnx"
    default_size = 320

    def __init__(self, path: str | Path, size: int | None = None, classes: tuple[str, ...] = DEFAULT_CLASSES,
                 conf: float = 0.25, nms: float = 0.5, threads: int = 0, names: dict[int, str] | None = None):
        p = Path(path)
        if not p.exists():
            raise ModelError(f"detector model not found: {path}")
        self.sess = open_session(p, threads)
        inp = self.sess.get_inputs()[0]
        self.input_name = inp.name
        fixed = inp.shape[2] if isinstance(inp.shape[2], int) else None
        self.size = int(fixed or size or self.default_size)  # a fixed-size export ignores --detect-size
        self.names = names or _names(self.sess)
        out = self.sess.get_outputs()[0].shape
        if len(out) != 3 or (isinstance(out[1], int) and out[1] != 4 + len(self.names)):
            raise ModelError(f"{p.name} is not a YOLO detection export ([1, 4 + classes, anchors] output)")
        wanted = set(classes) if classes else None
        self.class_ids = np.array([i for i, n in sorted(self.names.items()) if wanted is None or n in wanted], int)
        self.conf, self.nms = conf, nms
        self.name = f"yolo-onnx:{p.name}"

    def _letterbox(self, rgb: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        h, w = rgb.shape[:2]
        r = min(self.size / h, self.size / w)
        nh, nw = max(1, int(round(h * r))), max(1, int(round(w * r)))
        top, left = (self.size - nh) // 2, (self.size - nw) // 2
        img = np.full((self.size, self.size, 3), 114, np.uint8)
        img[top : top + nh, left : left + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        return img.transpose(2, 0, 1)[None].astype(np.float32) / 255, r, left, top

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        blob, r, left, top = self._letterbox(np.ascontiguousarray(rgb))
        out = self.sess.run(None, {self.input_name: blob})[0][0]  # [4 + C, A]
        if not len(self.class_ids):
            return []
        scores = out[4:][self.class_ids]
        best = scores.argmax(0)
        conf = scores[best, np.arange(scores.shape[1])]
        keep = conf >= self.conf
        if not keep.any():
            return []
        cx, cy, bw, bh = out[:4, keep]
        cls, conf = self.class_ids[best[keep]], conf[keep]
        boxes = np.stack([(cx - bw / 2 - left) / r, (cy - bh / 2 - top) / r, bw / r, bh / r], 1)
        h, w = rgb.shape[:2]
        dets = []
        for c in np.unique(cls):
            m = np.flatnonzero(cls == c)
            idx = cv2.dnn.NMSBoxes(boxes[m].tolist(), conf[m].tolist(), self.conf, self.nms)
            for i in np.array(idx).reshape(-1):
                x, y, bw_, bh_ = boxes[m[i]]
                x1, y1 = max(0.0, float(x)), max(0.0, float(y))
                x2, y2 = min(float(w), float(x + bw_)), min(float(h), float(y + bh_))
                if x2 > x1 and y2 > y1:
                    dets.append(Detection((x1, y1, x2, y2), self.names[int(c)], float(conf[m[i]])))
        return dets


def _names(sess) -> dict[int, str]:
    """The class names ultralytics writes into an export's metadata (a Python dict literal)."""
    raw = sess.get_modelmeta().custom_metadata_map.get("names")
    try:
        names = ast.literal_eval(raw) if raw else None
    except (ValueError, SyntaxError):
        names = None
    if not isinstance(names, dict) or not all(isinstance(k, int) and isinstance(v, str) for k, v in names.items()):
        raise ModelError("the ONNX detector carries no class names (export it with ultralytics)")
    return names
