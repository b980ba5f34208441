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

from pybench.backends import availability, worker_env
from pybench.environment import gpus
from pybench.runner import run_cell
from pybench.spec import CellSpec, StopRule

FLUX = availability("flux")
pytestmark = pytest.mark.skipif(not FLUX.ok, reason=f"flux unavailable: {FLUX.reason}")
DEVICES = ["cpu"] + (["cuda:0"] if gpus() else [])
QUICK = StopRule(max_time=20, min_samples=3, max_samples=20)


@pytest.mark.parametrize("device", DEVICES)
def test_flux_worker_runs_resnet18(device):
    spec = CellSpec("flux", "resnet18", device, batch_size=2, image_size=64, threads=2, stop=QUICK)
    rec = run_cell(spec, timeout=1200)
    assert rec["status"] == "ok", (rec.get("error"), rec.get("stderr_tail"))
    assert rec["workload"]["params"] == 11_689_512  # torchvision's resnet18 count
    env = rec["framework_env"]
    assert env["framework"] == "Flux" and env["version"].startswith("0.16")
    assert env["threads"] == 2 and env["blas_threads"] == 2
    assert set(rec["phases"]) == {"forward", "backward", "total", "inference"}
    for phase in rec["phases"].values():
        assert phase["samples"] and min(phase["samples"]) > 0
    assert rec["phases"]["forward"]["first_run"] > min(rec["phases"]["forward"]["samples"])  # compiled
    if device.startswith("cuda"):
        assert env["cuda_functional"] is True and env["nvidia_tf32_override"] == "0"
        assert rec["phases"]["forward"]["memory"]["cuda_pool_used_high"] > 0


def test_flux_worker_never_imports_torch():
    spec = CellSpec("flux", "conv3x3_s1", "cpu", batch_size=1, image_size=32, threads=1,
                    phases=("forward", "backward", "total"), stop=QUICK)
    code = (
        "import json, sys; from pybench.worker import run_cell; from pybench.spec import CellSpec; "
        "rec = run_cell(CellSpec.from_json(json.loads(sys.argv[1]))); "
        "print(json.dumps({'status': rec['status'], 'error': rec.get('error'), 'torch': 'torch' in sys.modules}))"
    )
    env = {**os.environ, **worker_env(spec)}
    p = subprocess.run([sys.executable, "-c", code, json.dumps(spec.to_json())], capture_output=True,
                       text=True, env=env, timeout=1200)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out == {"status": "ok", "error": None, "torch": False}, p.stderr[-2000:]


@pytest.mark.parametrize("model", ["resnet18", "vgg16_bn"])
def test_parity_same_weights_same_outputs(model):
    from pybench.parity import PARITY_RTOL, run_parity

    result = run_parity(model, 64, 2, "cpu")
    assert result["ok"], result
    assert result["max_rel_err"] <= PARITY_RTOL
    if model == "resnet18":
        assert result["params_flux"] == result["params_pytorch"]
    else:  # Metalhead's VGG-BN has no conv biases, and at 64 px a smaller first Dense
        assert result["params_flux"] < result["params_pytorch"] and result["note"]


@pytest.mark.skipif(not gpus(), reason="no CUDA GPU visible to NVML")
def test_cuda_requested_gives_cuda_or_a_clear_failure():
    spec = CellSpec("flux", "resnet18", "cuda:0", batch_size=2, image_size=64, threads=1, stop=QUICK)
    rec = run_cell(spec, timeout=1200)
    if rec["status"] != "ok":
        assert "\n" not in rec["error"] and "CUDA" in rec["error"]
