"""Turn a training checkpoint into shipped weights plus a manifest entry."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from ..files import replacing, write_json
from ..codec.models import GainedMeanScaleHyperprior
from ..codec.registry import shipped_name
from ..codec.zoo import MANIFEST, checkpoint_weights, sha256_file


def export(ckpt: str | os.PathLike, out_dir: str | os.PathLike | None = None, name: str | None = None,
           results: dict | None = None, training_notes: dict | None = None) -> Path:
    """Write ``<out_dir>/<name>.pth`` (state dict with CDF tables) and update ``manifest.json``.

    ``name`` defaults to the registry name of the shipped model with the same widths
    (:func:`~vidsieve.codec.registry.shipped_name`). A checkpoint that kept its best
    held-out weights (``TrainConfig.keep_best``) exports those, not its last ones."""
    st = torch.load(ckpt, map_location="cpu", weights_only=True)
    cfg = json.loads(st["config"]) if "config" in st else {}
    best = json.loads(st["best"]) if "best" in st else None
    state = checkpoint_weights(st)
    model = GainedMeanScaleHyperprior.from_state_dict(state)
    model.eval()
    model.update(force=True)
    name = name or shipped_name(model.N, model.M, model.transform, model.hyper)
    # Stored in half the space would be nice, but the CDF tables are int32 and
    # entropy coding must match bit for bit: keep float32 everywhere.
    wpath = write_weights(model.state_dict(), out_dir, name)
    entry = {
        "file": wpath.name,
        "sha256": sha256_file(wpath),
        "architecture": "GainedMeanScaleHyperprior",
        "N": model.N, "M": model.M, "levels": model.levels,
        **({"transform": model.transform} if model.transform != model.N else {}),
        **({"hyper": list(model.hyper)} if model.hyper != (model.M, model.M * 3 // 2) else {}),
        "training": {
            "steps": int(st.get("step", 0)),
            "hours": round(float(st.get("elapsed", 0.0)) / 3600, 2),
            "data": [os.path.join(*Path(d).parts[-3:]) for d in cfg.get("data", [])],
            "patch": cfg.get("patch"), "batch": cfg.get("batch"),
            **({"kept_step": best["step"], "held_out_loss_change_percent": round(best["loss_change"], 2),
                "held_out_bd_rate_percent": None if best["bd_rate"] is None else round(best["bd_rate"], 2)}
               if best else {}),
            **(training_notes or {}),
        },
        "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    set_manifest_entry(wpath.parent, "models", name, entry, results)
    return wpath


def write_weights(state: dict, out_dir: str | os.PathLike | None, name: str) -> Path:
    """``<out_dir>/<name>.pth`` (default: the shipped weights' folder), written whole or not at all."""
    out = Path(out_dir) if out_dir else MANIFEST.parent
    out.mkdir(parents=True, exist_ok=True)
    wpath = out / f"{name}.pth"
    with replacing(wpath) as tmp:
        torch.save(state, tmp)
    return wpath


def set_manifest_entry(folder: Path, section: str, name: str, entry: dict, results: dict | None = None) -> None:
    """Put ``entry`` under ``section``/``name`` of ``folder/manifest.json`` (written whole or not at all),
    keeping the measured results of the same weights when none are given."""
    mpath = folder / "manifest.json"
    manifest = json.loads(mpath.read_text()) if mpath.exists() else {"format": 1, "models": {}}
    old = manifest.setdefault(section, {}).get(name, {})
    if results is not None:
        entry["results"] = results
    elif "results" in old and old.get("sha256") == entry["sha256"]:
        entry["results"] = old["results"]
    manifest[section][name] = entry
    write_json(mpath, manifest)
