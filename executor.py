"""Where many independent tasks run: local processes or a Ray cluster, through one table.

A batch of inputs to compress and a benchmark sweep are both lists of tasks
that share nothing but a file system. :func:`run_tasks` runs them with the
executor named in :data:`EXECUTORS` and returns one :class:`TaskOutcome` per
task, in task order: a task that raises fails alone, with its error; a worker
that dies (killed, out of memory) is retried on Ray (``max_retries``) and
reported as failed where no retry is left or possible. Nothing is dropped.

Task functions are module-level (so a worker imports them by name), take one
picklable argument and return a picklable value.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .errors import UsageError, VidsieveError

log = logging.getLogger(__name__)

#: How often Ray runs a task again after its worker died; errors the task raises are not retried.
RAY_MAX_RETRIES = 3
RAY_INSTALL = 'pip install "vidsieve[ray]"'


@dataclass
class TaskOutcome:
    """What became of one task.

    Attributes:
        index: the task's position in the list given.
        ok: it returned a value.
        value: what it returned.
        error: one line saying why it failed.
        exit_code: the CLI exit code its error stands for (0 when ok).
    """

    index: int
    ok: bool
    value: Any = None
    error: str | None = None
    exit_code: int = 0


def error_line(exc: BaseException) -> tuple[str, int]:
    """One line for the user and an exit code, as the CLI would give for this error alone."""
    if isinstance(exc, VidsieveError):
        return str(exc), exc.exit_code
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}".rstrip(": "), 1


def call_task(fn: Callable[[Any], Any], task: Any) -> tuple[bool, Any, int]:
    """Runs ``fn(task)`` in a worker; an exception comes back as ``(False, line, exit code)``.

    Errors the task raises are answers, not crashes: retrying a bad input cannot help.
    """
    try:
        return True, fn(task), 0
    except Exception as exc:  # reported per task; the batch goes on
        line, code = error_line(exc)
        return False, line, code


def _outcome(i: int, res: tuple[bool, Any, int]) -> TaskOutcome:
    ok, value, code = res
    return TaskOutcome(i, True, value) if ok else TaskOutcome(i, False, None, value, code)


class LocalExecutor:
    """Tasks in ``jobs`` worker processes on this machine (``jobs=1``: in this process, one after another)."""

    name = "local"

    def __init__(self, jobs: int = 1):
        self.jobs = max(1, int(jobs))

    def run(self, fn: Callable[[Any], Any], tasks: list, names: list[str],
            on_done: Callable[[TaskOutcome], None]) -> None:
        if self.jobs == 1:
            for i, t in enumerate(tasks):
                on_done(_outcome(i, call_task(fn, t)))
            return
        import multiprocessing

        # Workers start fresh ("spawn"), not forked: a fork copies the locks that FFmpeg's and torch's thread
        # pools hold at that moment, and a worker that decodes video after one can wait on them forever.
        with ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
            futures = {ex.submit(call_task, fn, t): i for i, t in enumerate(tasks)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    i = futures[f]
                    try:
                        on_done(_outcome(i, f.result()))
                    except BrokenProcessPool:
                        on_done(TaskOutcome(i, False, None, "a worker process died (killed or out of memory); "
                                                            "run again to redo what is missing", 1))


class RayExecutor:
    """Tasks on a Ray cluster, one CPU each.

    Args:
        address: ``auto`` joins the cluster this machine belongs to, ``ray://HOST:PORT`` or
            ``HOST:PORT`` a given one; ``None`` starts a local instance for this run.
        num_cpus: CPUs of a local instance (default: all).
        max_retries: runs of a task again after its worker died.

    Workers need vidsieve installed (the same version) and the inputs and outputs at the same
    paths as the driver (a shared file system).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 max_retries: int = RAY_MAX_RETRIES):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise VidsieveError(f"--executor ray needs Ray: {RAY_INSTALL}") from None
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries

    def _connect(self) -> bool:
        """Joins or starts Ray; returns whether this run started it (and so stops it)."""
        import ray

        if self.address:
            _check_reachable(self.address)
        if ray.is_initialized():
            return False
        # Ray's start-up notes (a new token, where its logs are) are not the user's business unless debugging.
        kw = dict(include_dashboard=False, log_to_driver=False,
                  logging_level=logging.INFO if log.isEnabledFor(logging.DEBUG) else logging.ERROR)
        try:
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(num_cpus=self.num_cpus, **kw)
        except ConnectionError as exc:
            if self.address == "auto":
                raise VidsieveError("--ray-address auto found no running Ray cluster on this machine "
                                    "(start one with `ray start --head`, or leave --ray-address out)") from None
            raise VidsieveError(f"cannot join Ray at {self.address}: {error_line(exc)[0]}") from None
        except (RuntimeError, ValueError) as exc:
            where = f"at {self.address}" if self.address else "locally"
            raise VidsieveError(f"cannot start or join Ray {where}: {error_line(exc)[0]}") from None
        return True

    def run(self, fn: Callable[[Any], Any], tasks: list, names: list[str],
            on_done: Callable[[TaskOutcome], None]) -> None:
        import ray
        from ray.exceptions import RayError

        started = self._connect()
        try:
            remote = ray.remote(call_task)
            refs = {remote.options(name=f"vidsieve:{names[i]}", num_cpus=1, max_retries=self.max_retries,
                                   retry_exceptions=False).remote(fn, t): i for i, t in enumerate(tasks)}
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    i = refs[ref]
                    try:
                        out = _outcome(i, ray.get(ref))
                    except RayError as exc:
                        out = TaskOutcome(i, False, None,
                                          f"its worker failed {self.max_retries + 1} times: {error_line(exc)[0]}", 1)
                    on_done(out)
        finally:
            if started:
                ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fails in one line when a HOST:PORT cluster does not answer: Ray itself would wait on it for ever."""
    import socket

    if address == "auto" or "://" in address and not address.startswith("ray://"):
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address wants auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise VidsieveError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def usable_cores() -> int:
    """Cores this process may run on (its affinity where the system has one): local workers by default."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


