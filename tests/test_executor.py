"""The executor table: local processes and a real local Ray instance run the same tasks to the same outcomes."""

from __future__ import annotations

import math
import sys

import pytest

from vidsieve.errors import InputError, UsageError, VidsieveError
from vidsieve.executor import EXECUTORS, LocalExecutor, RayExecutor, call_task, make_executor, run_tasks

# Built-in functions travel to any worker by name: sqrt fails on negative numbers with a ValueError.
TASKS = [4.0, -1.0, 9.0, 16.0]


def check_outcomes(outcomes):
    assert [o.index for o in outcomes] == [0, 1, 2, 3]
    assert [o.ok for o in outcomes] == [True, False, True, True]
    assert [o.value for o in outcomes if o.ok] == [2.0, 3.0, 4.0]
    bad = outcomes[1]
    assert bad.error == "ValueError: math domain error" and bad.exit_code == 1


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_runs_every_task_and_a_failure_stays_alone(jobs):
    sizes = []
    outcomes = run_tasks(LocalExecutor(jobs), math.sqrt, TASKS, progress=False,
                         sizes=lambda t, v: sizes.append((t, v)) or (1, 2))
    check_outcomes(outcomes)
    assert sorted(sizes) == [(4.0, 2.0), (9.0, 3.0), (16.0, 4.0)]


def test_ray_gives_the_outcomes_local_gives(ray_local):
    check_outcomes(run_tasks(RayExecutor(), math.sqrt, TASKS, names=list("abcd"), progress=False))
    assert ray_local.is_initialized()  # joined the running instance, did not stop it


def test_errors_keep_their_exit_codes():
    def bad_input(_):
        raise InputError("input not found: x.mp4")

    assert call_task(bad_input, None) == (False, "input not found: x.mp4", 2)
    assert call_task(math.sqrt, 4.0) == (True, 2.0, 0)


def test_the_table_and_its_errors(monkeypatch):
    assert set(EXECUTORS) == {"local", "ray"}
    assert isinstance(make_executor("local", jobs=3), LocalExecutor)
    with pytest.raises(VidsieveError, match="unknown executor"):
        make_executor("dask")
    with pytest.raises(UsageError, match="needs --executor ray"):
        make_executor("local", ray_address="auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(VidsieveError, match=r'pip install "vidsieve\[ray\]"'):
        make_executor("ray")


def test_an_unreachable_cluster_fails_at_once():
    with pytest.raises(VidsieveError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        run_tasks(RayExecutor(address="127.0.0.1:1"), math.sqrt, TASKS, progress=False)
    with pytest.raises(UsageError, match="HOST:PORT"):
        run_tasks(RayExecutor(address="nohost"), math.sqrt, TASKS, progress=False)
