#!/usr/bin/env bash
# One GPU check, for a machine with an NVIDIA GPU (about 8 minutes on one H200), asserting what no CPU
# test can: pybench numbers GPUs as CUDA does and NVML's UUID is torch's; a run pinned by UUID runs
# on, and is labelled with, that GPU; bf16/fp16 outputs are in that dtype; every phase group has its
# own CUDA memory peaks, inference's below train's (gradients freed); a --compile cell still gets its
# samples; the detailed report names the GPU, GFLOP/s and % of peak; the CUDA tests; JAX's rows run
# on the GPU (a failure naming the fix without JAX's CUDA plugin).  Last, the figures to quote: ResNet50,
# batch 8, fp32 and --tf32, 2 rounds each, as `report --details` prints them (printed even when a
# later step fails).  Results land in results/gpu-check/ (emptied first).  Exits nonzero at the
# first failed assertion.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=results/gpu-check
rm -rf "$OUT" && mkdir -p "$OUT"

figures() {
    if compgen -G "$OUT/figures/*.json" > /dev/null; then
        echo "=== figures: resnet50, batch 8, 224x224, fp32 and --tf32, 2 rounds: medians, GFLOP/s" \
             "(% of peak), peak memory per group (train / step / inference) ==="
        $PY -m pybench report --details "$OUT/figures" | tee "$OUT/figures.md"
    fi
}
trap 'status=$?; figures; echo "gpu check: ${SECONDS} s, exit status $status"; exit $status' EXIT

nvidia-smi -L
$PY scripts/gpu_check.py identity
$PY scripts/gpu_check.py dtypes

UUID=$($PY scripts/gpu_check.py last-uuid)  # the last GPU: on a multi-GPU machine NVML's index 0 is another
CUDA_VISIBLE_DEVICES=$UUID $PY -m pybench run --framework pytorch --model resnet18 --device cuda:0 \
    --dtype bf16 --image-size 64 --rounds 1 --max-time 10 --timeout 180 \
    --results "$OUT/pinned" --label gpu-check
$PY scripts/gpu_check.py labelled "$OUT/pinned" "$UUID"
$PY scripts/gpu_check.py memory "$OUT/pinned"

for tf32 in "" --tf32; do  # the figures, measured early so that a later failure cannot lose them
    $PY -m pybench run --framework pytorch --model resnet50 --device cuda:0 --batch-size 8 --rounds 2 $tf32 \
        --timeout 180 --results "$OUT/figures" --label gpu-check
done
$PY scripts/gpu_check.py memory "$OUT/figures"

$PY -m pybench run --framework pytorch --model resnet18 --device cuda --compile --min-samples 20 --rounds 1 \
    --timeout 300 --results "$OUT/compile" --label gpu-check
$PY scripts/gpu_check.py compiled "$OUT/compile" 20
$PY -m pybench report --details "$OUT/pinned" "$OUT/compile" | tee "$OUT/report.txt"
$PY scripts/gpu_check.py report "$OUT/report.txt" "$UUID"

$PY -m pytest -q tests/test_cuda.py tests/test_gpu_identity.py

# compare exits 1 on a failed row: the checker then names it.  Without JAX's CUDA plugin the JAX row
# is skipped with the install line, and the checker fails on it.
$PY -m pybench compare --model resnet18 --device cuda:0 --image-size 64 --rounds 2 --max-time 10 \
    --timeout 240 --results "$OUT/jax" --label gpu-check || true
$PY scripts/gpu_check.py jax "$OUT/jax"
echo "gpu check: every assertion passed"
