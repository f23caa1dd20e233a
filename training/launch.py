"""How a ``vidsieve train`` run starts: a new run, a fine-tune, a resume or a warm restart.

The CLI passes what the user asked for; :func:`prepare_run` decides which kind of
run that is, checks it makes sense before any data is loaded, and returns the
:class:`~.trainer.Trainer` to run. :func:`kept_line` says in one line what a
fine-tuning run kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import InputError, VidsieveError


@dataclass
class TrainRequest:
    """What the user asked for (every field None or False when not given)."""

    out: str
    data: list[str] | None = None
    val: list[str] | None = None
    resume: str | None = None
    restart_schedule: bool = False
    finetune: str | None = None  # weights file or shipped model name
    arch: str = "vidsieve-hyperprior"
    N: int = 64
    M: int = 96
    patch: int | None = None
    batch: int | None = None
    lr: float | None = None
    steps: int | None = None
    max_time: float | None = None  # seconds
    threads: int = 0
    compile: bool = False
    inter: bool = False  # the conditional entropy model of predicted frames, for the frozen intra model `intra`
    intra: str | None = None
    joint: bool = False  # the transforms and the conditional model together, from `intra` and `finetune`
    context: bool = False  # with inter: the two-pass (checkerboard) conditional model
    frames: int | None = None  # with inter: consecutive frames cached per video


def prepare_run(r: TrainRequest):
    """The trainer for this request; :class:`InputError` for a request that cannot run."""
    from .trainer import FINETUNE_LR, FINETUNE_STEPS, TrainConfig, Trainer, budget_spent

    if r.inter and r.joint:
        raise InputError("--inter trains the conditional model alone, --joint with the transforms: choose one")
    if (r.context or r.frames) and not r.inter:
        raise InputError("--context and --frames go with --inter")
    if r.inter:
        return prepare_inter_run(r)
    if r.joint:
        return prepare_joint_run(r)
    if not r.data and not r.resume:
        raise InputError("--data is required: folders (or files) of images and videos to train on")
    for d in (r.data or []) + (r.val or []):
        if not os.path.exists(d):
            raise InputError(f"training data not found: {d}")
    if r.restart_schedule and not r.resume:
        raise InputError("--restart-schedule goes with --resume CKPT")
    budget = float(r.max_time) if r.max_time and not r.steps else 0.0
    try:
        if r.resume:
            if not os.path.exists(r.resume):
                raise InputError(f"checkpoint not found: {r.resume}")
            over = {"threads": r.threads or None, "steps": r.steps, "compile": r.compile or None,
                    "data": list(r.data) if r.data else None, "val_data": list(r.val) if r.val else None}
            if r.restart_schedule:
                if not (r.max_time or r.steps):
                    raise InputError("--restart-schedule needs --max-time or --steps: the length of the new cycle")
                over.update(lr=r.lr, budget_s=budget)
            # Read before building: a refused resume should not first load all the training data.
            cfg, st = Trainer.read_checkpoint(r.resume, r.restart_schedule, **over)
            if budget_spent(cfg, float(st["elapsed"])):
                raise InputError(f"{r.resume} already ran its whole {cfg.budget_s:g}-second schedule; to go on "
                                 "training it, add --restart-schedule --max-time T (or --finetune from it)")
            return Trainer.from_checkpoint(cfg, st, r.out)
        init = None
        fine = r.finetune is not None
        N, M = r.N, r.M
        hidden: dict = {}
        if fine:
            from ..codec.models import hidden_widths, widths
            from ..codec.zoo import load_weights

            init = load_weights(r.finetune)[0]
            N, M = widths(init)
            hidden = hidden_widths(init)
        cfg = TrainConfig(data=list(r.data), arch=r.arch, N=N, M=M, **hidden,
                          patch=r.patch or TrainConfig.patch, batch=r.batch or TrainConfig.batch,
                          lr=r.lr or (FINETUNE_LR if fine else TrainConfig.lr),
                          steps=r.steps or (FINETUNE_STEPS if fine else TrainConfig.steps), threads=r.threads,
                          budget_s=budget, val_data=list(r.val or []), compile=r.compile, keep_best=fine)
        return Trainer(cfg, r.out, init_weights=init)
    except ValueError as exc:
        raise VidsieveError(str(exc)) from None


def _check_video_run(r: TrainRequest) -> float:
    """A run on video (``--inter``, ``--joint``): its data and checkpoint exist; its time budget in seconds
    (0: none, or ``--steps`` rules)."""
    if not r.data and not r.resume:
        raise InputError("--data is required: folders (or files) of video to train on")
    for d in r.data or []:
        if not os.path.exists(d):
            raise InputError(f"training data not found: {d}")
    if r.resume and not os.path.exists(r.resume):
        raise InputError(f"checkpoint not found: {r.resume}")
    return float(r.max_time) if r.max_time and not r.steps else 0.0


def prepare_inter_run(r: TrainRequest):
    """``--inter``: a new run, a resume, or a fine-tune from shipped conditional weights."""
    from ..codec import DEFAULT_MODEL
    from .inter import InterConfig, InterTrainer

    budget = _check_video_run(r)
    try:
        if r.resume:
            return InterTrainer.resume(r.resume, r.out, data=list(r.data) if r.data else None,
                                       threads=r.threads or None, steps=r.steps)
        cfg = InterConfig(data=list(r.data), intra=r.intra or DEFAULT_MODEL, lr=r.lr or InterConfig.lr,
                          steps=r.steps or InterConfig.steps, budget_s=budget, threads=r.threads,
                          batch=r.batch or InterConfig.batch, context=r.context,
                          frames_per_video=r.frames or InterConfig.frames_per_video)
        t = InterTrainer(cfg, r.out)
        if r.finetune:
            from ..codec.registry import conditional_weights

            t.start_from(conditional_weights(r.finetune)[0])
        return t
    except ValueError as exc:
        raise VidsieveError(str(exc)) from None


def prepare_joint_run(r: TrainRequest):
    """A ``--joint`` run: the intra model ``intra`` and the conditional model ``finetune`` (default: the one
    shipped for it) fine-tuned together on pairs of video frames."""
    from ..codec import DEFAULT_MODEL
    from .joint import JointConfig, JointTrainer

    budget = _check_video_run(r)
    try:
        if r.resume:
            return JointTrainer.resume(r.resume, r.out, data=list(r.data) if r.data else None,
                                       threads=r.threads or None, steps=r.steps)
        intra = r.intra or DEFAULT_MODEL
        conditional = r.finetune
        if conditional is None:
            from ..codec.registry import load_codec, load_conditional

            found = load_conditional(load_codec(intra))
            if found is None:
                raise InputError(f"no conditional model is shipped for {intra}: name one with --finetune")
            conditional = found[1]
        cfg = JointConfig(data=list(r.data), intra=intra, conditional=conditional, lr=r.lr or JointConfig.lr,
                          steps=r.steps or JointConfig.steps, budget_s=budget, threads=r.threads,
                          batch=r.batch or JointConfig.batch, patch=r.patch or JointConfig.patch)
        return JointTrainer(cfg, r.out)
    except ValueError as exc:
        raise VidsieveError(str(exc)) from None


def kept_line(best: dict | None) -> str:
    """What a fine-tuning run keeps, in one line."""
    if best is None:
        return "no held-out images or video: the last weights are kept, unchecked"
    if best["step"] == best["anchor_step"]:
        return ("no step beat the starting weights on the held-out data: they are what the checkpoint "
                "exports, unchanged")
    bd = "" if best["bd_rate"] is None else f", BD-rate {best['bd_rate']:+.1f}%"
    return (f"kept step {best['step']}: held-out rate-distortion loss {best['loss_change']:+.1f}%{bd} "
            "against the starting weights")
