"""Live ingestion over a real TCP stream on loopback."""

import json

import pytest
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


from conftest import assert_clean_error, run_cli
from vidsieve.container import ContainerReader, FrameRecord, SkipRecord
from vidsieve.ingest.live import enforce_retention

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def garbage_server(port: int, stop: threading.Event) -> socket.socket:
    """A "camera" on 127.0.0.1:``port`` that answers every connection with random bytes until ``stop``."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(8)
    srv.settimeout(0.5)

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                c.sendall(os.urandom(200_000))
                c.close()
            except OSError:
                continue

    threading.Thread(target=serve, daemon=True).start()
    return srv


def start_sender(port, frames, first=0):
    p = subprocess.Popen([sys.executable, str(HERE / "stream_sender.py"), str(port), str(frames), str(first)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it listen
    return p


def start_ingest(port, out, *extra):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "-m", "vidsieve", "ingest", f"tcp://127.0.0.1:{port}", "--out-dir",
                             str(out), "--detector", "motion", "--segment-seconds", "3", *map(str, extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def represented_pts(path):
    """(kept pts, all pts) of every complete record in a segment file, finished or not."""
    import warnings

    kept, allp = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ContainerReader(path) as r:
            for rec in r.records():
                if isinstance(rec, FrameRecord):
                    kept.append(rec.pts)
                    allp.append(rec.pts)
                elif isinstance(rec, SkipRecord):
                    allp.extend(rec.pts)
    return kept, allp


def wait_for_files(out, n, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if len(list(out.glob("*/*/*.vsv"))) >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} finished segments after {timeout} s")


def all_files(out):
    return sorted(out.glob("*/*/*.vsv")) + sorted(out.glob("*/*/.*.vsv.part"))


def test_sigkill_mid_segment_loses_nothing_written(tmp_path):
    port = free_port()
    sender = start_sender(port, 300)
    ing = start_ingest(port, tmp_path, "--fsync-interval", "0.5")
    try:
        wait_for_files(tmp_path, 2)
        # Kill mid-segment, at once: when the live file holds a few frames but is far from its rotation
        # (a file seen late in its segment may rotate before the kill lands; slow machines take longer).
        end = time.time() + 30
        while time.time() < end:
            live = list(tmp_path.glob("*/*/.*.vsv.part"))
            try:
                if live and 5 <= len(represented_pts(live[0])[1]) <= 20:
                    break
            except Exception:  # renamed under us: the next one is live now
                pass
            time.sleep(0.1)
        ing.send_signal(signal.SIGKILL)
        ing.wait(10)
    finally:
        sender.kill()
    finished = sorted(tmp_path.glob("*/*/*.vsv"))
    parts = sorted(tmp_path.glob("*/*/.*.vsv.part"))
    assert len(finished) >= 1 and len(parts) == 1
    pts = []
    for f in finished + parts:
        kept, allp = represented_pts(f)
        if not allp and f in parts:
            continue  # killed just after a rotation: the new live file holds nothing yet, and nothing is lost
        assert kept, f  # every file starts with a kept frame
        pts.extend(allp)
    # Together the files cover the stream from its first frame, without holes.
    # (MPEG-TS timestamps: 90 kHz ticks, one frame every 9000.)
    pts.sort()
    steps = {b - a for a, b in zip(pts, pts[1:])}
    assert steps == {9000} and len(pts) >= 40
    for f in finished:
        r = run_cli("info", f, "--json", check=True)
        assert json.loads(r.stdout)["integrity"] == "complete"
    # The live file decodes: every complete record before the cut (an empty one says so, in one line).
    if represented_pts(parts[0])[1]:
        run_cli("decompress", parts[0], "-o", tmp_path / "part.mkv", check=True)
    else:
        r = run_cli("decompress", parts[0], "-o", tmp_path / "part.mkv")
        assert r.returncode != 0 and "holds no complete frame" in r.stderr and "Traceback" not in r.stderr


def test_sigterm_closes_the_segment_cleanly(tmp_path):
    port = free_port()
    sender = start_sender(port, 200)
    ing = start_ingest(port, tmp_path)
    try:
        wait_for_files(tmp_path, 1)
        time.sleep(1.5)
        ing.send_signal(signal.SIGTERM)
        out, err = ing.communicate(timeout=30)
    finally:
        sender.kill()
    assert ing.returncode == 0, err
    assert not list(tmp_path.glob("*/*/.*.part"))
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert len(lines) == len(list(tmp_path.glob("*/*/*.vsv"))) >= 2
    assert {"start", "end", "frames_in", "coded", "selected", "kbps", "lag_s", "detections"} <= set(lines[0])
    st = json.loads(run_cli("ingest", "--status", tmp_path, check=True).stdout)
    assert st["segments"] == len(lines) and st["frames"] == sum(x["frames_in"] for x in lines)


def test_sender_drops_and_returns(tmp_path):
    port = free_port()
    a = start_sender(port, 25)
    ing = start_ingest(port, tmp_path)
    try:
        a.wait(20)
        time.sleep(1.5)  # the camera is gone for a while
        b = start_sender(port, 25, first=25)
        b.wait(30)
        end = time.time() + 30  # let the ingester drain what it received
        while time.time() < end and sum(len(represented_pts(f)[1]) for f in all_files(tmp_path)) < 48:
            time.sleep(0.5)
        ing.send_signal(signal.SIGTERM)
        out, err = ing.communicate(timeout=30)
    finally:
        a.kill()
        ing.kill()
    files = sorted(tmp_path.glob("*/*/*.vsv"))
    infos = [json.loads(run_cli("info", f, "--json", check=True).stdout) for f in files]
    assert sum(d["frames"] for d in infos) >= 45, err
    assert sum(len(d["gaps"]) for d in infos) >= 1
    assert "reconnecting" in err


def test_garbage_on_the_socket(tmp_path):
    port = free_port()
    stop = threading.Event()
    srv = garbage_server(port, stop)
    r = subprocess.run([sys.executable, "-m", "vidsieve", "ingest", f"tcp://127.0.0.1:{port}", "--out-dir",
                        str(tmp_path / "o"), "--detector", "motion", "--max-reconnects", "1"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    stop.set()
    srv.close()
    assert_clean_error(r)
    assert not list((tmp_path / "o").glob("*/*/*.vsv"))


def test_retention_deletes_idle_then_oldest(tmp_path):
    d = tmp_path / "2026-01-01" / "00"
    d.mkdir(parents=True)
    names = ["00.00.vsv", "01.00.vsv", "02.00.vsv", "03.00.vsv"]
    active = {"00.00.vsv": True, "01.00.vsv": False, "02.00.vsv": True, "03.00.vsv": False}
    lines = []
    for n in names:
        (d / n).write_bytes(b"x" * 1000)
        lines.append(json.dumps({"segment": str(d / n), "active": active[n]}))
    live = d / ".04.00.vsv.part"
    live.write_bytes(b"x" * 1000)
    (tmp_path / "segments.jsonl").write_text("\n".join(lines) + "\n")
    removed = enforce_retention(tmp_path, None, 3000)
    assert [p.name for p in removed] == ["01.00.vsv", "03.00.vsv"]
    removed = enforce_retention(tmp_path, None, 1500)
    assert [p.name for p in removed] == ["00.00.vsv", "02.00.vsv"]
    assert live.exists()
    old = d / "05.00.vsv"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    assert [p.name for p in enforce_retention(tmp_path, 2, None)] == ["05.00.vsv"]


def test_segment_names_never_collide(tmp_path):
    from datetime import datetime, timezone

    from vidsieve.ingest.live import segment_path

    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    first = segment_path(tmp_path, t)
    assert first == tmp_path / "2026-01-02" / "03" / "04.05.vsv"
    first.parent.mkdir(parents=True)
    first.write_bytes(b"done")
    (first.parent / ".04.05-1.vsv.part").write_bytes(b"live")
    assert segment_path(tmp_path, t).name == "04.05-2.vsv"


def test_target_kbps_holds_through_a_degradation_and_back(tmp_path, monkeypatch):
    """The lag guard lowers quality on top of what --target-kbps needs and, caught up again, gives back
    only its own part: the rate controller's correction survives (the guard used to overwrite it)."""
    from vidsieve.datasets.synthetic import Mover, Scene, write_scene
    from vidsieve.ingest.live import Ingester, IngestOptions
    from vidsieve.pipeline import CompressOptions
    from vidsieve.rate import LagGuard

    scene = Scene(width=128, height=96, frames=150, noise=2.0,
                  movers=[Mover(i, i + 12, (450, 110), 0.5, direction=1 - 2 * (k % 2)) for k, i in
                          enumerate(range(0, 140, 14))])
    src = write_scene(scene, tmp_path / "busy.mkv")
    levels = [0] * 40 + [1, 2] + [2] * 38 + [1, 0] + [0] * 70  # behind from frame 40 to 81, then caught up
    seen = []

    def scripted_update(self, lag):
        want = levels[min(len(seen), len(levels) - 1)]
        seen.append(want)
        changed, self.level = want != self.level, want
        return changed

    monkeypatch.setattr(LagGuard, "update", scripted_update)
    copts = CompressOptions(detector="motion", sensitivity=50.0, max_gap=0.1, target_kbps=40.0)
    ing = Ingester(str(src), tmp_path / "out", IngestOptions(segment_seconds=60, realtime_files=False,
                                                             compress=copts), emit=lambda d: None)
    ing.compress_opts.segment_seconds = 1.0  # a rate correction every second
    offsets = []  # (guard level, target's offset, offset in force) after each frame
    open_segment = Ingester._open_segment

    def watched_open_segment(self, *a, **k):
        open_segment(self, *a, **k)
        push = self.comp.push

        def push_and_watch(rgb, pts):
            d = push(rgb, pts)
            offsets.append((self.guard.level, self.selector.rate.target_offset, self.selector.rate.offset))
            return d
        self.comp.push = push_and_watch

    monkeypatch.setattr(Ingester, "_open_segment", watched_open_segment)
    assert ing.run() == 0
    degraded = [o for lvl, t, o in offsets if lvl >= LagGuard.LOWER_QUALITY]
    assert degraded and all(o == pytest.approx(t - 1.5) for lvl, t, o in offsets if lvl >= 2)
    after = offsets[-1]
    assert after[0] == 0 and after[2] == after[1] != 0  # back to the target's own offset, which is not zero
    line = json.loads((tmp_path / "out" / "segments.jsonl").read_text().splitlines()[-1])
    assert abs(line["kbps"] - 40.0) / 40.0 < 0.25, line["kbps"]
