#!/usr/bin/env bash
# Train CT-D2GAN on a benchmark's normal videos, evaluate it (offline and online) and record
# the figures in the checkpoint's provenance: one run, for a GPU session with little time.
# The device comes from the config (`device: auto` = the GPU when there is one), so the same
# command trains on a CPU; run again, it resumes from the last periodic checkpoint.
#
#   scripts/train_ct_d2gan_gpu.sh [--data DIR] [--out DIR] [VAD_OPTION...]
#
# VAD_OPTIONs (e.g. --config FILE, --set scorers.0.params.iterations=20000, --set device=cuda)
# go to both `vad fit` and `vad eval`. Defaults: --data ../shared/data/ped2,
# --out runs/ct-d2gan-ped2; the report is written to OUT-eval. VAD=... is the vad command
# (default: `vad` on PATH, else .venv/bin/vad; e.g. VAD="python -m vad.cli").
set -euo pipefail

data=../shared/data/ped2
out=runs/ct-d2gan-ped2
options=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) options+=("$1"); shift ;;
  esac
done
read -ra vad <<< "${VAD:-$(command -v vad || echo .venv/bin/vad)}"
# One intra-op thread unless told otherwise: on a shared CPU more threads wait on each other.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

start=$(date +%s)
"${vad[@]}" fit "$data/train" --scorer ct-d2gan --out "$out" "${options[@]}"
trained=$(date +%s)
"${vad[@]}" eval "$data" --scorer ct-d2gan --checkpoint "$out" --out "$out-eval" --record \
  "${options[@]}"
echo "train_seconds=$((trained - start)) eval_seconds=$(($(date +%s) - trained))"
