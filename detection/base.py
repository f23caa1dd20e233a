"""Plain data shared by detectors, the change score, selection and the rate policy."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COCO_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)
DEFAULT_CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck")


@dataclass
class Detection:
    """One object, box in pixels of the full-size frame (x1, y1, x2, y2)."""

    box: tuple[float, float, float, float]
    cls: str
    score: float

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass
class Segment:
    """A run of frames coded at one quality."""

    index: int
    start_pts: int
    end_pts: int
    quality: float
    active: bool
    frames: int = 0
    kept: int = 0
    classes: dict[str, int] = field(default_factory=dict)  # class -> max simultaneous count
    first_event_pts: int | None = None
    last_event_pts: int | None = None

    def to_json(self, time_base) -> dict:
        def sec(p):
            return None if p is None else round(float(p * time_base), 4)
        return {
            "index": self.index, "start_pts": self.start_pts, "end_pts": self.end_pts,
            "start_s": sec(self.start_pts), "end_s": sec(self.end_pts),
            "quality": round(self.quality, 3), "active": self.active,
            "frames": self.frames, "kept": self.kept, "classes": dict(self.classes),
            "event_start_s": sec(self.first_event_pts), "event_end_s": sec(self.last_event_pts),
        }


@dataclass
class FrameDecision:
    keep: bool
    quality: float
    reason: str = ""
    score: float = 0.0
    detections: list[Detection] = field(default_factory=list)
    closed: list[Segment] = field(default_factory=list)  # segments that ended before this frame


def iou(a: tuple, b: tuple) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def iou_matrix(a: list[tuple], b: list[tuple]) -> np.ndarray:
    if not a or not b:
        return np.zeros((len(a), len(b)))
    A = np.asarray(a, dtype=np.float64)[:, None, :]
    B = np.asarray(b, dtype=np.float64)[None, :, :]
    ix = np.clip(np.minimum(A[..., 2], B[..., 2]) - np.maximum(A[..., 0], B[..., 0]), 0, None)
    iy = np.clip(np.minimum(A[..., 3], B[..., 3]) - np.maximum(A[..., 1], B[..., 1]), 0, None)
    inter = ix * iy
    area_a = (A[..., 2] - A[..., 0]) * (A[..., 3] - A[..., 1])
    area_b = (B[..., 2] - B[..., 0]) * (B[..., 3] - B[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


class Detector:
    """Interface of every backend: RGB frame in, detections in full-frame pixels out."""

    name = "detector"
    default_size = 320

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget state carried between frames (stateful backends only)."""
