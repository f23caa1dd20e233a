"""Shared fixtures: small generated clips, the shared data folder, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vidsieve.datasets.synthetic import Mover, Scene, write_scene

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDSIEVE_SHARED", ROOT.parent / "shared"))
SHARED_VIDEO = SHARED / "data" / "video"
PERSON_CLIP = SHARED_VIDEO / "one-by-one-person-detection.mp4"
CAR_CLIP = SHARED_VIDEO / "car-detection.mp4"
KODAK = SHARED / "data" / "images" / "kodak"
YOLOX = SHARED / "models" / "yolox_nano.onnx"

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("VIDSIEVE_THREADS", "2")


TOOLS = ROOT / "tools"


def load_tool(name: str):
    """A tool of ``tools/`` (the lab, not installed) as a module, as ``python tools/NAME.py`` runs it."""
    import importlib

    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module(name)


def run_tool(name: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``python tools/NAME.py ARGS`` as the docs quote it, capturing its output."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, str(TOOLS / f"{name}.py"), *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def need_shared(path: Path = SHARED):
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data folder beside the checkout); absent here")
    return path


def run_cli(*args, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs ``python -m vidsieve ARGS`` as a user would, capturing its output."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    r = subprocess.run([sys.executable, "-m", "vidsieve", *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"vidsieve {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}")
    return r


def assert_clean_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("vidsieve: error")]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]


def read_frames(path) -> tuple[list[np.ndarray], list[float]]:
    """Frames (RGB) and timestamps (seconds) of a video, read with PyAV directly."""
    import av

    frames, times = [], []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.pts * f.time_base))
    return frames, times


@pytest.fixture(scope="session")
def small_clip(tmp_path_factory) -> Path:
    """160x120, 24 frames at 10 fps: static background, one object crossing, sensor noise."""
    p = tmp_path_factory.mktemp("clips") / "small.mkv"
    return write_scene(Scene(width=160, height=120, frames=24, movers=[Mover(6, 18, (400, 120), 0.5)]), p)


@pytest.fixture(scope="session")
def codec():
    from vidsieve.codec.registry import load_codec

    return load_codec()


def source_frame(width: int, height: int, seed: int) -> np.ndarray:
    """A deterministic test picture: walls and tiles over a gradient, fixed texture (no sensor noise)."""
    from vidsieve.datasets.synthetic import background

    return background(width, height, seed).astype(np.uint8)


def source_frames(width: int, height: int, count: int) -> list[np.ndarray]:
    """A deterministic little scene: a still background, a striped box crossing it from frame 3 to 8."""
    from vidsieve.datasets.synthetic import render

    scene = Scene(width=width, height=height, frames=count, noise=0.0, movers=[Mover(3, 9, (500, 250), 0.4)])
    return [rgb for _, rgb in render(scene)]


def moving_patch(frames: int = 12, step: int = 5) -> list[np.ndarray]:
    """A textured patch crossing a textured scene ``step`` pixels a frame: what motion vectors predict."""
    scene, patch = source_frame(256, 192, 1), source_frame(80, 80, 7)
    out = []
    for i in range(frames):
        f = scene.copy()
        f[60:140, 20 + step * i : 100 + step * i] = patch
        out.append(f)
    return out


def stopping_patch() -> list[np.ndarray]:
    """A patch that crosses a scene for 8 frames and then stays still for 10: the blocks it leaves and the
    ones it stops in are shown, unchanged, for the rest of the clip (what the reuse look-ahead raises)."""
    frames = moving_patch(frames=8, step=12)
    return frames + [frames[-1]] * 10


#: Each frame's offset (dy, dx pixels) from where a shaken camera first looked: a few frames of jitter, then
#: a bump that stays.
SHAKE = [(0, 0)] * 4 + [(3, 1), (-2, -4), (0, 2), (4, -3)] + [(0, 0)] * 3 + [(2, -5)] * 5


def shaken(frames: list[np.ndarray], offsets=SHAKE) -> list[np.ndarray]:
    """Frames as a camera that moved by ``offsets`` saw them (edges repeated)."""
    from vidsieve.codec.stabilise import shown

    return [shown(f, o) for f, o in zip(frames, offsets)]


def shaken_scene() -> list[np.ndarray]:
    """A small mover and a light that brightens at frame 3, seen by a camera that shakes (:data:`SHAKE`):
    predicted frames that code differences from a reference and are shown moved."""
    from vidsieve.datasets.synthetic import render

    n = len(SHAKE)
    scene = Scene(width=320, height=192, frames=n, noise=1.0, movers=[Mover(0, 3 * n, (200, 60), 0.3)],
                  light_change_at=3, light_gain=1.1)
    return shaken([rgb for _, rgb in render(scene)])


def symbols_sha256(symbols) -> str:
    """Checksum of a decoded latent's integer symbols (int32, C order): exact on every machine."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(symbols.cpu().numpy(), dtype=np.int32).tobytes()).hexdigest()


def latent_sha256(latent) -> str:
    """Checksum of an exact decoded latent (float64, C order)."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(latent.cpu().numpy(), dtype=np.float64).tobytes()).hexdigest()


#: Fixed creation time of the files made in tests that compare files byte for byte across executors.
SOURCE_DATE_EPOCH = "1764547200"


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray instance with 2 CPUs for the session; its workers stamp files with SOURCE_DATE_EPOCH."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONWARNINGS": "ignore"}})
    yield ray
    ray.shutdown()
