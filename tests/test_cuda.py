"""CUDA paths: real GPU cells. Skipped where no GPU is visible (scripts/gpu_check.sh runs them)."""

import pytest

from pybench.environment import gpus, resolve_device
from pybench.runner import run_cell
from pybench.spec import CellSpec, StopRule

pytestmark = pytest.mark.skipif(not gpus(), reason="no CUDA GPU visible to NVML")


def test_auto_picks_the_gpu():
    assert resolve_device("auto").kind == "cuda"


@pytest.mark.parametrize("tf32", [False, True])
def test_gpu_cell_records_settings_memory_and_warmup(tf32):
    spec = CellSpec("pytorch", "resnet18", "cuda:0", batch_size=2, image_size=64, threads=1, tf32=tf32,
                    stop=StopRule(max_time=10))
    rec = run_cell(spec)
    assert rec["status"] == "ok", rec.get("error")
    env = rec["framework_env"]
    assert env["cudnn_benchmark"] is True
    assert env["tf32_matmul"] is tf32 and env["tf32_cudnn"] is tf32
    fwd = rec["phases"]["forward"]
    assert len(fwd["warmup"]) >= 3  # cudnn autotuning settles before sampling
    mem = fwd["memory"]
    assert mem["cuda_max_allocated"] > 0 and mem["cuda_max_reserved"] >= mem["cuda_max_allocated"]
    assert mem["nvml_used"] >= mem["cuda_max_reserved"]


def test_gpu_bf16_autocast_row():
    spec = CellSpec("pytorch", "resnet18", "cuda:0", batch_size=2, image_size=64, threads=1,
                    dtype="bf16", stop=StopRule(max_time=10))
    rec = run_cell(spec)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["cell"].endswith("/bf16")
