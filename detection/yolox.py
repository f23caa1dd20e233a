"""Backend for YOLOX-layout ONNX models (Ge et al., "YOLOX: Exceeding YOLO Series in 2021", arXiv:2107.08430).

Input 1x3xSxS BGR 0..255, letterboxed at the top-left with value 114; output
[1, A, 5 + C]: per anchor-free cell (strides 8, 16, 32) the centre as a grid
offset, log width and height, objectness and C class scores.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import ModelError
from .base import COCO_NAMES, DEFAULT_CLASSES, Detection, Detector


def _grids(size: int, strides=(8, 16, 32)) -> tuple[np.ndarray, np.ndarray]:
    grids, steps = [], []
    for s in strides:
        n = size // s
        yv, xv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack([xv, yv], -1).reshape(-1, 2))
        steps.append(np.full((n * n, 1), s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(steps).astype(np.float32)


class YoloxDetector(Detector):
    name = "yolox"
    default_size = 416

    def __init__(self, path: str, size: int | None = None, classes: tuple[str, ...] = DEFAULT_CLASSES,
                 conf: float = 0.2, nms: float = 0.45, engine: str = "auto"):
        p = Path(path)
        if not p.exists():
            raise ModelError(f"YOLOX model not found: {path}")
        self.sess = None
        if engine in ("auto", "onnxruntime"):
            try:
                import onnxruntime as ort

                so = ort.SessionOptions()
                so.log_severity_level = 3
                self.sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
                self.input_name = self.sess.get_inputs()[0].name
                shape = self.sess.get_inputs()[0].shape
            except ImportError:
                if engine == "onnxruntime":
                    raise ModelError("onnxruntime is not installed") from None
            except Exception as exc:
                raise ModelError(f"cannot load {path}: {str(exc).splitlines()[0]}") from None
        if self.sess is None:
            try:
                self.net = cv2.dnn.readNetFromONNX(str(p))
            except cv2.error as exc:
                raise ModelError(f"cannot load {path}: {str(exc).splitlines()[0]}") from None
            shape = [1, 3, size or self.default_size, size or self.default_size]
        fixed = shape[2] if isinstance(shape[2], int) else None
        self.size = int(fixed or size or self.default_size)  # a fixed-size export ignores --detect-size
        self.grid, self.stride = _grids(self.size)
        self.conf, self.nms = conf, nms
        self.class_ids = np.array([i for i, n in enumerate(COCO_NAMES) if not classes or n in classes])
        self.name = f"yolox:{p.name}"

    def _letterbox(self, bgr: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = bgr.shape[:2]
        r = min(self.size / h, self.size / w)
        nh, nw = max(1, int(round(h * r))), max(1, int(round(w * r)))
        img = np.full((self.size, self.size, 3), 114, np.uint8)
        img[:nh, :nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        return img.transpose(2, 0, 1)[None].astype(np.float32), r

    def raw(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        blob, r = self._letterbox(np.ascontiguousarray(rgb[:, :, ::-1]))
        if self.sess is not None:
            out = self.sess.run(None, {self.input_name: blob})[0]
        else:
            self.net.setInput(blob)
            out = self.net.forward()
        return out[0], r

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        out, r = self.raw(rgb)
        if out.shape[0] != len(self.grid):
            raise ModelError(f"{self.name}: output has {out.shape[0]} rows, expected {len(self.grid)} "
                             f"for a {self.size}px YOLOX model")
        xy = (out[:, :2] + self.grid) * self.stride
        wh = np.exp(np.clip(out[:, 2:4], -10, 10)) * self.stride
        scores = out[:, 4:5] * out[:, 5:]
        if len(self.class_ids):
            sub = scores[:, self.class_ids]
            best = sub.argmax(1)
            cls = self.class_ids[best]
            conf = sub[np.arange(len(sub)), best]
        else:
            return []
        keep = conf >= self.conf
        if not keep.any():
            return []
        xy, wh, cls, conf = xy[keep], wh[keep], cls[keep], conf[keep]
        boxes = np.concatenate([xy - wh / 2, wh], 1) / r
        h, w = rgb.shape[:2]
        dets = []
        for c in np.unique(cls):
            m = np.where(cls == c)[0]
            idx = cv2.dnn.NMSBoxes(boxes[m].tolist(), conf[m].tolist(), self.conf, self.nms)
            for i in np.array(idx).reshape(-1):
                x, y, bw, bh = boxes[m[i]]
                x1, y1 = max(0.0, x), max(0.0, y)
                x2, y2 = min(float(w), x + bw), min(float(h), y + bh)
                if x2 > x1 and y2 > y1:
                    dets.append(Detection((float(x1), float(y1), float(x2), float(y2)), COCO_NAMES[c],
                                          float(conf[m[i]])))
        return dets
