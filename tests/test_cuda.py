"""CUDA paths: real GPU cells. Skipped where no GPU is visible (scripts/gpu_check.sh runs them)."""

from __future__ import annotations

import pytest

from pybench.machine.devices import resolve_device, visible_gpus
from pybench.protocol.group import GPU_WARMUP_MIN
from pybench.records.record import CellRecord
from pybench.rounds.runner import run_cell
from pybench.records.spec import CellSpec, StopRule

pytestmark = [pytest.mark.skipif(not visible_gpus(), reason="no CUDA GPU visible to NVML"), pytest.mark.slow]

GROUPS = ("train", "step", "inference")


def gpu_spec(**options: object) -> CellSpec:
    gpu = resolve_device("cuda:0")
    return CellSpec("pytorch", "resnet18", gpu.label, batch_size=2, image_size=64, threads=1, gpu=gpu,
                    device_name=str(gpu.name), stop=StopRule(max_time=10), **options)


def run_on_gpu(spec: CellSpec) -> CellRecord:
    """One round, which must have run on the GPU the spec names (the worker checks it by UUID)."""
    rec = run_cell(spec)
    assert rec.ok, rec.error
    assert rec.framework_env["gpu_identity"]["uuid"] == spec.gpu.uuid
    assert rec.key.device_name == spec.gpu.name
    return rec


def test_auto_picks_the_gpu() -> None:
    assert resolve_device("auto").kind == "cuda"


@pytest.mark.parametrize("tf32", [False, True])
def test_gpu_cell_records_settings_memory_and_warmup(tf32: bool) -> None:
    import torch

    rec = run_on_gpu(gpu_spec(tf32=tf32))
    env = rec.framework_env
    assert env["cudnn_benchmark"] is True
    assert env["tf32_matmul"] is tf32 and env["tf32_cudnn"] is tf32
    assert env["float32_matmul_precision"] == ("high" if tf32 else "highest")
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9 mirrors the flags
        assert env["matmul_fp32_precision"] == ("tf32" if tf32 else "ieee")
    clocks = [r.clocks[g] for r in rec.rounds for g in GROUPS]
    assert all(c["start"]["sm_mhz"] and c["end"]["sm_mhz"] for c in clocks)  # NVML read around sampling
    assert env["cores"], "a GPU worker is pinned to its GPU's local cores"
    for phase in rec.phase_names:  # cuDNN autotuning settles before sampling
        assert all(len(r.phases[phase].warmup) >= GPU_WARMUP_MIN for r in rec.rounds), phase
    allocated = {}
    for group in GROUPS:
        mem = rec.memory(group)
        assert mem["cuda_max_reserved"] >= mem["cuda_max_allocated"] > 0, group
        assert mem["nvml_device_used_snapshot"] >= mem["cuda_max_reserved"], group
        allocated[group] = mem["cuda_max_allocated"]
    assert allocated["inference"] < allocated["train"]  # gradients freed before inference's window


@pytest.mark.parametrize("tf32", [False, True])
def test_compiled_gpu_cell_runs_with_and_without_tf32(tf32: bool) -> None:
    """Inductor reads torch's legacy TF32 getters (max-autotune, cache keys): they must not raise."""
    rec = run_on_gpu(gpu_spec(compile=True, tf32=tf32))
    assert rec.framework_env["tf32_matmul"] is tf32


def test_gpu_bf16_autocast_row() -> None:
    rec = run_on_gpu(gpu_spec(dtype="bf16"))
    assert rec.key.variant == "bf16"
