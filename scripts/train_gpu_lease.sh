#!/usr/bin/env bash
# One short GPU lease: train two channel widths side by side for the same time.
# Run from the repository root on a machine with torch and CUDA, with
#   .whl/   compressai and pytorch-msssim wheels for that machine's Python,
#   .gpu/data, .gpu/val   training and held-out images (see docs/TRAINING.md),
#   OUT     a folder for the results (checkpoints are mirrored there in parts).
# Budget is the training time per model in seconds (default 420).
set -u
BUDGET=${1:-420}
OUT=${OUT:-/tmp/vidsieve-gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/vidsieve
export PYTHONPATH=/tmp/site:/tmp/pkg PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch, compressai, vidsieve.training.trainer as t; print(torch.__version__, compressai.__version__, torch.cuda.is_available())" || exit 1
common=(--data .gpu/data --val .gpu/val --patch 256 --batch 32 --lr 2e-4 --budget "$BUDGET" --max-time "$BUDGET"
        --threads 6 --checkpoint-every 60 --eval-every 1000 --mirror "$OUT")
python3 scripts/train_default.py "${common[@]}" --N 64 --M 96 --out /tmp/runs/n64m96.pth --mirror-full \
    > "$OUT/n64m96.log" 2>&1 &
python3 scripts/train_default.py "${common[@]}" --N 128 --M 192 --out /tmp/runs/n128m192.pth \
    > "$OUT/n128m192.log" 2>&1 &
wait
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
tail -n 5 "$OUT"/*.log
ls -la "$OUT"
