"""Generated surveillance-like scenes with known events.

Used by the tests (objects entering and leaving at known frames, pure noise,
a lighting change) and as the demo input when no real clip can be had.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np


@dataclass
class Mover:
    """A textured rectangle crossing the scene between two frames."""

    start: int
    end: int
    size: tuple[int, int]  # h, w as fractions of the frame * 1000
    y: float  # vertical position as a fraction of the frame
    color: tuple[int, int, int] = (200, 60, 40)
    direction: int = 1


@dataclass
class Scene:
    width: int = 320
    height: int = 240
    frames: int = 60
    fps: int = 10
    noise: float = 2.0  # sensor noise sigma, in 8-bit levels
    movers: list[Mover] = field(default_factory=list)
    light_change_at: int | None = None  # frame from which the scene gets brighter
    light_gain: float = 1.25
    seed: int = 0

    def events(self) -> list[tuple[int, int]]:
        return [(m.start, m.end) for m in self.movers]


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 90 + 60 * (xx / max(width, 1)) + 30 * (yy / max(height, 1))
    img = np.stack([base, base * 0.95 + 10, base * 0.85 + 20], axis=-1)
    # A few "walls", "doors" and "floor tiles": structure a codec must keep.
    for _ in range(max(3, (width * height) // 8000)):
        x0, y0 = rng.integers(0, max(width - 8, 1)), rng.integers(0, max(height - 8, 1))
        w, h = rng.integers(4, max(width // 4, 5)), rng.integers(4, max(height // 4, 5))
        img[y0:y0 + h, x0:x0 + w] = rng.integers(40, 220, size=3)
    img += rng.normal(0, 4, size=img.shape).astype(np.float32)  # fixed texture
    return np.clip(img, 0, 255).astype(np.float32)


def render(scene: Scene):
    """Yield (index, rgb uint8) for every frame of the scene."""
    bg = background(scene.width, scene.height, scene.seed)
    rng = np.random.default_rng(scene.seed + 1)
    for i in range(scene.frames):
        img = bg.copy()
        for m in scene.movers:
            if m.start <= i < m.end:
                h = max(2, int(scene.height * m.size[0] / 1000))
                w = max(2, int(scene.width * m.size[1] / 1000))
                t = (i - m.start) / max(m.end - m.start - 1, 1)
                travel = scene.width + w
                x = int(-w + t * travel) if m.direction > 0 else int(scene.width - t * travel)
                y = int(m.y * (scene.height - h))
                x0, x1 = max(x, 0), min(x + w, scene.width)
                if x1 > x0:
                    stripes = (np.arange(h)[:, None] // 3 % 2) * 40
                    patch = np.array(m.color, np.float32)[None, None, :] - stripes[..., None]
                    patch = np.broadcast_to(patch, (h, w, 3))
                    img[y:y + h, x0:x1] = patch[:, x0 - x:x1 - x]
        if scene.light_change_at is not None and i >= scene.light_change_at:
            img = img * scene.light_gain
        if scene.noise:
            img = img + rng.normal(0, scene.noise, size=img.shape)
        yield i, np.clip(img, 0, 255).astype(np.uint8)


def write_scene(scene: Scene, path: str | Path, codec: str = "ffv1", pix_fmt: str | None = None) -> Path:
    """Write a scene as a video file (FFV1 by default: lossless, so tests see exact pixels)."""
    import av

    path = Path(path)
    with av.open(str(path), mode="w") as out:
        st = out.add_stream(codec, rate=Fraction(scene.fps))
        st.width, st.height = scene.width, scene.height
        st.pix_fmt = pix_fmt or ("bgr0" if codec == "ffv1" else "yuv420p")
        for _, rgb in render(scene):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for p in st.encode(frame):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    return path


def demo_scene(frames: int = 150) -> Scene:
    """A corridor with people-sized objects crossing now and then."""
    return Scene(width=640, height=360, frames=frames, fps=10, noise=2.0, movers=[
        Mover(20, 55, (450, 60), 0.6, (180, 70, 60)),
        Mover(80, 120, (400, 55), 0.5, (60, 90, 170), direction=-1),
    ])
