#!/usr/bin/env bash
# Set up, then compress the embedded default surveillance clip and decode it for viewing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
input=$(bash scripts/fetch_demo_input.sh || true)
if [ -z "$input" ]; then
    echo "vidsieve: could not fetch OpenCV's vtest.avi (apt-get download opencv-doc failed); using a generated scene" >&2
    input=$PWD/out/generated-scene.mkv
    .venv/bin/python -c "from vidsieve.datasets.synthetic import demo_scene, write_scene; write_scene(demo_scene(), '$input')"
fi
echo "input: $input"
# The first 30 s (300 frames) keep the demo to a few minutes on two cores; drop --max-frames for all of it.
.venv/bin/vidsieve compress "$input" -o out/demo.vsv --max-frames 300
.venv/bin/vidsieve decompress out/demo.vsv -o out/demo.mp4 --quiet
.venv/bin/vidsieve info out/demo.vsv | sed -n '1,8p'
echo
echo "result: $PWD/out/demo.vsv (compressed), $PWD/out/demo.mp4 (decoded for viewing)"
