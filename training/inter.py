"""Training the conditional entropy model of predicted frames (``vidsieve train --inter``).

The intra model's transforms stay frozen, so a frame's latent before its gains,
``g_a(x)``, is computed once per frame and cached; every step then draws a pair
of frames of one video a few frames apart, a quality, and a window of the
latent, and trains :class:`~vidsieve.codec.conditional.ConditionalEntropyModel`
for the bits of the later frame's latent given the earlier one as decoded
(rounded): ``bits(y_t - ref | ref) + bits(hyper latent)``. Nothing but the
rate depends on the model (the difference is rounded the same way whatever it
predicts), so the loss is the rate alone. It runs in minutes on a CPU.

Checkpoints (model, optimiser, step, RNG) are written atomically every few
minutes and resume exactly; the feature cache is rebuilt from the videos.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..files import replacing
from .loop import run_steps
from ..codec.conditional import ConditionalEntropyModel, measure_synthesis_energy
from ..codec.models import likelihood_bits

log = logging.getLogger(__name__)


@dataclass
class InterConfig:
    data: list[str]  # video files or folders of them
    intra: str = "vidsieve-hyperprior-wide"  # the frozen intra model: registry name or weights file
    N: int = 64
    Z: int = 32
    context: bool = False  # two checkerboard passes, the second seeing the first's decoded values
    frames_per_video: int = 240  # consecutive frames cached per video (every frame: pairs need neighbours)
    span: tuple[float, float] = (0.0, 1.0)  # the part of each video to take them from
    gaps: tuple[int, ...] = (1, 1, 2, 3)  # frame distance of a pair, drawn uniformly from this list
    crop: int = 16  # latent window (x16 pixels), a multiple of 4
    focus: int = 4  # windows drawn per item, the one that changed most kept (1: uniform)
    batch: int = 16
    lr: float = 1e-3
    steps: int = 20_000
    budget_s: float = 0.0  # > 0: the schedule runs over this much time instead of `steps`
    checkpoint_every_s: float = 180.0
    seed: int = 0
    threads: int = 0


def video_files(paths: list[str]) -> list[Path]:
    from ..datasets.images import collect_files

    return collect_files(paths)[1]


@torch.no_grad()
def cache_video(codec, path: Path, frames: int, span: tuple[float, float]) -> np.ndarray | None:
    """``g_a(x)`` (float16, [T, M, h, w]) of ``frames`` consecutive frames from ``span`` of the video."""
    from ..codec.pixels import pad, to_tensor
    from ..datasets.video import VideoReader

    with VideoReader(path) as r:
        total = r.frame_count_hint() or 0
        start = int(total * span[0]) if total else 0
        stop = min(int(total * span[1]) if total else 10**9, start + frames)
        out = []
        for f in r:
            if f.index < start:
                continue
            if f.index >= stop:
                break
            x = pad(to_tensor(f.rgb))
            out.append(codec.model.g_a(x.contiguous(memory_format=torch.channels_last)).contiguous()[0].half().numpy())
    return np.stack(out) if len(out) > 1 else None


class InterTrainer:
    """Trains a conditional entropy model for a frozen intra model; :meth:`run`, :meth:`save`, :meth:`resume`."""

    def __init__(self, cfg: InterConfig, out: str | os.PathLike, progress=None):
        from ..codec.registry import load_codec

        self.cfg, self.out = cfg, Path(out)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.codec = load_codec(cfg.intra)
        intra = self.codec.model
        self.model = ConditionalEntropyModel(intra.M, cfg.N, cfg.Z, cfg.context)
        main = [p for n, p in self.model.named_parameters() if not n.endswith("quantiles")]
        self.opt = torch.optim.Adam(main, lr=cfg.lr)
        self.aux_opt = torch.optim.Adam([p for n, p in self.model.named_parameters() if n.endswith("quantiles")],
                                        lr=1e-3)
        self.rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.step, self.elapsed, self.history = 0, 0.0, []
        files = video_files(cfg.data)
        if not files:
            from ..errors import InputError

            raise InputError("--inter trains on video: no video files in " + ", ".join(cfg.data))
        self.videos = []
        for f in files:
            c = cache_video(self.codec, f, cfg.frames_per_video, cfg.span)
            if c is not None and min(c.shape[-2:]) >= cfg.crop:
                self.videos.append(c)
            if progress:
                progress(f)
        if not self.videos:
            from ..errors import InputError

            raise InputError(f"no video with two or more frames of at least {16 * cfg.crop} pixels a side")
        with torch.no_grad():
            # The synthesis's input is y * inverse gain: g_a(x) * gain * inverse gain, at a middle quality.
            v = torch.from_numpy(self.videos[0][0][None, :, : cfg.crop, : cfg.crop].astype(np.float32))
            gain, inv = intra.gains(torch.tensor([4.0]))
            u = (v * gain * inv).contiguous(memory_format=torch.channels_last)
            self.model.synthesis_energy.copy_(measure_synthesis_energy(intra.g_s, u))

    def start_from(self, state: dict) -> None:
        """Begin from trained conditional weights; a model with context may begin from one without (its
        second pass starts as the first: :class:`~vidsieve.codec.conditional.ConditionalEntropyModel`)."""
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        branch = ("ctx.", "refine.")
        if unexpected or any(not k.startswith(branch) for k in missing) or (missing and not self.cfg.context):
            raise ValueError("these weights are not a conditional entropy model of this shape"
                             + (f" (unexpected: {', '.join(unexpected[:3])})" if unexpected else ""))

    def lr_at(self) -> float:
        c = self.cfg
        frac = self.elapsed / c.budget_s if c.budget_s > 0 else self.step / c.steps
        return c.lr * (0.3 if frac >= 0.75 else 1.0) * (0.3 if frac >= 0.92 else 1.0)

    def done(self) -> bool:
        c = self.cfg
        return self.elapsed >= c.budget_s if c.budget_s > 0 else self.step >= c.steps

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y_t - ref, ref)`` for a batch of gained latent windows, ``ref = round(y_{t-gap})``."""
        c, intra = self.cfg, self.codec.model
        ys, refs = [], []
        for _ in range(c.batch):
            best = None
            # Predicted frames code the blocks that changed and copy the rest: of a few windows drawn, the one
            # that changed most is trained on, so the model learns what it will code rather than still noise.
            for _ in range(max(1, c.focus)):
                vid = self.videos[self.rng.integers(len(self.videos))]
                gap = int(self.rng.choice(c.gaps))
                gap = min(gap, len(vid) - 1)
                t = int(self.rng.integers(gap, len(vid)))
                h, w = vid.shape[-2:]
                i = int(self.rng.integers(0, (h - c.crop) // 4 + 1)) * 4
                j = int(self.rng.integers(0, (w - c.crop) // 4 + 1)) * 4
                y, ref = vid[t, :, i : i + c.crop, j : j + c.crop], vid[t - gap, :, i : i + c.crop, j : j + c.crop]
                change = float(np.square(y.astype(np.float32) - ref).mean()) if c.focus > 1 else 0.0
                if best is None or change > best[0]:
                    best = (change, y, ref)
            ys.append(best[1])
            refs.append(best[2])
        q = torch.from_numpy(self.rng.uniform(1.0, 8.0, c.batch)).float()
        gain, _ = intra.gains(q)
        y = torch.from_numpy(np.stack(ys).astype(np.float32)) * gain
        ref = torch.round(torch.from_numpy(np.stack(refs).astype(np.float32)) * gain)
        return y - ref, ref

    def train_step(self) -> float:
        diff, ref = self.batch()
        self.model.train()
        out = self.model(diff, ref)
        n = diff.shape[0] * diff.shape[-2] * diff.shape[-1] * 256  # pixels
        bpp = likelihood_bits(out["likelihoods"]).sum() / n
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at()
        self.opt.zero_grad(set_to_none=True)
        bpp.backward()
        # The main optimiser's parameters only (the quantiles hold the last aux step's gradients: see trainer).
        torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], 1.0)
        self.opt.step()
        self.aux_opt.zero_grad(set_to_none=True)
        self.model.entropy_bottleneck.loss().backward()
        self.aux_opt.step()
        return float(bpp.detach())

    def state(self) -> dict:
        return {"format": "vidsieve-inter-1", "config": json.dumps(asdict(self.cfg)),
                "model": self.model.state_dict(), "opt": self.opt.state_dict(), "aux_opt": self.aux_opt.state_dict(),
                "step": self.step, "elapsed": self.elapsed, "history": json.dumps(self.history),
                "torch_rng": torch.get_rng_state(), "numpy_rng": json.dumps(self.rng.bit_generator.state),
                "intra_sha256": self.codec.weights_sha256, "intra_analysis_sha256": self.codec.analysis_sha256}

    def save(self) -> Path:
        with replacing(self.out) as tmp:
            torch.save(self.state(), tmp)
        return self.out

    @classmethod
    def resume(cls, ckpt: str | os.PathLike, out: str | os.PathLike | None = None, **overrides) -> InterTrainer:
        st = torch.load(ckpt, map_location="cpu", weights_only=True)
        if not isinstance(st, dict) or st.get("format") != "vidsieve-inter-1":
            raise ValueError(f"{ckpt} is not a vidsieve --inter training checkpoint")
        cfg = json.loads(st["config"])
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        cfg["span"], cfg["gaps"] = tuple(cfg["span"]), tuple(cfg["gaps"])
        cfg.setdefault("focus", 1)  # runs from before focused windows drew them uniformly
        t = cls(InterConfig(**cfg), out or ckpt)
        t.model.load_state_dict(st["model"])
        t.opt.load_state_dict(st["opt"])
        t.aux_opt.load_state_dict(st["aux_opt"])
        t.step, t.elapsed, t.history = int(st["step"]), float(st["elapsed"]), json.loads(st["history"])
        torch.set_rng_state(st["torch_rng"])
        t.rng.bit_generator.state = json.loads(st["numpy_rng"])
        return t

    def run(self, max_time: float | None = None, progress: bool | None = None) -> None:
        def record(losses):
            bpp = float(np.mean(losses))
            return {"bpp": round(bpp, 5)}, {"bpp": f"{bpp:.4f}"}

        run_steps(self, "train --inter", self.cfg.steps if self.cfg.budget_s <= 0 else None, 200,
                  self.cfg.checkpoint_every_s, record, max_time, progress)


def export_inter(ckpt: str | os.PathLike, out_dir: str | os.PathLike | None = None, name: str | None = None,
                 results: dict | None = None, first_pass: bool = False) -> Path:
    """Write ``<out_dir>/<name>.pth`` (the conditional model with its tables) and its manifest entry,
    which names the intra weights it was trained for. ``first_pass``: of a model with context, its first
    pass alone, as a model without (what the context adds, measured against the same training)."""
    from ..codec.zoo import sha256_file
    from .export import set_manifest_entry, write_weights

    st = torch.load(ckpt, map_location="cpu", weights_only=True)
    cfg = json.loads(st["config"])
    state = st["model"]
    if first_pass:
        if "ctx.0.weight" not in state:
            raise ValueError(f"{ckpt} holds a model without context: it has one pass only")
        state = {k: v for k, v in state.items() if not k.startswith(("ctx.", "refine."))}
    model = ConditionalEntropyModel.from_state_dict(state)
    model.eval()
    model.entropy_bottleneck.update(force=True)
    intra_name = Path(cfg["intra"]).stem if cfg["intra"].endswith(".pth") else cfg["intra"]
    name = name or intra_name.replace("vidsieve-hyperprior", "vidsieve-inter") + ("-ctx" if model.context else "")
    wpath = write_weights(model.state_dict(), out_dir, name)
    entry = {"file": wpath.name, "sha256": sha256_file(wpath), "architecture": "ConditionalEntropyModel",
             "M": model.M, "N": model.N, "Z": model.Z, "context": "checkerboard" if model.context else "none",
             "intra_sha256": st["intra_sha256"],
             **({"intra_analysis_sha256": st["intra_analysis_sha256"]} if "intra_analysis_sha256" in st else {}),
             "training": {"steps": int(st["step"]), "hours": round(float(st["elapsed"]) / 3600, 2),
                          "data": [os.path.join(*Path(d).parts[-3:]) for d in cfg["data"]],
                          "span": cfg["span"], "frames_per_video": cfg["frames_per_video"], "batch": cfg["batch"],
                          "crop_pixels": 16 * cfg["crop"]},
             "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    set_manifest_entry(wpath.parent, "conditional", name, entry, results)
    return wpath

