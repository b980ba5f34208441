#!/usr/bin/env bash
# One GPU check, for a machine with an NVIDIA GPU (about 5 minutes on one H200), asserting what no CPU
# test can: pybench numbers GPUs as CUDA does and NVML's UUID is torch's; a run pinned by UUID runs
# on, and is labelled with, that GPU; bf16/fp16 outputs are in that dtype; a --compile cell still
# gets its samples; the detailed report names the GPU and its peak.  Then the CUDA tests.  Results
# land in results/gpu-check/ (emptied first).  Exits nonzero at the first failed assertion.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=results/gpu-check
rm -rf "$OUT" && mkdir -p "$OUT"
nvidia-smi -L
$PY scripts/gpu_check.py identity
$PY scripts/gpu_check.py dtypes
UUID=$($PY scripts/gpu_check.py last-uuid)  # the last GPU: on a multi-GPU machine NVML's index 0 is another
CUDA_VISIBLE_DEVICES=$UUID $PY -m pybench run --framework pytorch --model resnet18 --device cuda:0 \
    --dtype bf16 --image-size 64 --max-time 20 --results "$OUT/pinned" --label gpu-check
$PY scripts/gpu_check.py labelled "$OUT/pinned" "$UUID"
$PY -m pybench run --framework pytorch --model resnet18 --device cuda --compile --min-samples 20 \
    --results "$OUT/compile" --label gpu-check
$PY scripts/gpu_check.py compiled "$OUT/compile" 20
$PY -m pybench report --details "$OUT/pinned" "$OUT/compile" | tee "$OUT/report.txt"
$PY scripts/gpu_check.py report "$OUT/report.txt" "$UUID"
$PY -m pytest -q tests/test_cuda.py tests/test_gpu_identity.py
echo "gpu check: every assertion passed"
