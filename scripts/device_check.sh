#!/usr/bin/env bash
# First contact with a machine that has one NVIDIA GPU, in at most 8 minutes (budgeted for one H200):
#
#     scripts/device_check.sh OUT [--device cpu]
#
# Needs no network and no pybench install (it runs this checkout with PYTHONPATH), only torch >= 2.9
# and JAX with its CUDA plugin (flax, optax, rich, scipy, nvidia-ml-py).  Everything it writes lands
# under OUT: the log, identity.json, one results folder per step, report.md.  Steps:
#   1. identity: torch, JAX (pinned by UUID) and NVML agree on the GPU; the idle SM clock;
#   2. clocks: a PyTorch row warms up for the minimum time, and its SM clock, read at the start and
#      end of every group's sampling, has settled;
#   3. --compile with and without --tf32 (Triton's C toolchain is checked up front);
#   4. one PyTorch/JAX compare of resnet50 at batch 8, 224 px, then `report --details`.
# `--device cpu` is the dry run CI runs (tests/test_device_check.py): the same steps on the CPU, at
# 32 px with one layer (conv3x3_s1) in every step, nothing faked (its --compile step needs a C++
# compiler, as Inductor on the CPU does).  Exits nonzero at the first failure.
set -euo pipefail
if [[ $# -lt 1 || $1 == -* ]]; then
    echo "usage: scripts/device_check.sh OUT [--device cpu]" >&2
    exit 2
fi
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
DEVICE=cuda:0
if [[ ${2:-} == --device ]]; then DEVICE=${3:?--device needs a value}; fi
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
exec > >(tee -a "$OUT/device_check.log") 2>&1
trap 'status=$?; echo "device check: ${SECONDS} s, exit status $status, everything in $OUT"; exit $status' EXIT

# CLOCKED, COMPILED, MODEL: the models of steps 2, 3 and 4; --compile cells must get LEAST samples.
if [[ $DEVICE == cpu ]]; then  # tiny, so that CI proves every step quickly: any sample will do
    SIZE=32 BATCH=2 ROUNDS=1 MAXTIME=1 CLOCKED=conv3x3_s1 COMPILED=conv3x3_s1 MODEL=conv3x3_s1 LEAST=1
else
    SIZE=224 BATCH=8 ROUNDS=2 MAXTIME=15 CLOCKED=resnet18 COMPILED=resnet18 MODEL=resnet50 LEAST=6
    nvidia-smi -L || true
fi
run() { $PY -m pybench "$@" --device "$DEVICE" --label device-check --timeout 300; }

echo "=== 1. identity"
$PY scripts/device_check.py identity "$DEVICE" "$OUT/identity.json"

echo "=== 2. warm-up against clocks"
run run --framework pytorch --model "$CLOCKED" --image-size "$SIZE" --batch-size "$BATCH" --rounds 1 \
    --max-time "$MAXTIME" --results "$OUT/clocks"
$PY scripts/device_check.py clocks "$OUT/clocks" "$DEVICE"

echo "=== 3. --compile, without and with --tf32"
for tf32 in "" --tf32; do
    run run --framework pytorch --model "$COMPILED" --compile $tf32 --image-size "$SIZE" \
        --batch-size "$BATCH" --rounds 1 --min-samples 6 --max-time "$MAXTIME" --results "$OUT/compile"
done
$PY scripts/gpu_check.py compiled "$OUT/compile" "$LEAST"

echo "=== 4. PyTorch/JAX compare, $MODEL, batch 8, $SIZE px"
# compare exits 1 on a failed row: the checker names it
run compare --model "$MODEL" --image-size "$SIZE" --batch-size 8 --rounds "$ROUNDS" \
    --max-time "$MAXTIME" --results "$OUT/compare" || true
$PY scripts/device_check.py compare "$OUT/compare" "${DEVICE%%:*}"
$PY -m pybench report --details "$OUT/compare" | tee "$OUT/report.md"
$PY scripts/device_check.py clocks "$OUT/compare" "$DEVICE"
echo "device check: every step passed"
