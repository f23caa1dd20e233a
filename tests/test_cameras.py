"""Many cameras in one ingester: config, shared models, a status endpoint, cameras that drop or send garbage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import assert_clean_error, run_cli
from test_ingest import free_port, garbage_server, represented_pts, start_sender
from vidsieve.errors import UsageError
from vidsieve.ingest.cameras import MultiIngester, cameras_from_sources, load_config, parse_sources, prometheus
from vidsieve.ingest.live import IngestOptions
from vidsieve.pipeline import CompressOptions


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "cameras.toml"
    p.write_text(text)
    return str(p)


def test_a_config_gives_each_camera_its_folder_settings_and_disk_share(tmp_path):
    path = write(tmp_path, f"""
out_dir = "{tmp_path / 'rec'}"
max_disk = "3G"
keep_days = 7
policy = "archive"
status_port = 9123

[cameras.door]
url = "rtsp://10.0.0.5/1"
policy = "evidence"

[cameras.yard]
url = "rtsp://10.0.0.6/1"
target_kbps = 60
max_disk = "500M"
keep_days = 2

[cameras.gate]
url = "rtsp://10.0.0.7/1"
out_dir = "{tmp_path / 'elsewhere'}"
""")
    cams, port = load_config(path, IngestOptions(), None)
    by = {c.name: c for c in cams}
    assert port == 9123 and list(by) == ["door", "yard", "gate"]
    assert by["door"].out_dir == tmp_path / "rec" / "door" and by["gate"].out_dir == tmp_path / "elsewhere"
    assert by["door"].opts.compress.policy == "evidence" and by["gate"].opts.compress.policy == "archive"
    assert by["yard"].opts.compress.target_kbps == 60 and by["door"].opts.compress.target_kbps is None
    assert by["door"].opts.max_disk == (3 << 30) // 3 and by["yard"].opts.max_disk == 500 << 20
    assert by["yard"].opts.keep_days == 2 and by["gate"].opts.keep_days == 7
    cams = cameras_from_sources(parse_sources(["a=tcp://x:1", "b=tcp://x:2"]),
                                IngestOptions(max_disk=1000), str(tmp_path))
    assert [(c.name, c.out_dir, c.opts.max_disk) for c in cams] == [("a", tmp_path / "a", 500),
                                                                      ("b", tmp_path / "b", 500)]


@pytest.mark.parametrize("text, needle", [
    ('[cameras.a]\nurl = "x"\nfps = 3\n', "unknown setting 'fps'"),
    ('[cameras.a]\npolicy = "balanced"\n', "no url"),
    ('colour = 1\n[cameras.a]\nurl = "x"\n', "unknown setting 'colour'"),
    ('[cameras."../up"]\nurl = "x"\n', "folder name"),
    ('[cameras.a]\nurl = "x"\nmax_disk = "lots"\n', "not a size"),
    ('[cameras.a]\nurl = "x"\npolicy = "loud"\n', "policy 'loud'"),
    ('[cameras.a]\nurl = "x"\nsegment_seconds = -1\n', "segment_seconds"),
    ('out_dir = "o"\n', "no cameras"),
    ('[cameras.a\nurl = "x"\n', "not valid TOML"),
])
def test_config_errors_name_the_setting(tmp_path, text, needle):
    if not text.startswith("out_dir"):
        text = f'out_dir = "{tmp_path}"\n' + text
    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        load_config(write(tmp_path, text), IngestOptions(), None)


def test_cli_errors_are_one_line(tmp_path):
    assert_clean_error(run_cli("ingest", "--source", "a=tcp://127.0.0.1:9", "--source", "a=tcp://127.0.0.1:8",
                               "--out-dir", tmp_path), "named twice")
    assert_clean_error(run_cli("ingest", "--config", tmp_path / "missing.toml"), "config file not found")
    assert_clean_error(run_cli("ingest", "--source", "cam", "--out-dir", tmp_path), "NAME=URL")
    assert not list(tmp_path.iterdir())


def test_cameras_share_one_codec_and_one_stateless_detector(tmp_path):
    opts = IngestOptions(compress=CompressOptions(detector="vidsieve-student"))
    cams = cameras_from_sources(parse_sources(["a=tcp://127.0.0.1:1", "b=tcp://127.0.0.1:2"]), opts, str(tmp_path))
    multi = MultiIngester(cams)
    a, b = multi.ingesters
    assert a.codec is b.codec and a.detector is b.detector and a.detector is not None
    motion = IngestOptions(compress=CompressOptions(detector="motion"))
    multi = MultiIngester(cameras_from_sources(parse_sources(["a=x", "b=y"]), motion, str(tmp_path)))
    assert all(i.detector is None for i in multi.ingesters)  # stateful: each camera's selector makes its own
    st = multi.status()
    assert [c["camera"] for c in st["cameras"]] == ["a", "b"] and st["cameras"][0]["frames_in"] == 0
    assert 'vidsieve_frames_in_total{camera="a"} 0' in prometheus(st)


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def test_three_cameras_one_steady_one_dropping_one_garbage(tmp_path):
    steady_port, drop_port, junk_port, status_port = free_port(), free_port(), free_port(), free_port()
    stop = threading.Event()
    junk = garbage_server(junk_port, stop)
    steady = start_sender(steady_port, 80)
    first = start_sender(drop_port, 25)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    ing = subprocess.Popen([sys.executable, "-m", "vidsieve", "ingest", "--out-dir", str(tmp_path),
                            "--source", f"steady=tcp://127.0.0.1:{steady_port}",
                            "--source", f"drops=tcp://127.0.0.1:{drop_port}",
                            "--source", f"junk=tcp://127.0.0.1:{junk_port}",
                            "--detector", "motion", "--segment-seconds", "3", "--status-port", str(status_port)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    second = None
    try:
        first.wait(30)
        time.sleep(1.5)  # the dropping camera is gone for a while
        second = start_sender(drop_port, 25, first=25)
        second.wait(30)
        time.sleep(3)
        status = json.loads(get(status_port, "/status"))
        metrics = get(status_port, "/metrics")
        ing.send_signal(signal.SIGTERM)
        out, err = ing.communicate(timeout=60)
    finally:
        stop.set()
        junk.close()
        for p in (steady, first, second, ing):
            if p is not None and p.poll() is None:
                p.kill()
    assert ing.returncode == 0, err
    cams = {c["camera"]: c for c in status["cameras"]}
    assert cams["steady"]["frames_in"] > 30 and cams["steady"]["reconnects"] == 0
    assert cams["drops"]["reconnects"] >= 1 and cams["junk"]["reconnects"] >= 1
    assert cams["junk"]["frames_in"] == 0 and cams["junk"]["state"] == "reconnecting"
    assert 'vidsieve_reconnects_total{camera="drops"}' in metrics and "vidsieve_lag_seconds" in metrics
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert {x["camera"] for x in lines} == {"steady", "drops"}
    for name in ("steady", "drops"):
        files = sorted((tmp_path / name).glob("*/*/*.vsv"))
        assert files and not list((tmp_path / name).glob("*/*/.*.part")), name  # SIGTERM finished every file
        infos = [json.loads(run_cli("info", f, "--json", check=True).stdout) for f in files]
        assert all(d["integrity"] == "complete" for d in infos)
        # Everything received before the status was read is in the files (the steady camera never noticed).
        assert sum(d["frames"] for d in infos) >= cams[name]["frames_in"]
        if name == "drops":
            assert sum(len(d["gaps"]) for d in infos) >= 1 and sum(d["frames"] for d in infos) >= 30
    assert not list((tmp_path / "junk").glob("*/*/*.vsv*"))
    st = json.loads(run_cli("ingest", "--status", tmp_path, check=True).stdout)
    assert set(st["cameras"]) == {"steady", "drops"}


def test_kill_9_loses_only_the_records_in_flight_on_every_camera(tmp_path):
    ports = [free_port(), free_port()]
    senders = [start_sender(p, 200) for p in ports]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    ing = subprocess.Popen([sys.executable, "-m", "vidsieve", "ingest", "--out-dir", str(tmp_path),
                            *[a for i, p in enumerate(ports) for a in ("--source", f"cam{i}=tcp://127.0.0.1:{p}")],
                            "--detector", "motion", "--segment-seconds", "60", "--fsync-interval", "0.5"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        end = time.time() + 90
        while time.time() < end:
            parts = [list((tmp_path / f"cam{i}").glob("*/*/.*.vsv.part")) for i in range(2)]
            try:
                if all(p and len(represented_pts(p[0])[1]) >= 15 for p in parts):
                    break
            except Exception:
                pass
            time.sleep(0.2)
        ing.send_signal(signal.SIGKILL)
        ing.wait(10)
    finally:
        for p in senders:
            p.kill()
    for i in range(2):
        parts = list((tmp_path / f"cam{i}").glob("*/*/.*.vsv.part"))
        assert len(parts) == 1, i
        kept, allp = represented_pts(parts[0])
        assert kept and len(allp) >= 15
        run_cli("decompress", parts[0], "-o", tmp_path / f"cam{i}.mkv", check=True)


def test_turns_go_in_arrival_order_and_the_holder_cannot_barge_back_in():
    from vidsieve.ingest.cameras import Turns

    turns, order = Turns(), []

    def camera(name):
        with turns:
            order.append(name)

    turns.__enter__()
    threads = []
    for name in ("busy", "quiet"):
        threads.append(threading.Thread(target=camera, args=(name,)))
        threads[-1].start()
        time.sleep(0.2)  # each asks while the turn is held, in this order
    turns.__exit__(None, None, None)
    with turns:  # the holder asks again at once: it queues behind both
        order.append("holder")
    for t in threads:
        t.join(5)
    assert order == ["busy", "quiet", "holder"]


def test_an_ingester_imports_only_what_it_uses():
    """No ultralytics, Ray, matplotlib, nor CompressAI's datasets (torch_geometric, torchvision, pandas)."""
    probe = ("import sys\n"
             "from vidsieve.ingest.cameras import MultiIngester, cameras_from_sources, parse_sources\n"
             "from vidsieve.ingest.live import IngestOptions\n"
             "cams = cameras_from_sources(parse_sources(['a=tcp://127.0.0.1:1']), IngestOptions(), 'out')\n"
             "m = MultiIngester(cams)\n"
             "assert m.ingesters[0].detector is not None\n"
             "print(' '.join(sorted(k for k in ('ultralytics', 'ray', 'matplotlib', 'torch_geometric', "
             "'torchvision', 'pandas', 'compressai.datasets') if k in sys.modules)))\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""
