"""``vidsieve soak``: the load test. Can this box ingest N live cameras for hours? Looping clips served as
MPEG-TS over TCP in real time, one per camera, ingested by one ``vidsieve ingest`` process for N minutes.

    vidsieve soak data/vtest.avi --cameras 4 --seconds 600 --out soak.json

Measures, per camera, kept share, kbps, lag (largest and at the end) and reconnects (from the ingester's
status endpoint and its per-segment JSON lines), and the process's resident memory over time (/proc);
``--kill-at`` kills it mid-run and checks that every camera's live file decodes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..files import write_json


def serve(clip: str, port: int, seconds: float, rate: float | None = None) -> None:
    """Send the clip, looping, as H.264 in MPEG-TS (x264 ultrafast, 1 s GOP), paced at real time; with
    ``rate``, at that many frames a second (source frames dropped or repeated by their timestamps)."""
    from fractions import Fraction

    import av

    out = av.open(f"tcp://127.0.0.1:{port}?listen=1", "w", format="mpegts")
    st = None
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        with av.open(clip) as src:
            s_in = src.streams.video[0]
            native = Fraction(s_in.average_rate or 10)
            fps = Fraction(rate).limit_denominator(1000) if rate else native
            for k, f in enumerate(src.decode(s_in)):
                if st is None:
                    st = out.add_stream("libx264", rate=fps)
                    st.width, st.height, st.pix_fmt = f.width - f.width % 2, f.height - f.height % 2, "yuv420p"
                    st.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(int(round(fps)))}
                if rate:  # the source frame on show at each output instant up to this one's end
                    copies = int((k + 1) * fps / native) - int(k * fps / native)
                else:
                    copies = 1
                rgb = f.to_ndarray(format="rgb24")[: st.height, : st.width]
                for _ in range(copies):
                    wait = t0 + n / fps - time.monotonic()
                    if wait > 0:
                        time.sleep(float(wait))
                    g = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    g.pts, g.time_base = n, 1 / fps
                    for pkt in st.encode(g):
                        out.mux(pkt)
                    n += 1
                if time.monotonic() - t0 >= seconds:
                    break
    out.close()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_status(port: int) -> dict | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def soak(clips: str | list[str], seconds: float = 600.0, segment_seconds: float = 60.0, model: str | None = None,
         precision: str | None = None, out: str | None = None, cameras: int = 1, kill_at: float | None = None,
         detector: str | None = None, rate: float | None = None) -> dict:
    """Serve ``cameras`` loopback cameras, camera k looping ``clips[k % len(clips)]`` in real time, for
    ``seconds`` (at ``rate`` frames a second, else each clip's own), ingested by one ``vidsieve ingest
    --source ...`` process (``model``, ``precision``, ``detector``: its options); per camera its kept share, rate, lag (largest, and at the end) and
    reconnects, and the process's resident memory over time, written to ``out`` as JSON.

    With ``kill_at`` (seconds), the ingester is killed with SIGKILL then, and every camera's live
    ``.part`` file is decoded: what ``kill -9`` loses is only the records in flight."""
    from ..pipeline import info

    clips = [clips] if isinstance(clips, str) else list(clips)
    ports = [_free_port() for _ in range(cameras)]
    status_port = _free_port()
    senders = [subprocess.Popen([sys.executable, "-m", "vidsieve.ingest.soak", clips[k % len(clips)], str(p),
                                 str(seconds + 30), *([str(rate)] if rate else [])], stderr=subprocess.DEVNULL)
               for k, p in enumerate(ports)]
    time.sleep(2)
    out_dir = tempfile.mkdtemp(prefix="vidsieve-soak-")
    # Files, not pipes: nobody reads a pipe until the end, and an ingester that
    # logs a lot would block on a full one and stop consuming the stream.
    out_f = open(Path(out_dir) / "ingest.stdout", "w+")
    err_f = open(Path(out_dir) / "ingest.stderr", "w+")
    extra = [*(["--model", model] if model else []), *(["--precision", precision] if precision else []),
             *(["--detector", detector] if detector else [])]
    sources = [a for k, p in enumerate(ports) for a in ("--source", f"cam{k}=tcp://127.0.0.1:{p}")]
    ing = subprocess.Popen([sys.executable, "-m", "vidsieve", "ingest", *sources, "--out-dir", out_dir,
                            "--segment-seconds", str(segment_seconds), "--run-seconds", str(seconds),
                            "--status-port", str(status_port), *extra],
                           stdout=out_f, stderr=err_f, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    t0 = time.monotonic()
    rss, last_status, lag_max = [], None, {}
    killed = False
    while ing.poll() is None:
        r = rss_mb(ing.pid)
        if r is not None:
            rss.append((round(time.monotonic() - t0, 1), round(r, 1)))
        st = _get_status(status_port)
        if st is not None:
            last_status = st
            for c in st["cameras"]:
                lag_max[c["camera"]] = max(lag_max.get(c["camera"], 0.0), c["lag_s"])
        if kill_at is not None and time.monotonic() - t0 >= kill_at:
            ing.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(5)
    ing.wait()
    out_f.seek(0)
    err_f.seek(0)
    text, err = out_f.read(), err_f.read()
    out_f.close()
    err_f.close()
    for p in senders:
        p.send_signal(signal.SIGTERM)
    lines = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    per_camera = {}
    for c in (last_status or {}).get("cameras", []):
        name = c["camera"]
        mine = [x for x in lines if x.get("camera") == name]
        per_camera[name] = {
            "clip": Path(clips[int(name[3:]) % len(clips)]).name, "frames_in": c["frames_in"],
            "selected": c["selected"], "coded": c["coded"], "kept_share": c["kept_share"], "kbps": c["kbps"],
            "lag_max_s": round(max(lag_max.get(name, 0.0), *[x["lag_max_s"] for x in mine]), 3),
            "lag_end_s": c["lag_s"], "reconnects": c["reconnects"], "segments": len(mine)}
    after_1min = [m for t, m in rss if t >= 60]
    res = {"clips": [Path(c).name for c in clips], "cameras": cameras, "fps": rate or "each clip's own",
           "model": model or "default",
           "precision": precision or "default", "detector": detector or "auto", "seconds": seconds,
           "per_camera": per_camera,
           "rss_mb_at_1min": after_1min[0] if after_1min else None,
           "rss_mb_end": rss[-1][1] if rss else None,
           "rss_mb_max": max((m for _, m in rss), default=None),
           "rss_band_after_1min_mb": round(max(after_1min) - min(after_1min), 1) if after_1min else None,
           "rss_samples": rss, "degradations": [ln for ln in err.splitlines() if "lag" in ln][:50],
           "exit_code": ing.returncode, "out_dir": out_dir}
    if killed:
        parts = sorted(Path(out_dir).rglob(".*.vsv.part"))
        decoded = {}
        for p in parts:
            try:
                d = info(p)
                decoded[str(p.relative_to(out_dir))] = {"frames": d["frames"], "integrity": d["integrity"]}
            except Exception as exc:  # a .part that does not decode is what this checks for
                decoded[str(p.relative_to(out_dir))] = {"error": str(exc)}
        res["killed_at_s"] = kill_at
        res["parts"] = decoded
        res["parts_decoded"] = sum("error" not in d for d in decoded.values())
    if out:
        write_json(out, res)
    return res


if __name__ == "__main__":
    # The sender, run as its own process so that its pacing does not share the ingester's interpreter.
    serve(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else None)
