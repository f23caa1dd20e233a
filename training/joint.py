"""Fine-tuning the transforms together with the conditional model of predicted frames (``vidsieve train
--joint``): the work a short GPU lease is for.

``vidsieve train --inter`` trains the conditional entropy model with the
transforms frozen: the transforms then only know how to code a frame alone. Here
they learn what predicted frames need too, end to end as in DCVC (Li, Li and Lu,
"Deep Contextual Video Compression", NeurIPS 2021): every step draws, per item,
two frames of one clip a few frames apart, a crop at the same place in both, and
a quality. The earlier frame is coded alone by the intra model, the later one as
its difference from the earlier one's decoded latent by the conditional model
(straight-through rounding for what the synthesis sees, noise for the rate, as
CompressAI trains), and the loss is::

    lambda_q * 255^2 * (w * MSE_0 + MSE_1) + (w * bpp_0 + bpp_1)

with ``w`` the intra frame's weight (:attr:`JointConfig.intra_weight`: most
frames of a stream are predicted, but the intra frames must not decay). Each
model gets its own learning rate (the transforms are trained: a gentle one).

Checkpoints hold both models, the three optimisers, the step, the time and the
RNGs, written atomically, and resume exactly. :func:`export_joint` writes both
weights files with their coding tables (and the synthesis energy the encoder's
decisions use, measured again), the conditional one naming the new intra
weights, as the registry wants.
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

from ..codec import DEFAULT_MODEL
from ..files import replacing
from .loop import run_steps

log = logging.getLogger(__name__)

FORMAT = "vidsieve-joint-1"


@dataclass
class JointConfig:
    data: list[str]  # video files or folders of them
    intra: str = DEFAULT_MODEL  # the weights to start from: registry name or weights file
    conditional: str = "vidsieve-inter-wide"  # the conditional model to start from: shipped name or file
    patch: int = 256
    batch: int = 8
    frames_per_video: int = 48  # consecutive frames decoded per video, held in memory
    gaps: tuple[int, ...] = (1, 1, 2, 3)  # frame distance of a pair, drawn from this list
    lr: float = 1e-5  # transforms, gains and the intra entropy model
    cond_lr: float = 1e-4  # the conditional model
    aux_lr: float = 1e-3  # both bottlenecks' quantiles
    intra_weight: float = 0.1
    steps: int = 2000
    budget_s: float = 0.0  # > 0: the schedule runs over this much time instead of `steps`
    checkpoint_every_s: float = 120.0
    seed: int = 0
    threads: int = 0


def load_clips(paths: list[str], frames: int, patch: int) -> list[np.ndarray]:
    """``frames`` consecutive frames (uint8 [T, H, W, 3]) from the start of every video in ``paths`` at least
    ``patch`` pixels a side; a video that does not read is skipped with a warning."""
    from ..datasets.images import collect_files
    from ..datasets.video import VideoReader

    clips = []
    for path in collect_files(paths)[1]:
        try:
            with VideoReader(path) as r:
                out = []
                for f in r:
                    out.append(f.rgb)
                    if len(out) >= frames:
                        break
        except Exception as exc:  # one bad file should not stop a lease
            log.warning("skipping %s: %s", path, exc)
            continue
        if len(out) >= 2 and min(out[0].shape[:2]) >= patch:
            clips.append(np.stack(out))
    return clips


class JointTrainer:
    """Fine-tunes an intra model and its conditional model together; :meth:`run`, :meth:`save`, :meth:`resume`."""

    def __init__(self, cfg: JointConfig, out: str | os.PathLike, device: str | None = None):
        from ..codec.conditional import ConditionalEntropyModel
        from ..codec.models import GainedMeanScaleHyperprior
        from ..codec.registry import conditional_weights
        from ..codec.zoo import load_weights
        from ..errors import InputError, ModelError

        self.cfg, self.out = cfg, Path(out)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        state, self.start_sha = load_weights(cfg.intra)
        try:
            self.intra = GainedMeanScaleHyperprior.from_state_dict(state)
        except (KeyError, RuntimeError) as exc:
            raise ModelError(f"{cfg.intra} is not a gained hyperprior's weights: {str(exc).splitlines()[0]}") from None
        cstate, self.start_cond_sha = conditional_weights(cfg.conditional)
        self.cond = ConditionalEntropyModel.from_state_dict(cstate)
        if self.cond.M != self.intra.M:
            raise ModelError(f"{cfg.conditional} has {self.cond.M} latent channels, {cfg.intra} {self.intra.M}")
        self.cond.use_scale_table(self.intra.gaussian_conditional.scale_table)
        self.intra.to(self.device).train()
        self.cond.to(self.device).train()

        def split(model):
            main = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
            return main, [p for n, p in model.named_parameters() if n.endswith("quantiles")]

        (im, ia), (cm, ca) = split(self.intra), split(self.cond)
        self.main_params = im + cm  # what the loss trains (the quantiles are the aux loss's alone)
        self.opt = torch.optim.Adam([{"params": im, "lr": cfg.lr}, {"params": cm, "lr": cfg.cond_lr}])
        self.aux_opt = torch.optim.Adam(ia + ca, lr=cfg.aux_lr)
        self.rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.step, self.elapsed, self.history = 0, 0.0, []
        self.clips = load_clips(cfg.data, cfg.frames_per_video, cfg.patch)
        if not self.clips:
            raise InputError(f"--joint trains on video: no video of two or more frames at least {cfg.patch} "
                             "pixels a side in " + ", ".join(cfg.data))

    def lr_scale(self) -> float:
        c = self.cfg
        frac = self.elapsed / c.budget_s if c.budget_s > 0 else self.step / c.steps
        return (0.3 if frac >= 0.75 else 1.0) * (0.3 if frac >= 0.92 else 1.0)

    def done(self) -> bool:
        c = self.cfg
        return self.elapsed >= c.budget_s if c.budget_s > 0 else self.step >= c.steps

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Earlier and later crops ([B, 3, P, P] in [0, 1]) of frame pairs, and a quality per item."""
        c = self.cfg
        first, second = [], []
        for _ in range(c.batch):
            clip = self.clips[self.rng.integers(len(self.clips))]
            gap = min(int(self.rng.choice(c.gaps)), len(clip) - 1)
            t = int(self.rng.integers(gap, len(clip)))
            h, w = clip.shape[1:3]
            i, j = int(self.rng.integers(0, h - c.patch + 1)), int(self.rng.integers(0, w - c.patch + 1))
            flip = bool(self.rng.integers(2))
            for lst, f in ((first, clip[t - gap]), (second, clip[t])):
                crop = f[i : i + c.patch, j : j + c.patch]
                lst.append(crop[:, ::-1] if flip else crop)
        q = torch.from_numpy(self.rng.uniform(1.0, float(self.intra.levels), c.batch)).float()

        def tensor(lst):
            return torch.from_numpy(np.ascontiguousarray(np.stack(lst))).permute(0, 3, 1, 2).float().div_(255)

        return tensor(first).to(self.device), tensor(second).to(self.device), q.to(self.device)

    def losses(self, x0: torch.Tensor, x1: torch.Tensor, q: torch.Tensor) -> dict:
        """Rates (bits per pixel) and squared errors of both frames, per item."""
        from compressai.ops import quantize_ste

        from ..codec.models import likelihood_bits

        m, cond = self.intra, self.cond
        gain, inv_gain = m.gains(q)
        pixels = x0.shape[-2] * x0.shape[-1]
        # The earlier frame, coded alone (as the intra model trains: noise for the rate, straight-through
        # rounding for what the synthesis sees) ...
        y0 = m.g_a(x0) * gain
        z_hat, z_lik = m.entropy_bottleneck(m.h_a(y0))
        scales, means = m.h_s(z_hat).chunk(2, 1)
        _, y_lik = m.gaussian_conditional(y0, scales, means=means)
        ref = quantize_ste(y0 - means) + means  # what the decoder holds: the later frame's reference
        x0_hat = m.g_s(ref * inv_gain)
        # ... and the later one, as its difference from that reference.
        y1 = m.g_a(x1) * gain
        o = cond(y1 - ref, ref)
        y1_hat = ref + o["mu"] + quantize_ste(y1 - ref - o["mu"])
        x1_hat = m.g_s(y1_hat * inv_gain)
        return {"bpp0": likelihood_bits({"y": y_lik, "z": z_lik}) / pixels,
                "bpp1": likelihood_bits(o["likelihoods"]) / pixels,
                "mse0": (x0_hat - x0).square().mean((1, 2, 3)), "mse1": (x1_hat - x1).square().mean((1, 2, 3))}

    def train_step(self) -> dict:
        from ..codec.models import quality_lambda

        c = self.cfg
        x0, x1, q = self.batch()
        lam = torch.tensor([quality_lambda(float(v)) for v in q], device=self.device)
        v = self.losses(x0, x1, q)
        w = c.intra_weight
        loss = (lam * 255**2 * (w * v["mse0"] + v["mse1"]) + w * v["bpp0"] + v["bpp1"]).mean()
        scale = self.lr_scale()
        self.opt.param_groups[0]["lr"], self.opt.param_groups[1]["lr"] = c.lr * scale, c.cond_lr * scale
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        # The main optimiser's parameters only: the quantiles still hold the last aux step's gradients, which
        # a resumed run would not have.
        torch.nn.utils.clip_grad_norm_(self.main_params, 1.0)
        self.opt.step()
        self.aux_opt.zero_grad(set_to_none=True)
        (self.intra.aux_loss() + self.cond.entropy_bottleneck.loss()).backward()
        self.aux_opt.step()
        return {"loss": float(loss.detach()), "bpp0": float(v["bpp0"].detach().mean()),
                "bpp1": float(v["bpp1"].detach().mean()), "mse1": float(v["mse1"].detach().mean())}

    def state(self) -> dict:
        return {"format": FORMAT, "config": json.dumps(asdict(self.cfg)),
                "intra": {k: t.cpu() for k, t in self.intra.state_dict().items()},
                "conditional": {k: t.cpu() for k, t in self.cond.state_dict().items()},
                "opt": self.opt.state_dict(), "aux_opt": self.aux_opt.state_dict(),
                "step": self.step, "elapsed": self.elapsed, "history": json.dumps(self.history),
                "torch_rng": torch.get_rng_state(), "numpy_rng": json.dumps(self.rng.bit_generator.state),
                "start_sha256": self.start_sha, "start_conditional_sha256": self.start_cond_sha}

    def save(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with replacing(self.out) as tmp:
            torch.save(self.state(), tmp)
        return self.out

    @classmethod
    def resume(cls, ckpt: str | os.PathLike, out: str | os.PathLike | None = None, device: str | None = None,
               **overrides) -> "JointTrainer":
        st = read_checkpoint(ckpt)
        cfg = json.loads(st["config"])
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        cfg["gaps"] = tuple(cfg["gaps"])
        t = cls(JointConfig(**cfg), out or ckpt, device)
        t.intra.load_state_dict(st["intra"])
        t.cond.load_state_dict(st["conditional"])
        t.intra.to(t.device)
        t.cond.to(t.device)
        t.opt.load_state_dict(st["opt"])
        t.aux_opt.load_state_dict(st["aux_opt"])
        t.step, t.elapsed, t.history = int(st["step"]), float(st["elapsed"]), json.loads(st["history"])
        torch.set_rng_state(st["torch_rng"])
        t.rng.bit_generator.state = json.loads(st["numpy_rng"])
        return t

    def run(self, max_time: float | None = None, progress: bool | None = None, every: int = 50) -> None:
        def record(seen):
            mean = {k: round(float(np.mean([s[k] for s in seen])), 6) for k in seen[0]}
            return mean, {"loss": f"{mean['loss']:.4f}", "bpp_predicted": f"{mean['bpp1']:.4f}"}

        run_steps(self, "train --joint", self.cfg.steps if self.cfg.budget_s <= 0 else None, every,
                  self.cfg.checkpoint_every_s, record, max_time, progress)


def read_checkpoint(ckpt: str | os.PathLike) -> dict:
    """A ``--joint`` checkpoint (tensors and plain data only); ``ValueError`` for anything else."""
    st = torch.load(ckpt, map_location="cpu", weights_only=True)
    if not isinstance(st, dict) or st.get("format") != FORMAT:
        raise ValueError(f"{ckpt} is not a vidsieve --joint training checkpoint")
    return st


def export_joint(ckpt: str | os.PathLike, out_dir: str | os.PathLike, name: str | None = None,
                 conditional_name: str | None = None, sample: np.ndarray | None = None) -> tuple[Path, Path]:
    """Write both fine-tuned models, with their coding tables, as ``<out_dir>/<name>.pth`` and
    ``<out_dir>/<conditional_name>.pth`` and their entries in ``<out_dir>/manifest.json``; the conditional
    model's entry names the new intra weights. ``sample`` (an RGB frame) is what the synthesis energy is
    measured on again (default: a flat grey-and-gradient picture).

    Load them with ``--model DIR/NAME.pth`` and the registry's ``conditional`` argument (both are files)."""
    from ..codec.conditional import ConditionalEntropyModel, measure_synthesis_energy
    from ..codec.models import GainedMeanScaleHyperprior, analysis_sha256
    from ..codec.zoo import sha256_file
    from .export import set_manifest_entry, write_weights

    st = read_checkpoint(ckpt)
    cfg = json.loads(st["config"])
    intra = GainedMeanScaleHyperprior.from_state_dict(st["intra"]).eval()
    intra.update(force=True)
    cs = st["conditional"]
    cond = ConditionalEntropyModel.from_state_dict(cs)
    cond.eval()
    start = Path(cfg["intra"]).stem if cfg["intra"].endswith(".pth") else cfg["intra"]
    name = name or f"{start}-joint"
    conditional_name = conditional_name or name.replace("vidsieve-hyperprior", "vidsieve-inter")
    if conditional_name == name:
        conditional_name = f"{name}-conditional"
    with torch.no_grad():
        if sample is None:
            yy, xx = np.mgrid[0:256, 0:256]
            sample = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
        x = torch.from_numpy(np.ascontiguousarray(sample)).permute(2, 0, 1)[None].float().div(255)
        h, w = (x.shape[-2] // 64) * 64, (x.shape[-1] // 64) * 64
        gain, inv = intra.gains(torch.tensor([4.0]))
        u = intra.g_a(x[..., :h, :w]) * gain * inv
        cond.synthesis_energy.copy_(measure_synthesis_energy(intra.g_s, u))
    cond.entropy_bottleneck.update(force=True)
    training = {"steps": int(st["step"]), "hours": round(float(st["elapsed"]) / 3600, 3),
                "data": [os.path.join(*Path(d).parts[-3:]) for d in cfg["data"]], "patch": cfg["patch"],
                "batch": cfg["batch"], "intra_weight": cfg["intra_weight"], "from": cfg["intra"],
                "from_sha256": st["start_sha256"], "from_conditional": cfg["conditional"],
                "from_conditional_sha256": st["start_conditional_sha256"]}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    istate = intra.state_dict()
    ipath = write_weights(istate, out_dir, name)
    isha = sha256_file(ipath)
    set_manifest_entry(ipath.parent, "models", name, {
        "file": ipath.name, "sha256": isha, "architecture": "GainedMeanScaleHyperprior",
        "N": intra.N, "M": intra.M, "levels": intra.levels,
        **({"transform": intra.transform} if intra.transform != intra.N else {}),
        **({"hyper": list(intra.hyper)} if intra.hyper != (intra.M, intra.M * 3 // 2) else {}),
        "training": {**training, "joint": True}, "exported": stamp})
    cpath = write_weights(cond.state_dict(), out_dir, conditional_name)
    set_manifest_entry(cpath.parent, "conditional", conditional_name, {
        "file": cpath.name, "sha256": sha256_file(cpath), "architecture": "ConditionalEntropyModel",
        "M": cond.M, "N": cond.N, "Z": cond.Z, "intra_sha256": isha, "intra_analysis_sha256": analysis_sha256(istate),
        "training": {**training, "joint": True}, "exported": stamp})
    return ipath, cpath
