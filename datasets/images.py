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


def usable(arrays: list[np.ndarray], patch: int) -> list[np.ndarray]:
    """The images a ``patch``-pixel crop fits in (an error when none does)."""
    arrays = [a for a in arrays if min(a.shape[:2]) >= patch]
    if not arrays:
        raise ValueError(f"no training image is at least {patch}x{patch} pixels")
    return arrays


class CropSampler:
    """Random crops with flips and mild rescaling from images held in memory.

    Holding everything in RAM keeps the CPU on the model rather than on PNG
    decoding; a few hundred large images fit easily.
    """

    def __init__(self, arrays: list[np.ndarray], patch: int, rng: np.random.Generator, max_scale: float = 2.0):
        self.arrays = usable(arrays, patch)
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


class TensorCropSampler:
    """Random full-resolution crops cut on the training device from images held in its memory.

    On a GPU the per-crop Python loop of :class:`CropSampler` (and the copy of
    every batch from host memory) is what limits the step rate of a small
    model, not the arithmetic. Here the images sit in one zero-padded uint8
    tensor on the device and a batch is a single gather: image choice (by
    area), offsets and flips all come from one seeded device generator, whose
    state checkpoints carry for an exact resume.
    """

    def __init__(self, arrays: list[np.ndarray], patch: int, device, seed: int = 0,
                 max_bytes: int = 8 << 30):
        import torch

        arrays = usable(arrays, patch)
        H = max(a.shape[0] for a in arrays)
        W = max(a.shape[1] for a in arrays)
        if len(arrays) * H * W * 3 > max_bytes:
            raise MemoryError(f"{len(arrays)} images of up to {W}x{H} do not fit in {max_bytes >> 20} MiB")
        self.device = torch.device(device)
        self.patch = patch
        self.arrays = arrays
        self.images = torch.zeros((len(arrays), H, W, 3), dtype=torch.uint8, device=self.device)
        for i, a in enumerate(arrays):
            self.images[i, : a.shape[0], : a.shape[1]] = torch.from_numpy(np.ascontiguousarray(a))
        self.sizes = torch.tensor([a.shape[:2] for a in arrays], device=self.device)
        area = self.sizes.prod(1).double()
        self.p = area / area.sum()
        self.ar = torch.arange(patch, device=self.device)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(seed)

    def batch(self, size: int):
        """``size`` crops as a float tensor [size, 3, patch, patch] in [0, 1] on the device."""
        import torch

        g, p = self.gen, self.patch
        k = torch.multinomial(self.p, size, replacement=True, generator=g)
        span = (self.sizes[k] - p + 1).double()
        off = (torch.rand((size, 2), generator=g, device=self.device, dtype=torch.float64) * span).long()
        flip = torch.rand((size, 2), generator=g, device=self.device) < 0.5
        ys, xs = off[:, :1] + self.ar, off[:, 1:] + self.ar
        ys = torch.where(flip[:, :1], ys.flip(1), ys)  # reversed rows: a vertical flip
        xs = torch.where(flip[:, 1:], xs.flip(1), xs)
        crops = self.images[k[:, None, None], ys[:, :, None], xs[:, None, :]]
        return crops.permute(0, 3, 1, 2).float().div_(255)

    def levels(self, size: int, n: int):
        import torch

        return torch.randint(0, n, (size,), generator=self.gen, device=self.device)

    def get_state(self):
        return self.gen.get_state()

    def set_state(self, state) -> None:
        self.gen.set_state(state)


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