#: Executors by name: what ``--executor`` accepts.
EXECUTORS: dict[str, type] = {"local": LocalExecutor, "ray": RayExecutor}


def make_executor(name: str = "local", jobs: int = 1, ray_address: str | None = None,
                  ray_cpus: int | None = None):
    """The executor ``--executor NAME`` stands for (``jobs`` for local, ``ray_address`` for Ray)."""
    if name not in EXECUTORS:
        raise VidsieveError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
    if name == "local":
        if ray_address:
            raise UsageError("--ray-address needs --executor ray")
        return LocalExecutor(jobs)
    return RayExecutor(address=ray_address, num_cpus=ray_cpus)


def run_tasks(executor, fn: Callable[[Any], Any], tasks: list, names: Iterable[str] | None = None,
              desc: str = "tasks", progress: bool | None = None,
              sizes: Callable[[Any, Any], tuple[int, int]] | None = None) -> list[TaskOutcome]:
    """Runs every task; returns their outcomes in task order.

    Args:
        executor: from :func:`make_executor`.
        fn: module-level task function.
        tasks: its arguments, one per task.
        names: short names for logs and Ray's dashboard (default: the index).
        desc: the progress bar's label.
        progress: a bar on stderr over tasks done (None: when stderr is a terminal).
        sizes: ``(bytes in, bytes out)`` of a finished task from its argument and value, summed on the bar.
    """
    from tqdm import tqdm

    names = [str(i) for i in range(len(tasks))] if names is None else list(names)
    outcomes: list[TaskOutcome | None] = [None] * len(tasks)
    totals = [0, 0, 0]  # bytes in, bytes out, failed
    bar = tqdm(total=len(tasks), unit="task", desc=desc, disable=None if progress is None else not progress,
               dynamic_ncols=True)

    def on_done(o: TaskOutcome) -> None:
        outcomes[o.index] = o
        if o.ok and sizes is not None:
            b_in, b_out = sizes(tasks[o.index], o.value)
            totals[0] += b_in
            totals[1] += b_out
        if not o.ok:
            totals[2] += 1
            log.debug("%s failed: %s", names[o.index], o.error)
        post = {"in": _mb(totals[0]), "out": _mb(totals[1])} if sizes is not None else {}
        if totals[2]:
            post["failed"] = totals[2]
        bar.set_postfix(post, refresh=False)
        bar.update(1)

    try:
        executor.run(fn, tasks, names, on_done)
    finally:
        bar.close()
    for i, o in enumerate(outcomes):
        if o is None:  # an executor that stopped early still accounts for every task
            outcomes[i] = TaskOutcome(i, False, None, "not run", 1)
    return outcomes  # type: ignore[return-value]


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}MB"


@contextmanager
def one_thread():
    """Codes with one torch thread inside: a parallel run's tasks share the cores between them, and a task
    gives the same bytes whichever executor runs it."""
    import torch

    saved_env, saved = os.environ.get("VIDSIEVE_THREADS"), torch.get_num_threads()
    os.environ["VIDSIEVE_THREADS"] = "1"
    torch.set_num_threads(1)
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop("VIDSIEVE_THREADS", None)
        else:
            os.environ["VIDSIEVE_THREADS"] = saved_env
        torch.set_num_threads(saved)
