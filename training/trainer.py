"""Training the variable-rate codec.

One loop for training from scratch, resuming and fine-tuning: every step draws
a quality level per crop and minimises ``lambda_q * 255^2 * MSE + bpp`` with
that level's lambda (CompressAI's table), so all eight rate points and the
gains between them are learnt together (Cui et al., CVPR 2021). The entropy
bottleneck's quantiles get their own optimiser, as in CompressAI's example.

Checkpoints hold everything needed to continue exactly: weights, both
optimisers, the schedule, the step, and the torch and numpy RNG states. They
are written to a temp name and renamed, so a killed run never leaves a torn
checkpoint behind.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..files import replacing
from ..codec.models import LAMBDAS, GainedMeanScaleHyperprior, quality_lambda
from ..datasets.images import CropSampler, TensorCropSampler, collect_files, load_training_arrays
from .rd import likelihood_curve, rd_loss, rd_objective

log = logging.getLogger(__name__)


# Fine-tuning a trained model (`vidsieve train --finetune`): a gentler rate and a
# short schedule, since it only adapts the shipped weights to one camera's scene.
FINETUNE_LR = 5e-5
FINETUNE_STEPS = 2000


@dataclass
class TrainConfig:
    data: list[str]
    arch: str = "vidsieve-hyperprior"
    N: int = 64
    M: int = 96
    transform: int = 0  # hidden channels of the analysis and synthesis transforms (0: N)
    hyper: tuple[int, ...] = ()  # hidden channels of the hyper-synthesis (empty: CompressAI's)
    patch: int = 256  # every shipped run's crop; 128 is ~4x faster a step, but a different recipe
    batch: int = 8
    lr: float = 2e-4
    aux_lr: float = 1e-3
    steps: int = 100_000  # schedule length: lr drops x0.3 at 75% and again at 92%
    budget_s: float = 0.0  # when > 0 the schedule runs over this much training time instead of `steps`
    checkpoint_every_s: float = 180.0
    eval_every: int = 500
    seed: int = 0
    threads: int = 0
    frames_per_video: int = 40
    video_span: tuple[float, float] = (0.0, 1.0)
    val_fraction: float = 0.06
    # Without val_data, videos are held out in time: the last fifth of each one's
    # span is the check, since a frame next to a training frame tells nothing new.
    video_holdout: float = 0.2
    # Keep the weights that did best on the held-out data (the starting weights
    # included), for export: fine-tuning can make a model worse on a scene
    # (docs/TRAINING.md, "Fine-tuning on one camera").
    keep_best: bool = False
    device: str = ""  # "" = cuda when available, else cpu
    max_scale: float = 1.0  # crops come from windows up to this many times the patch, shrunk
    val_data: list[str] = field(default_factory=list)  # held-out folders; else a seeded split of `data`
    sampler: str = "auto"  # "tensor" (crops cut on the device), "numpy", or auto: tensor on a GPU
    compile: bool = False  # torch.compile the two transforms: 1.2-1.6x faster CPU steps after a minute of compiling
    widened_from: int = 0  # latent width before training.widen grew it (0: not widened)
    new_lr: float = 0.0  # with widened_from: the learning rate of the new elements (0: the same as lr)
    # With widened_from: the new latent channels' bits weigh 0 in the loss at step 0,
    # rising linearly to 1 over this many steps, so the synthesis can learn to read
    # them before the rate term pushes them to zero (0: full weight from the start).
    new_rate_ramp: int = 0
    # Where the current learning-rate cycle began (a warm restart of a finished run,
    # Trainer.resume(restart=True)); 0 for a run with one cycle.
    cycle_start_s: float = 0.0
    cycle_start_step: int = 0
    # Train the entropy model only (hyper-analysis, hyper-synthesis, hyper latent's prior): the
    # analysis, synthesis and gains stay as they are, so latents (and anything trained on them,
    # such as the conditional model of predicted frames) stay valid. The loss is the rate alone:
    # with straight-through rounding around the means the distortion has no gradient to the
    # entropy model, and the synthesis need not run. For a pruned hyper-synthesis.
    entropy_only: bool = False
    extra: dict = field(default_factory=dict)


def cycle_fraction(cfg: TrainConfig, step: int, elapsed: float) -> float:
    """How far the current learning-rate cycle has run: 0 at its start, 1 at its end."""
    # A time budget makes the schedule fit a run that is stopped by the clock
    # (a GPU lease, "train for 2h"): the decays land inside the run, not after it.
    if cfg.budget_s > 0:
        return (elapsed - cfg.cycle_start_s) / cfg.budget_s
    return (step - cfg.cycle_start_step) / max(cfg.steps, 1)


def lr_at(cfg: TrainConfig, step: int, elapsed: float = 0.0, base: float | None = None) -> float:
    f = cycle_fraction(cfg, step, elapsed)
    return (cfg.lr if base is None else base) * (1.0 if f < 0.75 else 0.3 if f < 0.92 else 0.09)


def budget_spent(cfg: TrainConfig, elapsed: float) -> bool:
    """Whether a schedule fitted to a time budget has run all of it (never, for a step schedule)."""
    return cfg.budget_s > 0 and cycle_fraction(cfg, 0, elapsed) >= 1.0


class Trainer:
    def __init__(self, cfg: TrainConfig, out: str | os.PathLike, init_weights: dict | None = None):
        self.cfg = cfg
        self.out = Path(out)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest kernels
        self.model = GainedMeanScaleHyperprior(cfg.N, cfg.M, transform=cfg.transform or None, hyper=cfg.hyper or None)
        if init_weights is not None:
            self.model.load_state_dict(init_weights)
        self.model.to(self.device)
        # Faster on CPUs (bench/train_step.py); GPUs keep the layout they were measured in.
        self.channels_last = self.device.type == "cpu"
        if self.channels_last:
            self.model.transforms_channels_last()
        if cfg.compile:
            if not any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "clang++", "c++") if c):
                raise ValueError("--compile needs a C++ compiler (g++ or clang++) on PATH")
            # In place, so the state dict keeps its keys and checkpoints stay interchangeable.
            self.model.g_a.compile()
            self.model.g_s.compile()
        self.lambdas = torch.tensor(LAMBDAS, device=self.device)
        if cfg.entropy_only:
            for n, p in self.model.named_parameters():
                if n.startswith(("g_a.", "g_s.", "log_gain", "log_inv_gain")):
                    p.requires_grad_(False)
        named = [(n, p) for n, p in self.model.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
        aux = [p for n, p in self.model.named_parameters() if n.endswith(".quantiles")]
        # A widened model's new elements may learn faster than the settled old ones
        # (a fresh Adam at a high rate on batches of 8 undid what the old weights had
        # learnt, docs/TRAINING.md, while new channels start from nothing). Tensors mixing both
        # run at the new rate and have their old elements' step scaled back after
        # each update, which for Adam is exactly the old rate on those elements.
        self.new_masks: dict[torch.nn.Parameter, torch.Tensor] = {}
        if cfg.widened_from and cfg.new_lr:
            from .widen import new_elements

            masks = new_elements(self.model.state_dict(), cfg.widened_from)
            self.new_masks = {p: masks[n].to(self.device) for n, p in named if n in masks}
        groups = [{"params": [p for _, p in named if p not in self.new_masks], "lr": cfg.lr}]
        if self.new_masks:
            groups.append({"params": list(self.new_masks), "lr": cfg.new_lr})
        self.opt = torch.optim.Adam(groups, lr=cfg.lr)
        self.aux_opt = torch.optim.Adam(aux, lr=cfg.aux_lr)
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict] = []
        # keep_best: the held-out check of the starting weights ("anchor") and of the best
        # step so far, and that step's weights (on the CPU).
        self.best: dict | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self._load_data()

    def _load_data(self) -> None:
        arrays = load_training_arrays(self.cfg.data, self.cfg.frames_per_video, tuple(self.cfg.video_span))
        if not arrays:
            raise ValueError(f"no images or videos found in {', '.join(self.cfg.data)}")
        if self.cfg.val_data:
            self.val = load_training_arrays(self.cfg.val_data, self.cfg.frames_per_video)
            if not self.val:
                raise ValueError(f"no images or videos found in {', '.join(self.cfg.val_data)}")
            train = arrays
        else:
            _, videos = collect_files(self.cfg.data)
            tail = []
            if videos and self.cfg.video_holdout > 0:
                lo, hi = self.cfg.video_span
                cut = hi - (hi - lo) * self.cfg.video_holdout
                arrays = load_training_arrays(self.cfg.data, self.cfg.frames_per_video, (lo, cut))
                n_tail = max(2, round(self.cfg.frames_per_video * self.cfg.video_holdout))
                tail = load_training_arrays(videos, n_tail, (cut, hi))
            if tail:
                self.val, train = tail, arrays
            else:
                # A fixed, seeded hold-out split, independent of the training RNG.
                order = np.random.default_rng(1234).permutation(len(arrays))
                n_val = max(1, int(round(len(arrays) * self.cfg.val_fraction))) if len(arrays) > 4 else 0
                self.val = [arrays[i] for i in order[:n_val]]
                train = [arrays[i] for i in order[n_val:]]
            if not train:
                raise ValueError(f"nothing left to train on in {', '.join(self.cfg.data)} after holding out "
                                 "the check's images")
        self.sampler = self._make_sampler(train)
        log.info("training on %d images (%d held out)", len(self.sampler.arrays), len(self.val))

    def _make_sampler(self, train: list[np.ndarray]):
        kind = self.cfg.sampler
        if kind == "auto":
            kind = "tensor" if self.device.type == "cuda" and self.cfg.max_scale <= 1.0 else "numpy"
        if kind == "tensor":
            if self.cfg.max_scale > 1.0:
                raise ValueError("the tensor sampler cuts full-resolution crops only (max_scale 1.0)")
            try:
                return TensorCropSampler(train, self.cfg.patch, self.device, self.cfg.seed)
            except MemoryError as exc:
                if self.cfg.sampler == "tensor":
                    raise ValueError(str(exc)) from None
                log.info("%s: cutting crops on the CPU instead", exc)
        return CropSampler(train, self.cfg.patch, self.rng, self.cfg.max_scale)

    # -- checkpoints -------------------------------------------------------------
    def state(self) -> dict:
        return {
            "format": "vidsieve-train-1",
            "config": json.dumps(asdict(self.cfg)),
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "aux_opt": self.aux_opt.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "history": json.dumps(self.history),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            **({"sampler_rng": self.sampler.get_state()} if isinstance(self.sampler, TensorCropSampler) else {}),
            **({"best": json.dumps(self.best), "best_model": self.best_state} if self.best is not None else {}),
            # The rate term's noise is drawn on the device, from its own generator.
            **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}),
        }

    def save(self, path: Path | None = None) -> Path:
        path = Path(path or self.out)
        with replacing(path) as tmp:
            torch.save(self.state(), tmp)
        return path

    @staticmethod
    def read_checkpoint(ckpt: str | os.PathLike, restart: bool = False, **overrides) -> tuple[TrainConfig, dict]:
        """The configuration a checkpoint would resume with, and its state, without loading any data.

        ``restart`` starts a new learning-rate cycle where the checkpoint stopped
        (a warm restart, Loshchilov & Hutter, "SGDR", ICLR 2017): the schedule runs
        again from ``lr`` over ``budget_s`` seconds (or ``steps`` steps), keeping the
        weights, both optimisers' moments and the RNG streams. This is how a run whose
        schedule is spent goes on learning: resuming it plainly would train at its
        last, lowest rate."""
        st = torch.load(ckpt, map_location="cpu", weights_only=True)
        if not isinstance(st, dict) or st.get("format") != "vidsieve-train-1":
            raise ValueError(f"{ckpt} is not a vidsieve training checkpoint")
        cfg_d = json.loads(st["config"])
        # Runs from before the time-separated hold-out split theirs at random: resume them so.
        cfg_d.setdefault("video_holdout", 0.0)
        cfg_d.update({k: v for k, v in overrides.items() if v is not None})
        if restart:
            cfg_d["cycle_start_s"], cfg_d["cycle_start_step"] = float(st["elapsed"]), int(st["step"])
        return TrainConfig(**cfg_d), st

    @classmethod
    def resume(cls, ckpt: str | os.PathLike, out: str | os.PathLike | None = None, restart: bool = False,
               **overrides) -> Trainer:
        cfg, st = cls.read_checkpoint(ckpt, restart, **overrides)
        return cls.from_checkpoint(cfg, st, out or ckpt)

    @classmethod
    def from_checkpoint(cls, cfg: TrainConfig, st: dict, out: str | os.PathLike) -> Trainer:
        """Build the trainer for ``read_checkpoint``'s result and put the state back exactly."""
        t = cls(cfg, out)
        t.model.load_state_dict(st["model"])
        t.model.to(t.device)
        t.opt.load_state_dict(st["opt"])
        t.aux_opt.load_state_dict(st["aux_opt"])
        t.step, t.elapsed = int(st["step"]), float(st["elapsed"])
        t.history = json.loads(st["history"])
        torch.set_rng_state(st["torch_rng"])
        t.rng.bit_generator.state = json.loads(st["numpy_rng"])
        if "sampler_rng" in st and isinstance(t.sampler, TensorCropSampler):
            t.sampler.set_state(st["sampler_rng"])
        if "cuda_rng" in st and t.device.type == "cuda":
            torch.cuda.set_rng_state(st["cuda_rng"], t.device)
        if "best" in st:
            t.best, t.best_state = json.loads(st["best"]), st["best_model"]
        return t

    # -- loop --------------------------------------------------------------------
    def train_step(self) -> dict:
        """One optimisation step. The metrics stay tensors on the device: reading
        them every step would stall a GPU on a host sync."""
        cfg = self.cfg
        self.model.train()
        lr = lr_at(cfg, self.step, self.elapsed)
        self.opt.param_groups[0]["lr"] = lr
        if self.new_masks:
            self.opt.param_groups[1]["lr"] = lr_at(cfg, self.step, self.elapsed, base=cfg.new_lr)
        if isinstance(self.sampler, TensorCropSampler):
            x = self.sampler.batch(cfg.batch)
            levels = self.sampler.levels(cfg.batch, len(LAMBDAS))
        else:
            x = torch.from_numpy(self.sampler.batch(cfg.batch)).to(self.device).permute(0, 3, 1, 2)
            x = x.float().div_(255)
            levels = torch.from_numpy(self.rng.integers(0, len(LAMBDAS), size=cfg.batch)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        lambdas = self.lambdas[levels]
        if cfg.entropy_only:
            bpp = self.model.rate(x, levels.float() + 1)
            loss, bpp, mse = bpp.mean(), bpp.detach(), torch.full_like(bpp, float("nan"))
        else:
            loss, bpp, mse = self._rd_step(x, levels, lambdas)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        # The main optimiser's parameters only: the quantiles still hold the last aux step's gradients, which
        # a resumed run would not have (its steps would then differ from the run that never stopped).
        torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], 1.0)
        before = {p: p.detach().clone() for p in self.new_masks}
        self.opt.step()
        if self.new_masks:
            keep = cfg.lr / cfg.new_lr
            with torch.no_grad():
                for p, new in self.new_masks.items():
                    p.copy_(torch.where(new, p, before[p].lerp(p, keep)))
        aux = self.model.aux_loss()
        self.aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        self.aux_opt.step()
        self.step += 1
        psnr = (-10 * torch.log10(mse.clamp_min(1e-10))).mean()
        return {"loss": loss.detach(), "bpp": bpp.mean(), "psnr": psnr, "aux": aux.detach(),
                "lr": torch.tensor(lr)}

    def _rd_step(self, x, levels, lambdas):
        cfg = self.cfg
        out = self.model(x, levels.float() + 1)
        waive = None
        if cfg.widened_from and cfg.new_rate_ramp:
            waive = (cfg.widened_from, min(1.0, self.step / cfg.new_rate_ramp))
        loss, bpp, mse = rd_loss(out, x, lambdas, waive)
        return loss, bpp.detach(), mse

    @torch.no_grad()
    def evaluate(self, qualities=(1, 4, 8), size: int = 768) -> dict:
        """Estimated rate (from likelihoods) and PSNR on held-out centre crops.

        Crops are up to ``size`` on a side (Kodak's scale): a few 256² crops,
        the first form of this check, held too little of an image to choose
        between two runs."""
        if not self.val:
            return {}
        self.model.eval()
        if self.cfg.compile:
            # Held-out crops come in sizes the compiled graph has not seen: eager
            # beats a recompile per size for a check this rare.
            with torch.compiler.set_stance("force_eager"):
                return self._evaluate(qualities, size)
        return self._evaluate(qualities, size)

    def _evaluate(self, qualities, size: int) -> dict:
        crops = []
        for a in self.val:
            h, w = a.shape[:2]
            ch, cw = min(size, h) // 64 * 64, min(size, w) // 64 * 64
            if min(ch, cw) < 64:
                continue
            y, x = (h - ch) // 2, (w - cw) // 2
            crops.append(a[y : y + ch, x : x + cw])
        if not crops:
            return {}
        return {f"q{p['quality']:g}": {"bpp": p["bpp"], "psnr": p["psnr_rgb"]}
                for p in likelihood_curve(self.model, crops, qualities)}

    def check_best(self) -> dict:
        """The held-out check for ``keep_best``: evaluates the model now, records it, and
        keeps its weights when they beat every earlier step's and the starting weights'
        (which the first call measures).

        The measure is the training objective on the held-out data, ``lambda * 255^2 *
        MSE + bpp`` at qualities 1, 4 and 8 (rates from the likelihoods), each relative
        to the starting weights' and averaged: always defined, unlike a BD-rate, which
        it comes with where the curves allow one."""
        from ..metrics.curves import bd_rate

        ev = self.evaluate()
        if not ev:
            return {}

        def loss(v: dict, q: str) -> float:
            return rd_objective(10 ** (-v["psnr"] / 10), v["bpp"], quality_lambda(float(q[1:])))

        curve = [{"kbps": v["bpp"], "psnr_rgb": v["psnr"]} for v in ev.values()]
        if self.best is None:
            self.best = {"step": self.step, "anchor_step": self.step, "loss_change": 0.0, "bd_rate": 0.0,
                         "anchor": ev, "val": ev}
        else:
            anchor = self.best["anchor"]
            change = 100 * (float(np.mean([loss(ev[q], q) / loss(anchor[q], q) for q in ev])) - 1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a curve too short or bent for a BD-rate: the loss decides
                bd = bd_rate([{"kbps": v["bpp"], "psnr_rgb": v["psnr"]} for v in anchor.values()], curve)
            if not math.isfinite(change) or change >= self.best["loss_change"]:  # a diverged run is never best
                return {"step": self.step, "loss_change": change, "bd_rate": bd, "val": ev}
            self.best.update(step=self.step, loss_change=change, bd_rate=bd, val=ev)
        self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        log.info("step %d: best on the held-out data so far (loss %+.2f %% against the starting weights)",
                 self.step, self.best["loss_change"])
        return {"step": self.step, "loss_change": self.best["loss_change"], "bd_rate": self.best["bd_rate"],
                "val": ev}  # this step is the best: its numbers are the best's

    def run(self, max_time: float | None = None, max_steps: int | None = None, progress: bool = True,
            on_checkpoint=None) -> None:
        from tqdm import tqdm

        cfg = self.cfg
        # A time-fitted schedule ends at its budget, not at `steps`: a step cap
        # reached first would stop a fast machine before the rate ever dropped.
        end = cfg.cycle_start_step + cfg.steps
        stop_step = max_steps if cfg.budget_s > 0 else min(end, max_steps or end)
        t0 = time.monotonic()
        start_elapsed = self.elapsed
        last_ck = t0
        bar = tqdm(total=stop_step, initial=self.step, disable=None if progress is None else not progress, unit="step",
                   dynamic_ncols=True, mininterval=2.0)
        ema = None
        checked = -1  # the step the held-out check last saw (keep_best)
        if cfg.keep_best and self.best is None:
            self.check_best()
            checked = self.step
        finished = False
        try:
            while stop_step is None or self.step < stop_step:
                now = time.monotonic()
                self.elapsed = start_elapsed + (now - t0)
                if (max_time is not None and now - t0 >= max_time) or budget_spent(cfg, self.elapsed):
                    break
                m = self.train_step()
                ema = m if ema is None else {k: 0.98 * ema[k] + 0.02 * m[k] for k in m}
                self.elapsed = start_elapsed + (time.monotonic() - t0)
                bar.update(1)
                if self.step % 25 == 0 and not bar.disable:
                    e = {k: float(v) for k, v in ema.items()}
                    bar.set_postfix(loss=f"{e['loss']:.3f}", bpp=f"{e['bpp']:.3f}", psnr=f"{e['psnr']:.2f}")
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    check = self.check_best() if cfg.keep_best else {"val": self.evaluate()}
                    ev = check.get("val", {})
                    checked = self.step
                    self.history.append({"step": self.step, "elapsed_s": round(self.elapsed, 1),
                                         "train": {k: round(float(v), 5) for k, v in ema.items()}, "val": ev,
                                         **({"loss_change": check["loss_change"]} if "loss_change" in check else {})})
                    log.info("step %d val %s", self.step, json.dumps(ev))
                if time.monotonic() - last_ck >= cfg.checkpoint_every_s:
                    self.save()
                    last_ck = time.monotonic()
                    if on_checkpoint:
                        on_checkpoint(self)
            finished = True
        finally:
            # The last steps count too; not on an interrupt, which should stop at once.
            if finished and cfg.keep_best and self.best is not None and self.step != checked:
                self.check_best()
            bar.close()
            self.save()
            if on_checkpoint:
                on_checkpoint(self)
