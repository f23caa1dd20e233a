"""Backend that needs no weights: OpenCV MOG2 background subtraction turned into boxes.

Zivkovic, "Improved adaptive Gaussian mixture model for background
subtraction", ICPR 2004. Frames are downscaled, and their luma is normalised
to the background's brightness first, so a global lighting change does not
light up the whole foreground mask.
"""

from __future__ import annotations

import cv2
import numpy as np

from .base import Detection, Detector


class MotionDetector(Detector):
    name = "motion"
    default_size = 320

    def __init__(self, size: int | None = None, min_area: float = 0.0015, history: int = 300,
                 var_threshold: float = 24.0):
        self.size = int(size or self.default_size)
        self.min_area = min_area  # fraction of the frame
        self.history, self.var_threshold = history, var_threshold
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self.reset()

    def reset(self) -> None:
        self.sub = cv2.createBackgroundSubtractorMOG2(history=self.history, varThreshold=self.var_threshold,
                                                      detectShadows=True)
        self.ref_level: float | None = None
        self.frames = 0

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        s = min(1.0, self.size / max(h, w))
        small = cv2.resize(rgb, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        level = float(np.median(gray)) + 1e-3
        if self.ref_level is None:
            self.ref_level = level
        # A fixed reference: a drifting one would itself look like a slow lighting change.
        gray = np.clip(gray * (self.ref_level / level), 0, 255).astype(np.uint8)
        gray = cv2.GaussianBlur(gray, (5, 5), 0)
        mask = self.sub.apply(gray)
        self.frames += 1
        if self.frames < 3:
            return []  # the model has not seen enough background yet
        mask = (mask > 200).astype(np.uint8)  # 127 marks shadows
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.kernel)
        mask = cv2.dilate(mask, self.kernel, iterations=2)
        if mask.mean() > 0.6:
            return []  # a camera bump or a scene cut, not objects: the model relearns
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        area_min = self.min_area * mask.size
        dets = []
        for i in range(1, n):
            x, y, bw, bh, a = stats[i]
            if a < area_min:
                continue
            dets.append(Detection((x / s, y / s, (x + bw) / s, (y + bh) / s), "motion",
                                  float(min(1.0, a / (bw * bh + 1e-9)))))
        return dets
