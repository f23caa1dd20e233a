"""Training images: still images and frames sampled from videos, as random crops."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}
VIDEO_EXTS = {".mp4", ".mkv", ".avi", ".mov", ".ts", ".webm", ".m4v", ".mpg", ".mpeg", ".flv"}


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def collect_files(dirs: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    images, videos = [], []
    for d in dirs:
        d = Path(d)
        files = [d] if d.is_file() else sorted(p for p in d.rglob("*") if p.is_file())
        for p in files:
            ext = p.suffix.lower()
            if ext in IMAGE_EXTS:
                images.append(p)
            elif ext in VIDEO_EXTS:
                videos.append(p)
    return images, videos


def sample_video_frames(path: Path, count: int, start: float = 0.0, end: float = 1.0) -> list[np.ndarray]:
    """``count`` frames spread evenly over the [start, end) fraction of a video."""
    from .video import VideoReader

    with VideoReader(path) as reader:
        total = reader.frame_count_hint()
        frames = []
        if total:
            lo, hi = int(total * start), max(int(total * end), int(total * start) + 1)
            wanted = set(np.linspace(lo, hi - 1, num=min(count, hi - lo)).astype(int).tolist())
            for i, fr in enumerate(reader):
                if i >= hi:
                    break
                if i in wanted:
                    frames.append(fr.rgb)
        else:
            all_frames = [fr.rgb for fr in reader]
            lo, hi = int(len(all_frames) * start), int(len(all_frames) * end)
            idx = np.linspace(lo, max(hi - 1, lo), num=min(count, max(hi - lo, 1))).astype(int)
            frames = [all_frames[i] for i in idx]
    return frames


class CropSampler:
    """Random crops with flips and mild rescaling from images held in memory.

    Holding everything in RAM keeps the CPU on the model rather than on PNG
    decoding; a few hundred large images fit easily.
    """

    def __init__(self, arrays: list[np.ndarray], patch: int, rng: np.random.Generator, max_scale: float = 2.0):
        self.arrays = [a for a in arrays if min(a.shape[:2]) >= patch]
        if not self.arrays:
            raise ValueError(f"no training image is at least {patch}x{patch} pixels")
        self.patch = patch
        self.rng = rng
        self.max_scale = max_scale
        # Weight by area: a large photograph holds many more distinct crops than a video frame.
        area = np.array([a.shape[0] * a.shape[1] for a in self.arrays], dtype=np.float64)
        self.p = area / area.sum()

    def batch(self, size: int) -> np.ndarray:
        p = self.patch
        out = np.empty((size, p, p, 3), dtype=np.uint8)
        for i in range(size):
            a = self.arrays[self.rng.choice(len(self.arrays), p=self.p)]
            h, w = a.shape[:2]
            # Crop a window up to 2x larger and shrink it: averages sensor noise
            # away like the downsampled training sets used in the literature.
            s = float(self.rng.uniform(1.0, max(1.0, min(self.max_scale, min(h, w) / p))))
            cs = int(p * s)
            y = int(self.rng.integers(0, h - cs + 1))
            x = int(self.rng.integers(0, w - cs + 1))
            crop = a[y : y + cs, x : x + cs]
            if cs != p:
                crop = np.asarray(Image.fromarray(crop).resize((p, p), Image.BICUBIC))
            if self.rng.random() < 0.5:
                crop = crop[:, ::-1]
            if self.rng.random() < 0.5:
                crop = crop[::-1]
            out[i] = crop
        return out


def load_training_arrays(dirs: Iterable[str | Path], frames_per_video: int = 40,
                         video_span: tuple[float, float] = (0.0, 1.0)) -> list[np.ndarray]:
    images, videos = collect_files(dirs)
    arrays = [load_rgb(p) for p in images]
    for v in videos:
        try:
            arrays.extend(sample_video_frames(v, frames_per_video, *video_span))
        except Exception as exc:  # one bad file should not stop training
            log.warning("skipping %s: %s", v, exc)
    return arrays
