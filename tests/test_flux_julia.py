"""Real Flux runs: need Julia and the instantiated environment (`python -m pybench setup-julia`).

scripts/run_julia_checks.sh runs these; elsewhere they skip with the availability reason.  Each
worker starts Julia and compiles Flux/Zygote code, so a test takes a minute or more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pybench.backends import get_framework
from pybench.machine.devices import gpus
from pybench.protocol.phases import MODEL_PHASES
from pybench.rounds.runner import run_cell
from pybench.records.spec import CellSpec, StopRule

FLUX = get_framework("flux")
AVAILABLE = FLUX.availability()
pytestmark = [pytest.mark.skipif(not AVAILABLE.ok, reason=f"flux unavailable: {AVAILABLE.reason}"), pytest.mark.slow]
DEVICES = ["cpu"] + (["cuda:0"] if gpus() else [])
QUICK = StopRule(max_time=20, min_samples=3, max_samples=20)
needs_gpu = pytest.mark.skipif(not gpus(), reason="no CUDA GPU visible to NVML")


@pytest.mark.parametrize("device", DEVICES)
def test_flux_worker_runs_resnet18_every_phase(device):
    spec = CellSpec("flux", "resnet18", device, batch_size=2, image_size=64, threads=2, stop=QUICK)
    rec = run_cell(spec, timeout=1200)
    assert rec.status == "ok", (rec.error, rec.stderr_tail)
    assert rec.workload.params == 11_689_512  # torchvision's resnet18 count
    env = rec.framework_env
    assert env["framework"] == "Flux" and env["version"].startswith("0.16")
    assert env["julia_threads"] == 1 and env["blas_threads"] == 2  # one level of CPU parallelism
    (round_,) = rec.rounds
    assert set(round_.phases) == set(MODEL_PHASES)  # forward, backward, total, inference, step
    for phase in round_.phases.values():
        assert phase.samples and min(phase.samples) > 0
    assert round_.phases["forward"].first_run > min(round_.phases["forward"].samples)  # compiled
    assert round_.phases["step"].first_run > min(round_.phases["step"].samples)
    if device.startswith("cuda"):
        assert env["cuda_functional"] is True and env["nvidia_tf32_override"] == "0"
        assert env["math_mode"] == "DEFAULT_MATH" and "precision_note" not in env
        if env["cuda_stream_ordered_pool"] is True:
            for group in ("train", "step", "inference"):
                assert round_.memory[group]["cuda_pool_used_high_incl_garbage"] > 0


@needs_gpu
def test_tf32_sets_fast_math_and_says_how_it_differs():
    spec = CellSpec("flux", "dense1024_512", "cuda:0", batch_size=2, image_size=64, threads=1, tf32=True,
                    stop=QUICK)
    rec = run_cell(spec, timeout=1200)
    assert rec.status == "ok", (rec.error, rec.stderr_tail)
    env = rec.framework_env
    assert env["math_mode"] == "FAST_MATH" and env["math_precision"] == "TensorFloat32"
    assert env["nvidia_tf32_override"] is None and "TF32" in env["precision_note"]


def test_flux_worker_never_imports_torch():
    spec = CellSpec("flux", "conv3x3_s1", "cpu", batch_size=1, image_size=32, threads=1, stop=QUICK)
    code = (  # as the worker runs a cell, juliacall first (Flux.preload)
        "import juliacall, json, sys; from pybench.rounds.worker import run_round; from pybench.records.spec import CellSpec; "
        "rec = run_round(CellSpec.from_json(json.loads(sys.argv[1]))); "
        "print(json.dumps({'status': rec.status, 'error': rec.error, 'torch': 'torch' in sys.modules}))"
    )
    env = {**os.environ, **FLUX.worker_env(spec)}
    p = subprocess.run([sys.executable, "-c", code, json.dumps(spec.to_json())], capture_output=True,
                       text=True, env=env, timeout=1200)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out == {"status": "ok", "error": None, "torch": False}, p.stderr[-2000:]


@pytest.mark.parametrize("model", ["resnet18", "vgg16_bn"])
def test_parity_same_weights_same_outputs(model):
    from pybench.backends.flux.parity import PARITY_RTOL, run_parity

    result = run_parity(model, 64, 2, "cpu")
    assert result["ok"], result
    assert result["max_rel_err"] <= PARITY_RTOL
    if model == "resnet18":
        assert result["params_flux"] == result["params_pytorch"]
    else:  # Metalhead's VGG-BN has no conv biases, and at 64 px a smaller first Dense
        assert result["params_flux"] < result["params_pytorch"] and result["note"]


@needs_gpu
def test_cuda_requested_gives_cuda_or_a_clear_failure():
    spec = CellSpec("flux", "resnet18", "cuda:0", batch_size=2, image_size=64, threads=1, stop=QUICK)
    rec = run_cell(spec, timeout=1200)
    if rec.status != "ok":
        assert "\n" not in rec.error and ("CUDA" in rec.error or "cuDNN" in rec.error)
