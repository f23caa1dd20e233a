#!/usr/bin/env bash
# Build what scripts/train_gpu_lease.sh needs beside the repository, from ../shared:
#   .gpu/data  46 training photographs as JPEG q97 4:4:4 + 12 frames from the first half of each shared clip
#   .gpu/val   the 3 held-out photographs (wiki-047..049)
#   .whl       compressai and pytorch-msssim wheels for the GPU machine's Python (3.12)
# The lease carries at most 64 MiB with the repository, hence JPEG copies, and where the tree has grown (the
# shipped weights), the largest photographs re-encoded at q94 until everything fits with 1.5 MB to spare.
# Both folders are git-excluded.
#
#   bash scripts/prepare_gpu_lease.sh joint     for scripts/train_gpu_lease.sh joint, instead:
#   .gpu/clips  a short run of consecutive frames of each clip in ../shared/data/video/train (FRAMES, default
#               32, from a third of the way in), scaled to a short side of at most 288 pixels and coded with
#               x264 in 4:4:4 at the lowest CRF that fits the room the lease leaves
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${VIDSIEVE_SHARED:-../shared}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; printf '/.gpu/\n/.whl/\n' >> .git/info/exclude; }
rm -rf .gpu && mkdir -p .gpu/data .gpu/val .whl
room=$(( (64 << 20) - 1500000 - $(git ls-files -z | xargs -0 cat | wc -c) - (1 << 20) ))  # 1 MiB: the wheels
if [ "${1:-}" = joint ]; then
    rm -rf .gpu/data .gpu/val && mkdir -p .gpu/clips
    .venv/bin/python - "$SHARED/data/video/train" "$room" "${FRAMES:-32}" <<'PY'
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
from vidsieve.datasets.images import collect_files
from vidsieve.datasets.video import VideoReader

src, room, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
runs = {}
for path in collect_files([src])[1]:
    with VideoReader(path) as r:
        start = (r.frame_count_hint() or 0) // 3
        frames = []
        for f in r:
            if f.index >= start:
                frames.append(f.rgb)
            if len(frames) >= count:
                break
    h, w = frames[0].shape[:2]
    k = min(1.0, 288 / min(h, w))
    size = (max(2, round(w * k / 2) * 2), max(2, round(h * k / 2) * 2))
    runs[path.stem] = [cv2.resize(a, size, interpolation=cv2.INTER_AREA) if k < 1 else a for a in frames]
for crf in (8, 12, 16, 20, 24):
    for name, frames in runs.items():
        with av.open(f".gpu/clips/{name}.mkv", "w") as out:
            st = out.add_stream("libx264", rate=Fraction(10), options={"crf": str(crf)})
            st.height, st.width = frames[0].shape[:2]
            st.pix_fmt = "yuv444p"
            for a in frames:
                out.mux(st.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
            out.mux(st.encode())
    total = sum(p.stat().st_size for p in Path(".gpu/clips").glob("*.mkv"))
    print(f"{len(runs)} clips of {count} frames at crf {crf}: {total} bytes (room {room})")
    if total <= room:
        break
else:
    sys.exit(f"the clips need {total} bytes and the lease has room for {room}")
PY
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d .whl compressai==1.2.8 pytorch-msssim
    du -sh .gpu .whl
    exit 0
fi
.venv/bin/python - "$SHARED" "$room" <<'PY'
import sys
from pathlib import Path
from PIL import Image
from vidsieve.datasets.images import sample_video_frames
shared = Path(sys.argv[1])
for p in sorted((shared / "data/images/train").glob("*.png")):
    held = p.stem in ("wiki-047", "wiki-048", "wiki-049")
    Image.open(p).convert("RGB").save(Path(".gpu/val" if held else ".gpu/data") / f"{p.stem}.jpg",
                                      quality=97, subsampling=0)
for v in sorted((shared / "data/video").glob("*.mp4")):
    for i, a in enumerate(sample_video_frames(v, 12, 0.0, 0.5)):
        Image.fromarray(a).save(f".gpu/data/{v.stem}-{i:02d}.jpg", quality=97, subsampling=0)
room = int(sys.argv[2])
files = sorted(Path(".gpu").rglob("wiki-*.jpg"), key=lambda p: -p.stat().st_size)
total = sum(p.stat().st_size for p in Path(".gpu").rglob("*.jpg"))
for p in files:
    if total <= room:
        break
    before = p.stat().st_size
    Image.open(shared / "data/images/train" / f"{p.stem}.png").convert("RGB").save(p, quality=94, subsampling=0)
    total += p.stat().st_size - before
if total > room:
    sys.exit(f"the training images need {total} bytes and the lease has room for {room}")
PY
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    -d .whl compressai==1.2.8 pytorch-msssim
du -sh .gpu .whl
