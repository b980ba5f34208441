#!/usr/bin/env bash
# First contact with a machine that has one NVIDIA GPU, budgeted at 6 minutes on one H100 (an
# estimate from the steps' parts, not yet timed on one: see docs/validation.md):
#
#     scripts/device_check.sh OUT [--device cpu]
#
# Needs no network and no pybench install (it runs this checkout with PYTHONPATH), only torch >= 2.9
# and JAX with its CUDA plugin (flax, optax, rich, scipy, nvidia-ml-py).  Everything it writes lands
# under OUT: the log, identity.json, one results folder per step, report.md.  Steps:
#   1. identity: torch, JAX (pinned by UUID) and NVML agree on the GPU; the idle SM clock;
#   2. clocks: each phase group of a PyTorch row warms its headline phase up for the minimum time,
#      and its SM clock, read at the start and end of every group's sampling, has settled;
#   3. one cold --compile --tf32 run at 128 px (Triton's C toolchain is checked up front; Inductor
#      reads the TF32 settings);
#   4. one short PyTorch/JAX compare of resnet18 at batch 8, 224 px (2 rounds), `report --details`,
#      and step 2's checks on its rows; each round's anatomy is printed where records carry one.
# `--device cpu` is the dry run CI runs (tests/test_device_check.py): the same steps and checks on
# the CPU, at 32 px with one layer (conv3x3_s1) in every step, nothing faked (its --compile step
# needs a C++ compiler, as Inductor on the CPU does).  Exits nonzero at the first failure.
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

# CLOCKED, COMPILED, MODEL: the models of steps 2, 3 and 4, COMPILE_SIZE step 3's image size (the
# compile takes as long at any size, the samples less); --compile cells must get LEAST samples.
if [[ $DEVICE == cpu ]]; then  # tiny, so that CI proves every step quickly: any sample will do
    SIZE=32 COMPILE_SIZE=32 BATCH=2 ROUNDS=1 MAXTIME=1 CLOCKED=conv3x3_s1 COMPILED=conv3x3_s1 MODEL=conv3x3_s1 LEAST=1
else
    SIZE=224 COMPILE_SIZE=128 BATCH=8 ROUNDS=2 MAXTIME=8 CLOCKED=resnet18 COMPILED=resnet18 MODEL=resnet18 LEAST=6
    nvidia-smi -L || true
fi
run() { $PY -m pybench "$@" --device "$DEVICE" --label device-check --timeout 300; }

echo "=== 1. identity"
$PY scripts/device_check.py identity "$DEVICE" "$OUT/identity.json"

echo "=== 2. warm-up against clocks"
run run --framework pytorch --model "$CLOCKED" --image-size "$SIZE" --batch-size "$BATCH" --rounds 1 \
    --max-time "$MAXTIME" --results "$OUT/clocks"
$PY scripts/device_check.py clocks "$OUT/clocks" "$DEVICE"

echo "=== 3. --compile --tf32, $COMPILE_SIZE px"
run run --framework pytorch --model "$COMPILED" --compile --tf32 --image-size "$COMPILE_SIZE" \
    --batch-size "$BATCH" --rounds 1 --min-samples 6 --max-time "$MAXTIME" --results "$OUT/compile"
$PY scripts/gpu_check.py compiled "$OUT/compile" "$LEAST"

echo "=== 4. PyTorch/JAX compare, $MODEL, batch 8, $SIZE px"
# compare exits 1 on a failed row: the checker names it
run compare --model "$MODEL" --image-size "$SIZE" --batch-size 8 --rounds "$ROUNDS" \
    --max-time "$MAXTIME" --results "$OUT/compare" || true
$PY scripts/device_check.py compare "$OUT/compare" "${DEVICE%%:*}"
$PY -m pybench report --details "$OUT/compare" | tee "$OUT/report.md"
$PY scripts/device_check.py clocks "$OUT/compare" "$DEVICE"
echo "device check: every step passed"
