"""Weights: our shipped default, and CompressAI's pretrained zoo.

Our weights live in ``codec/weights/`` next to ``manifest.json``, which names
each file's architecture, sizes and sha256. They are loaded with
``torch.load(weights_only=True)`` after the hash check, and carry the entropy
coder's CDF tables, so start-up does not recompute them.

Zoo weights are fetched from CompressAI's servers into the torch hub cache
when online. Offline, loading fails with the exact file to put there.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from functools import lru_cache
from pathlib import Path

import torch

from ..errors import ModelError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"

ZOO_ARCHS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(path: Path = MANIFEST) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"weights manifest missing: {path}") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"weights manifest {path} is not valid JSON: {exc}") from None


@lru_cache(maxsize=None)
def load_shipped(name: str, manifest_path: str | None = None, section: str = "models") -> tuple[dict, dict]:
    """State dict and manifest entry of a model shipped in ``codec/weights`` (``section``: ``models`` for
    frame codecs, ``conditional`` for the entropy models of predicted frames)."""
    mpath = Path(manifest_path) if manifest_path else MANIFEST
    entry = read_manifest(mpath).get(section, {}).get(name)
    if entry is None:
        raise ModelError(f"no shipped weights named {name!r} in {mpath}")
    wpath = mpath.parent / entry["file"]
    if not wpath.exists():
        raise ModelError(f"weights file missing: {wpath}")
    digest = sha256_file(wpath)
    if digest != entry["sha256"]:
        raise ModelError(f"weights file {wpath} does not match its sha256 in {mpath} "
                         f"(got {digest[:12]}..., expected {entry['sha256'][:12]}...)")
    return load_state(wpath), entry


def shipped_conditional_for(intra_sha256: str, analysis_sha256: str | None = None,
                            manifest_path: str | None = None) -> str | None:
    """The name of the shipped conditional entropy model for these intra weights or for weights with the
    same analysis and gains (``analysis_sha256``: the same latents), if one is: the one its manifest entry
    marks ``"default"``, else the newest. The others stay listed: the files coded with them name them."""
    mpath = Path(manifest_path) if manifest_path else MANIFEST
    entries = read_manifest(mpath).get("conditional", {})

    def newest(names):
        return max(names, key=lambda n: (bool(entries[n].get("default")), str(entries[n].get("exported", ""))),
                   default=None)

    return newest([n for n, e in entries.items() if e.get("intra_sha256") == intra_sha256
                   or (analysis_sha256 and e.get("intra_analysis_sha256") == analysis_sha256)])


def load_state(path: str | os.PathLike) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's own texts mislead here: its legacy (non-zip) reader answers a file that is
        # not a checkpoint with a bare KeyError or EOFError, and its weights-only unpickler
        # suggests loading the file again with weights_only=False, which could run its code.
        detail = (str(exc).splitlines() or [""])[0]
        if isinstance(exc, pickle.UnpicklingError):
            detail = "not a PyTorch weights file, or one holding more than tensors (refused: unpickling it could run code)"
        elif isinstance(exc, (KeyError, EOFError)) or not detail.strip():
            detail = "not a PyTorch weights file, or a damaged one"
        raise ModelError(f"cannot load weights {path}: {detail}") from None
    obj = checkpoint_weights(obj)
    if not isinstance(obj, dict):
        raise ModelError(f"{path} does not hold a state dict")
    return obj


def checkpoint_weights(obj):
    """The weights a loaded file stands for: a state dict as it is; of a training
    checkpoint, the weights its held-out check kept (``TrainConfig.keep_best``),
    else its last ones."""
    if isinstance(obj, dict) and isinstance(obj.get("best_model"), dict):
        return obj["best_model"]
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return obj["model"]
    return obj


#: File names that ``load_weights`` reads as weights files rather than shipped models' names.
WEIGHTS_SUFFIXES = (".pth", ".pt", ".ckpt")


def load_weights(name: str | os.PathLike) -> tuple[dict, str]:
    """State dict and sha256 of a shipped model (by name) or of a weights file
    (``WEIGHTS_SUFFIXES``; a training checkpoint gives its kept weights)."""
    if str(name).endswith(WEIGHTS_SUFFIXES):
        if not Path(name).is_file():
            raise ModelError(f"weights file not found: {name}")
        return load_state(name), sha256_file(name)
    state, entry = load_shipped(str(name))
    return state, entry["sha256"]


def zoo_url(arch: str, quality: int, metric: str = "mse") -> str:
    from compressai.zoo.image import model_urls

    try:
        return model_urls[arch][metric][quality]
    except KeyError:
        raise ModelError(f"CompressAI has no pretrained {arch} ({metric}) at quality {quality}") from None


def zoo_cache_path(arch: str, quality: int, metric: str = "mse") -> Path:
    url = zoo_url(arch, quality, metric)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def zoo_available(arch: str, quality: int, metric: str = "mse") -> bool:
    try:
        return zoo_cache_path(arch, quality, metric).exists()
    except ModelError:
        return False


def load_zoo(arch: str, quality: int, metric: str = "mse", download: bool = True):
    """A CompressAI zoo model, pretrained, in eval mode with CDFs updated."""
    from compressai.zoo import image as zimage
    from compressai.zoo.pretrained import load_pretrained

    if arch not in ZOO_ARCHS:
        raise ModelError(f"unknown zoo model {arch!r}; choose from {', '.join(ZOO_ARCHS)}")
    if not 1 <= int(quality) <= 8 or int(quality) != quality:
        raise ModelError(f"zoo models come in integer qualities 1..8, got {quality}")
    quality = int(quality)
    path = zoo_cache_path(arch, quality, metric)
    if not path.exists():
        if not download or os.environ.get("VIDSIEVE_OFFLINE") or os.environ.get("YOLO_OFFLINE"):
            raise ModelError(f"{arch} quality {quality} weights are not cached and downloads are off; "
                             f"place {path.name} from {zoo_url(arch, quality, metric)} at {path}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(zoo_url(arch, quality, metric), str(path), progress=False)
        except Exception as exc:
            raise ModelError(f"cannot download {arch} quality {quality} weights ({str(exc).splitlines()[0]}); "
                             f"offline, place {path.name} from {zoo_url(arch, quality, metric)} at {path}") from None
    state = load_pretrained(load_state(path))
    model = zimage.model_architectures[arch].from_state_dict(state)
    model.eval()
    model.update(force=True)
    return model
