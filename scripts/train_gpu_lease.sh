#!/usr/bin/env bash
# One short GPU lease: train the codec for BUDGET seconds and mirror the resumable
# state to $OUT in <=15 MiB parts (join with: cat NAME.part* > NAME.pth).
#
#   OUT=/results bash scripts/train_gpu_lease.sh BUDGET N M [START]
#   OUT=/results bash scripts/train_gpu_lease.sh joint BUDGET [INTRA [CONDITIONAL | CHECKPOINT]]
#
# joint: fine-tune the transforms of INTRA (default: the shipped default model) together with
# the conditional model of predicted frames (default: the one shipped for it) on pairs of
# frames of .gpu/clips (scripts/prepare_gpu_lease.sh joint), then export both with their
# coding tables to $OUT/joint/ (vidsieve compress --model $OUT/joint/NAME.pth finds its
# conditional model beside it) and the resumable checkpoint to $OUT/joint.pth.part*; a
# joined checkpoint given as the third argument resumes the run. STEPS=n runs n steps
# instead of BUDGET seconds (a check on the CPU: STEPS=3 PATCH=64 BATCH=2).
#
# START: a checkpoint to resume (same N/M), or weights to begin from (a narrower
# latent is widened, training/widen.py; such a start runs at lr 1e-4, not 2e-4:
# on the CPU, trained weights restarted at a high rate lost what they had). LR=...
# overrides either; NEW_LR=... gives a widened start's new channels their own rate
# (the CPU run that widened 64/96 to 64/192 used 10x the old weights' rate), and
# NEW_SCALE=1 PRIOR_SCALE=1 NEW_RATE_RAMP=steps keep them alive (docs/TRAINING.md).
# LRS="3e-5 1e-4" with weights as START trains one run per rate side by side on the
# one GPU (a small model leaves it idle between kernels); two full states would not
# fit what a lease hands back, so such runs mirror their weights only.
# Needs, beside the repository:
#   .whl/               compressai and pytorch-msssim wheels for that machine's Python
#   .gpu/data, .gpu/val training and held-out images (docs/TRAINING.md says which)
set -u
OUT=${OUT:-/tmp/vidsieve-gpu}
mkdir -p "$OUT" /tmp/runs
if [ -z "${NO_WHEELS:-}" ]; then   # NO_WHEELS=1: the packages are installed already (a check on this machine)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
    mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/vidsieve
    export PYTHONPATH=/tmp/site:/tmp/pkg
fi
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi -L 2>/dev/null || echo "no GPU: running on the CPU"
$PY -c "import torch, compressai, vidsieve.training.trainer; print(torch.__version__, torch.cuda.is_available())" || exit 1
if [ "${1:-}" = joint ]; then
    BUDGET=${2:-480}; INTRA=${3:-vidsieve-hyperprior-slim}; START=${4:-}
    ckpt=/tmp/runs/joint.pth
    args=(train --joint --data "${CLIPS:-.gpu/clips}" --out "$ckpt" --intra "$INTRA" --export "$OUT/joint"
          --batch "${BATCH:-16}" --patch "${PATCH:-256}" --threads 4)
    if [ -n "${STEPS:-}" ]; then args+=(--steps "$STEPS"); else args+=(--max-time "$BUDGET"); fi
    if [ -n "$START" ] && $PY -c "import sys; from vidsieve.training.joint import read_checkpoint; read_checkpoint(sys.argv[1])" "$START" 2>/dev/null; then
        cp "$START" "$ckpt"; args+=(--resume "$ckpt")   # the checkpoint of an earlier lease: go on exactly
    elif [ -n "$START" ]; then
        args+=(--finetune "$START")   # a conditional model to start from
    fi
    $PY -m vidsieve "${args[@]}" 2>&1 | tee "$OUT/joint.log" | grep -v "it/s\]$"
    rc=${PIPESTATUS[0]}
    [ -f "$ckpt" ] && split -b 15M -d "$ckpt" "$OUT/joint.pth.part"   # join: cat joint.pth.part* > joint.pth
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
    ls -la "$OUT" "$OUT/joint" 2>/dev/null
    exit "$rc"
fi
BUDGET=${1:-420}; N=${2:-64}; M=${3:-192}; START=${4:-}
name=n${N}m${M}
args=(--data .gpu/data --val .gpu/val --patch 256 --batch 32 --budget "$BUDGET" --max-time "$BUDGET"
      --threads 4 --checkpoint-every 60 --eval-every 2000 --mirror "$OUT" --N "$N" --M "$M")
if [ -n "${LRS:-}" ]; then
    [ -n "$START" ] || { echo "LRS needs weights as START"; exit 2; }
    pids=()
    for lr in $LRS; do
        $PY scripts/train_default.py "${args[@]}" --init "$START" --lr "$lr" --out "/tmp/runs/$name-lr$lr.pth" \
            > "$OUT/$name-lr$lr.log" 2>&1 &
        pids+=($!)
    done
    sleep 90; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
    rc=0
    for p in "${pids[@]}"; do wait "$p" || rc=1; done   # a failed run must not read as a finished lease
    grep -h "val\|saved\|Error" "$OUT"/*.log | tail -40
    ls -la "$OUT"
    exit $rc
fi
args+=(--mirror-full --lr "${LR:-2e-4}" --out "/tmp/runs/$name.pth")
if [ -n "$START" ]; then
    if $PY -c "import sys, torch; sys.exit(0 if 'opt' in torch.load('$START', weights_only=True) else 1)"; then
        cp "$START" "/tmp/runs/$name.pth"   # resume exactly; the schedule now ends BUDGET s from here
        total=$($PY -c "import torch; print(float(torch.load('$START', weights_only=True)['elapsed']) + $BUDGET)")
        args+=(--budget "$total")
    else
        args+=(--init "$START" --lr "${LR:-1e-4}" ${NEW_LR:+--new-lr "$NEW_LR"} ${NEW_SCALE:+--new-scale "$NEW_SCALE"}
               ${PRIOR_SCALE:+--prior-scale "$PRIOR_SCALE"} ${NEW_RATE_RAMP:+--new-rate-ramp "$NEW_RATE_RAMP"})
    fi
fi
$PY scripts/train_default.py "${args[@]}" 2>&1 | tee "$OUT/$name.log" | grep -v mirrored
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
ls -la "$OUT"
