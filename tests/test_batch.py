"""Batches: many inputs, one .vsv each, on local processes or a real local Ray instance."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import SOURCE_DATE_EPOCH, assert_clean_error, run_cli
from vidsieve.datasets.synthetic import Mover, Scene, write_scene
from vidsieve.errors import InputError
from vidsieve.executor import LocalExecutor, RayExecutor
from vidsieve.pipeline import CompressOptions, info
from vidsieve.pipeline.batch import compress_batch, expand_inputs, is_complete

OPTS = CompressOptions(detector="motion")
NAMES = ["cam1.vsv", "cam2.vsv", "night/cam3.vsv"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """cam1.mkv, cam2.mkv and night/cam3.mkv (different scenes), beside a notes.txt that is no video."""
    root = tmp_path_factory.mktemp("archive")
    (root / "night").mkdir()
    for i, rel in enumerate(["cam1.mkv", "cam2.mkv", "night/cam3.mkv"]):
        write_scene(Scene(width=192, height=128, frames=20, seed=i,
                          movers=[Mover(4 + i, 16, (300 + 40 * i, 90), 0.45)]), root / rel)
    (root / "notes.txt").write_text("not a video, and not named like one")
    return root


def outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_folders_and_globs_name_their_outputs(archive, tmp_path):
    got = {rel.as_posix(): Path(src).name for src, rel in expand_inputs([str(archive)])}
    assert got == {"cam1.vsv": "cam1.mkv", "cam2.vsv": "cam2.mkv", "night/cam3.vsv": "cam3.mkv"}
    got = [rel.as_posix() for _, rel in expand_inputs([str(archive / "cam*.mkv"), str(archive / "cam1.mkv")])]
    assert got == ["cam1.vsv", "cam2.vsv"]  # the same input twice is one task
    other = tmp_path / "other"
    other.mkdir()
    (other / "cam1.mkv").write_bytes((archive / "cam1.mkv").read_bytes())
    with pytest.raises(InputError, match="would both be written to cam1.vsv"):
        expand_inputs([str(archive / "cam1.mkv"), str(other / "cam1.mkv")])
    with pytest.raises(InputError, match="input not found"):
        expand_inputs([str(archive / "missing.mp4")])
    with pytest.raises(InputError, match="input not found"):
        expand_inputs([str(archive / "*.mov")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no video files"):
        expand_inputs([str(tmp_path / "empty")])


def test_a_batch_writes_one_complete_file_per_input_and_a_rerun_skips_them(archive, tmp_path):
    out = tmp_path / "out"
    s = compress_batch([str(archive)], out, OPTS, LocalExecutor(2), progress=False)
    assert s.exit_code == 0 and s.count("done") == 3
    assert sorted(outputs(out)) == NAMES
    for it in s.items:
        assert is_complete(it.output)
        d = info(it.output)
        assert d["integrity"] == "complete" and d["frames"] == 20 == it.frames and it.bytes_out == os.path.getsize(it.output)
    # A crash leaves a temporary name (ignored) or a cut-off file under the final name (done again).
    cut = out / "cam2.vsv"
    cut.write_bytes(cut.read_bytes()[:-100])
    (out / ".cam1.vsv.part").write_bytes(b"left by a killed task")
    before = (out / "cam1.vsv").stat().st_mtime_ns
    s2 = compress_batch([str(archive)], out, OPTS, LocalExecutor(2), progress=False)
    assert [it.status for it in s2.items] == ["skipped", "done", "skipped"]
    assert (out / "cam1.vsv").stat().st_mtime_ns == before and is_complete(cut)


def test_a_bad_input_fails_alone_with_its_error(archive, tmp_path):
    bad = tmp_path / "in" / "broken.mp4"
    bad.parent.mkdir()
    bad.write_text("this is not a video")
    out = tmp_path / "out"
    r = run_cli("compress", archive / "cam1.mkv", bad, archive / "night", "--out-dir", out, "--detector", "motion",
                "--jobs", "2", "--json")
    assert r.returncode == 2, r.stderr  # bad input
    assert "Traceback" not in r.stderr
    assert f"failed: {bad}: cannot open {bad}" in r.stderr
    doc = json.loads(r.stdout)
    assert (doc["compressed"], doc["failed"]) == (2, 1)
    failed = [it for it in doc["items"] if it["status"] == "failed"]
    assert failed[0]["input"] == str(bad) and "as a video" in failed[0]["error"]
    assert sorted(outputs(out)) == ["cam1.vsv", "cam3.vsv"]  # nothing at all for the bad one


def test_batch_usage_errors(archive, tmp_path):
    assert_clean_error(run_cli("compress", archive / "cam1.mkv", archive / "cam2.mkv", "-o", tmp_path / "x.vsv"),
                       "--out-dir")
    assert_clean_error(run_cli("compress", archive / "cam1.mkv", "-o", tmp_path / "x.vsv", "--executor", "ray"),
                       "batches")
    assert_clean_error(run_cli("compress", tmp_path / "nothing*.mp4", "--out-dir", tmp_path / "o"), "not found")
    assert not (tmp_path / "x.vsv").exists()


def test_ray_writes_the_bytes_local_writes(archive, tmp_path, ray_local, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
    local = compress_batch([str(archive)], tmp_path / "local", OPTS, LocalExecutor(2), progress=False)
    on_ray = compress_batch([str(archive)], tmp_path / "ray", OPTS, RayExecutor(), progress=False)
    assert local.exit_code == on_ray.exit_code == 0 and on_ray.executor == "ray"
    a, b = outputs(tmp_path / "local"), outputs(tmp_path / "ray")
    assert sorted(a) == NAMES and a == b


def _ray_task_pids(name: str) -> list[int]:
    """Workers whose process title says they run the vidsieve task ``name`` (Ray titles them ``ray::NAME``)."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "cmdline").read_bytes().startswith(f"ray::vidsieve:{name}".encode()):
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def test_a_killed_worker_is_retried_and_the_batch_completes(tmp_path, ray_local):
    long_clip = tmp_path / "long.mkv"
    write_scene(Scene(width=320, height=240, frames=60, movers=[Mover(5, 50, (300, 80), 0.5)]), long_clip)
    result = {}
    run = threading.Thread(target=lambda: result.setdefault(
        "s", compress_batch([str(long_clip)], tmp_path / "out", OPTS, RayExecutor(), progress=False)))
    run.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and run.is_alive():
        pids = _ray_task_pids("compress long.mkv")
        if pids:
            time.sleep(0.5)  # mid-run: imports done or under way, frames being coded
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.02)
    run.join(300)
    assert killed is not None, "never saw the task's worker"
    s = result["s"]
    assert s.exit_code == 0 and s.items[0].status == "done", s.to_json()
    assert info(s.items[0].output)["frames"] == 60
    assert not list((tmp_path / "out").glob(".*.part"))
