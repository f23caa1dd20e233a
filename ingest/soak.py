"""``vidsieve soak``: can this box ingest a live stream for hours? A looping clip served as MPEG-TS over
TCP in real time, ingested by ``vidsieve ingest`` for N minutes.

    vidsieve soak data/vtest.avi --seconds 600 --out soak.json

Measures the ingester's lag (from its per-segment JSON lines), its resident
memory over time (/proc), kbps, and frames coded and selected.
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


def serve(clip: str, port: int, seconds: float) -> None:
    """Send the clip, looping, as H.264 in MPEG-TS (x264 ultrafast, 1 s GOP), paced at real time."""
    from fractions import Fraction

    import av

    out = av.open(f"tcp://127.0.0.1:{port}?listen=1", "w", format="mpegts")
    st = None
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        with av.open(clip) as src:
            s_in = src.streams.video[0]
            fps = Fraction(s_in.average_rate or 10)
            for f in src.decode(s_in):
                if st is None:
                    st = out.add_stream("libx264", rate=fps)
                    st.width, st.height, st.pix_fmt = f.width - f.width % 2, f.height - f.height % 2, "yuv420p"
                    st.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(int(round(fps)))}
                wait = t0 + n / fps - time.monotonic()
                if wait > 0:
                    time.sleep(float(wait))
                g = av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24")[: st.height, : st.width], format="rgb24")
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


def soak(clip: str, seconds: float = 600.0, segment_seconds: float = 60.0, model: str | None = None,
         precision: str | None = None, out: str | None = None) -> dict:
    """Serve ``clip`` as a live stream for ``seconds`` and ingest it with the CLI (``model``, ``precision``:
    its options); the ingester's lag, memory over time, rate and counts, written to ``out`` as JSON."""
    from types import SimpleNamespace

    a = SimpleNamespace(clip=clip, seconds=seconds, segment_seconds=segment_seconds, model=model,
                        precision=precision)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = subprocess.Popen([sys.executable, "-m", "vidsieve.ingest.soak", a.clip, str(port), str(a.seconds + 30)],
                              stderr=subprocess.DEVNULL)
    time.sleep(2)
    out_dir = tempfile.mkdtemp(prefix="vidsieve-soak-")
    # Files, not pipes: nobody reads a pipe until the end, and an ingester that
    # logs a lot would block on a full one and stop consuming the stream.
    out_f = open(Path(out_dir) / "ingest.stdout", "w+")
    err_f = open(Path(out_dir) / "ingest.stderr", "w+")
    codec_args = [*(["--model", a.model] if a.model else []), *(["--precision", a.precision] if a.precision else [])]
    ing = subprocess.Popen([sys.executable, "-m", "vidsieve", "ingest", f"tcp://127.0.0.1:{port}", "--out-dir",
                            out_dir, "--segment-seconds", str(a.segment_seconds), "--run-seconds", str(a.seconds),
                            *codec_args],
                           stdout=out_f, stderr=err_f, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    t0 = time.monotonic()
    rss = []
    while ing.poll() is None:
        r = rss_mb(ing.pid)
        if r is not None:
            rss.append((round(time.monotonic() - t0, 1), round(r, 1)))
        time.sleep(5)
    ing.wait()
    out_f.seek(0)
    err_f.seek(0)
    out, err = out_f.read(), err_f.read()
    out_f.close()
    err_f.close()
    sender.send_signal(signal.SIGTERM)
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    after_1min = [m for t, m in rss if t >= 60]
    frames = sum(x["frames_in"] for x in lines)
    res = {"clip": Path(a.clip).name, "model": a.model or "default", "precision": a.precision or "default",
           "seconds": a.seconds, "segments": len(lines), "frames_in": frames,
           "coded": sum(x["coded"] for x in lines), "selected": sum(x["selected"] for x in lines),
           "selected_fraction": round(sum(x["selected"] for x in lines) / frames, 4) if frames else None,
           "kbps_mean": round(sum(x["bytes"] for x in lines) * 8 / 1000 / max(a.seconds - 5, 1), 2),
           "lag_max_s": max((x["lag_max_s"] for x in lines), default=None),
           "lag_end_s": lines[-1]["lag_s"] if lines else None,
           "rss_mb_at_1min": after_1min[0] if after_1min else None,
           "rss_mb_end": rss[-1][1] if rss else None,
           "rss_growth_after_1min_mb": round(max(after_1min) - after_1min[0], 1) if after_1min else None,
           "rss_samples": rss, "degradations": [l for l in err.splitlines() if "lag" in l][:50],
           "exit_code": ing.returncode, "out_dir": out_dir}
    if out:
        write_json(out, res)
    return res


if __name__ == "__main__":
    # The sender, run as its own process so that its pacing does not share the ingester's interpreter.
    serve(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
