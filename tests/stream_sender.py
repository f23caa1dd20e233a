"""Test helper: serve a generated scene as MPEG-TS over TCP in real time.

    python stream_sender.py PORT FRAMES [FIRST_FRAME]

Listens on 127.0.0.1:PORT, waits for one client, then sends FRAMES frames at
10 fps (x264 ultrafast, a keyframe every second), like a camera would.
"""
import sys, time
from fractions import Fraction
import av
from vidsieve.datasets.synthetic import Scene, Mover, render
port, frames = int(sys.argv[1]), int(sys.argv[2])
first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
sc = Scene(width=192, height=128, frames=first + frames, fps=10, noise=1.0, movers=[Mover(20, 50, (400, 100), 0.5), Mover(80, 110, (400, 100), 0.5)])
out = av.open(f"tcp://127.0.0.1:{port}?listen=1", "w", format="mpegts")
st = out.add_stream("libx264", rate=10); st.width, st.height, st.pix_fmt = 192, 128, "yuv420p"
st.options = {"preset": "ultrafast", "tune": "zerolatency", "g": "10"}
t0 = time.monotonic()
for i, rgb in render(sc):
    if i < first:
        continue
    f = av.VideoFrame.from_ndarray(rgb, format="rgb24"); f.pts = i; f.time_base = Fraction(1, 10)
    for p in st.encode(f): out.mux(p)
    d = t0 + (i - first + 1) / 10 - time.monotonic()
    if d > 0: time.sleep(d)
for p in st.encode(None): out.mux(p)
out.close()
