"""What NVML says about a GPU while a worker uses it: clocks and why they are held down, which
processes compute on it, which CPU cores are local to it, and which CUDA the driver supports.

Every call goes through `nvml.nvml_call`, so a query NVML refuses (a MIG slice without privilege,
an old driver) is a missing fact, never a failed cell.  Clocks, throttle reasons and CPU affinity
belong to the whole GPU: for a MIG slice they are asked of its parent.
"""

from __future__ import annotations

import os
from typing import Any

from pybench.machine.devices import torch_cuda_version
from pybench.machine.nvml import SLOWDOWNS, clock_reasons, nvml_call, nvml_session
# SM clocks at the start and end of a group's sampling further apart than this: not settled.
CLOCK_SETTLED = 0.10

# PyTorch's wheel index per CUDA major the driver supports; CUDA 12.6 builds also serve 12.0-12.5
# drivers (minor-version compatibility) and the pre-Turing GPUs the CUDA 13 builds dropped.
TORCH_INDEX = {12: "https://download.pytorch.org/whl/cu126"}
JAX_EXTRA = {12: ".[cuda12]", 13: ".[cuda]"}  # pyproject's extras: JAX's CUDA plugin, pinned


def _gpu_handle(nv: Any, uuid: str) -> Any:
    """The handle of the whole GPU for a GPU or MIG-slice UUID; None if NVML does not know it."""
    handle = nvml_call(nv, "nvmlDeviceGetHandleByUUID", uuid)
    if handle is not None and nvml_call(nv, "nvmlDeviceIsMigDeviceHandle", handle):
        return nvml_call(nv, "nvmlDeviceGetDeviceHandleFromMigDeviceHandle", handle)
    return handle


def clock_state(uuid: str) -> dict[str, Any]:
    """{"sm_mhz": the SM clock now, "reasons": why clocks are held (names)}; None where NVML cannot say."""
    with nvml_session() as nv:
        gpu = None if nv is None else _gpu_handle(nv, uuid)
        if gpu is None:
            return {"sm_mhz": None, "reasons": None}
        return {"sm_mhz": nvml_call(nv, "nvmlDeviceGetClockInfo", gpu, nv.NVML_CLOCK_SM),
                "reasons": clock_reasons(nv, gpu)}


class ClockProbe:
    """protocol.ClockProbe over NVML: the SM clock and its reasons when a group's sampling starts and
    ends, kept per group."""

    def __init__(self, uuid: str) -> None:
        self.uuid = uuid
        self.readings: dict[str, dict[str, dict[str, Any]]] = {}

    def mark(self, group: str, when: str) -> None:
        self.readings.setdefault(group, {})[when] = clock_state(self.uuid)


def clock_warnings(readings: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One line per group whose clocks moved during sampling or were slowed down."""
    out = []
    for group, marks in readings.items():
        start, end = (marks.get(w) or {} for w in ("start", "end"))
        a, b = start.get("sm_mhz"), end.get("sm_mhz")
        if a and b and abs(a - b) > CLOCK_SETTLED * max(a, b):
            out.append(f"{group}: SM clock not settled ({a} MHz at the start of sampling, {b} MHz at the end)")
        slowed = sorted({r for m in (start, end) for r in m.get("reasons") or () if r in SLOWDOWNS})
        if slowed:
            out.append(f"{group}: clocks slowed down during sampling ({', '.join(slowed)})")
    return out


def local_cores(uuid: str) -> list[int] | None:
    """The CPU cores NVML calls local to the GPU (its NUMA node), or None."""
    words = ((os.cpu_count() or 1) + 63) // 64
    with nvml_session() as nv:
        gpu = None if nv is None else _gpu_handle(nv, uuid)
        mask = None if gpu is None else nvml_call(nv, "nvmlDeviceGetCpuAffinity", gpu, words)
    if mask is None:
        return None
    return [64 * i + bit for i, word in enumerate(mask) for bit in range(64) if int(word) >> bit & 1] or None


def compute_pids(uuid: str) -> list[int] | None:
    """Processes computing on the GPU or MIG slice with this UUID (NVML's pids: the host's, where
    the worker runs in another pid namespace), or None when NVML cannot say."""
    with nvml_session() as nv:
        handle = None if nv is None else nvml_call(nv, "nvmlDeviceGetHandleByUUID", uuid)
        procs = None if handle is None else nvml_call(nv, "nvmlDeviceGetComputeRunningProcesses", handle)
    return None if procs is None else [int(p.pid) for p in procs]


def process_identity(uuid: str, name: str | None, pid: int) -> dict[str, Any]:
    """Whether NVML lists process `pid` computing on the GPU with this UUID, for frameworks whose
    devices expose no UUID (XLA's): "uuid" is it when listed, else None with a note why."""
    pids = compute_pids(uuid)
    identity: dict[str, Any] = {"name": name, "uuid": None, "via": "nvml compute processes", "pid": pid}
    if pids is None:
        identity["note"] = "NVML cannot list the GPU's processes"
    elif pid in pids:
        identity["uuid"] = uuid
    else:
        identity["note"] = f"pid {pid} is not among the GPU's compute processes {pids} (another pid namespace?)"
    return identity


def driver_cuda() -> tuple[int, int] | None:
    """The newest CUDA the installed driver supports (12080 -> (12, 8)), or None without NVML."""
    with nvml_session() as nv:
        version = None if nv is None else nvml_call(nv, "nvmlSystemGetCudaDriverVersion")
    return None if version is None else (version // 1000, version % 1000 // 10)


def install_advice(driver: tuple[int, int] | None, torch_cuda: str | None) -> str | None:
    """One line when the installed torch needs a newer driver than this one: torch then sees no GPU."""
    if driver is None or not torch_cuda:
        return None
    major = int(torch_cuda.split(".")[0])
    if major <= driver[0]:
        return None
    index, extra = TORCH_INDEX.get(driver[0]), JAX_EXTRA.get(driver[0])
    fix = (f"pip install --force-reinstall torch torchvision --index-url {index}" if index
           else "update the NVIDIA driver")
    jax = f' and pip install -e "{extra}" (JAX\'s CUDA {driver[0]} plugin)' if index and extra else ""
    return (f"torch is a CUDA {torch_cuda} build, but the driver supports CUDA {driver[0]}.{driver[1]} "
            f"at most, so torch will see no GPU: {fix}{jax}")


def driver_advice() -> list[str]:
    """`install_advice` for this machine's driver and installed torch, as the lines `pybench env` and
    `list` print (none when they fit)."""
    advice = install_advice(driver_cuda(), torch_cuda_version())
    return [advice] if advice else []
