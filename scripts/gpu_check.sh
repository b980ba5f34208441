#!/usr/bin/env bash
# One GPU check, for a machine with an NVIDIA GPU: the CUDA tests, then resnet50 on the GPU with its
# figures (medians, GFLOP/s, % of peak, memory). Results land in results/gpu-check/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
$PY -m pytest -q tests/test_cuda.py
$PY -m pybench compare --model resnet50 --device cuda --results results/gpu-check --label gpu-check
$PY -m pybench run --framework pytorch --model resnet50 --device cuda --tf32 --results results/gpu-check --label gpu-check
$PY -m pybench report results/gpu-check
