"""The step loop the video trainers share (``train --inter``, ``train --joint``): a progress bar, a
history record every few steps, timed checkpoints, a stop after ``max_time``, and a checkpoint on
every way out."""

from __future__ import annotations

import time
from typing import Callable, Protocol


class StepTrainer(Protocol):
    """What :func:`run_steps` drives: a trainer that counts its steps and time and checkpoints itself."""

    step: int
    elapsed: float
    history: list

    def done(self) -> bool: ...

    def train_step(self): ...

    def save(self): ...


def run_steps(trainer: StepTrainer, desc: str, total: int | None, every: int, checkpoint_every_s: float,
              record: Callable[[list], tuple[dict, dict]], max_time: float | None = None,
              progress: bool | None = None) -> None:
    """Train until ``trainer.done()`` or ``max_time`` seconds (of this call) have passed.

    Args:
        desc: the progress bar's label.
        total: steps the run ends at, for the bar (None: a time budget ends it).
        every: steps between history records.
        checkpoint_every_s: seconds between checkpoints (one more is written on the way out).
        record: takes the ``train_step`` results since the last record and gives the history entry
            (without ``step`` and ``seconds``, which are added) and the bar's postfix.
    """
    from tqdm import tqdm

    start = last_ckpt = time.monotonic()
    t0 = trainer.elapsed
    bar = tqdm(total=total, initial=trainer.step, unit="step", disable=None if progress is None else not progress,
               desc=desc)
    seen: list = []
    try:
        while not trainer.done():
            seen.append(trainer.train_step())
            trainer.step += 1
            trainer.elapsed = t0 + time.monotonic() - start
            bar.update(1)
            if trainer.step % every == 0:
                entry, postfix = record(seen)
                trainer.history.append({"step": trainer.step, "seconds": round(trainer.elapsed, 1), **entry})
                bar.set_postfix(**postfix)
                seen = []
            if time.monotonic() - last_ckpt >= checkpoint_every_s:
                trainer.save()
                last_ckpt = time.monotonic()
            if max_time is not None and time.monotonic() - start >= max_time:
                break
    finally:
        bar.close()
        trainer.save()
