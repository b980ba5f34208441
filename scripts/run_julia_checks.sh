#!/usr/bin/env bash
# Everything that needs Julia, in one command, on a machine with network (and optionally an NVIDIA
# GPU): install juliacall, set up Julia and the Flux environment, run the Julia-requiring tests, then
# the full Flux matrix (CPU, plus CUDA where a GPU is visible).  Results land in results/julia-check/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
$PY -m pip install -q -e ".[flux,test]"
$PY -m pybench setup-julia
$PY -m pytest -q -rs tests/test_julia_code.py tests/test_convert.py tests/test_flux_unavailable.py tests/test_flux_julia.py
$PY scripts/bench_juliacall_overhead.py
$PY -m pybench parity --model resnet18 --image-size 64
$PY -m pybench run --framework flux --model all layers --device cpu --results results/julia-check --label julia-check
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    $PY -m pybench parity --model resnet50 --device cuda
    $PY -m pybench run --framework flux --model all layers --device cuda --results results/julia-check --label julia-check
fi
$PY -m pybench report results/julia-check
