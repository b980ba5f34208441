"""Energy over the sampling window of a phase group, read like peak memory (a `MemoryProbe`).

GPU: NVML's total-energy counter (mJ since the driver loaded; Volta and newer) of the cell's GPU.
The counter only moves every 20-100 ms, so it is read over the whole sampling window of many
iterations, never per iteration, and the report divides by the iterations.  CPU: RAPL package
counters (/sys/class/powercap/intel-rapl:N/energy_uj, whole sockets: every process on them counts)
where readable; they wrap at max_energy_range_uj.  Always: this process's CPU-seconds (user +
system, all threads), so a machine without RAPL still gets a work figure, and never a TDP guess.

Zeus (ZeusMonitor) reads the same NVML and RAPL counters, but adds a dependency tree and synchronises
CUDA through torch itself; the protocol already brackets the window, so the counters are read here.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Callable

from pybench.machine.nvml import nvml_call, nvml_session

POWERCAP = Path("/sys/class/powercap")
_PACKAGE = re.compile(r"intel-rapl:\d+")  # a package domain; intel-rapl:0:0 (core, dram) are inside it


def _gpu_energy_mj(uuid: str) -> int | None:
    with nvml_session() as nv:
        handle = None if nv is None else nvml_call(nv, "nvmlDeviceGetHandleByUUID", uuid)
        value = None if handle is None else nvml_call(nv, "nvmlDeviceGetTotalEnergyConsumption", handle)
    return None if value is None else int(value)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def rapl_packages(root: Path = POWERCAP) -> dict[Path, int]:
    """Readable package domains and the value their counter wraps at."""
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return {}
    out = {}
    for d in entries:
        wrap = _read_int(d / "max_energy_range_uj")
        if _PACKAGE.fullmatch(d.name) and wrap and _read_int(d / "energy_uj") is not None:
            out[d] = wrap
    return out


def _cpu_ns() -> int:
    t = os.times()
    return int((t.user + t.system) * 1e9)


class EnergyMeter:
    """reset() opens the window, read() returns the totals over it by kind (absent: not readable)."""

    def __init__(self, gpu_uuid: str | None, powercap: Path = POWERCAP,
                 clock: Callable[[], int] = time.perf_counter_ns, cpu_ns: Callable[[], int] = _cpu_ns,
                 gpu_mj: Callable[[str], int | None] = _gpu_energy_mj) -> None:
        self.gpu_uuid = gpu_uuid
        self.packages = rapl_packages(powercap)
        self.clock, self.cpu_ns, self.gpu_mj = clock, cpu_ns, gpu_mj
        self.start: dict[str, object] = {}

    def _now(self) -> dict[str, object]:
        now: dict[str, object] = {"cpu_ns": self.cpu_ns(), "window_ns": self.clock()}
        if self.gpu_uuid:
            now["gpu_mj"] = self.gpu_mj(self.gpu_uuid)
        if self.packages:
            now["rapl_uj"] = {d: _read_int(d / "energy_uj") for d in self.packages}
        return now

    def reset(self) -> None:
        self.start = self._now()

    def read(self) -> dict[str, int]:
        end, out = self._now(), {}
        for kind in ("cpu_ns", "window_ns", "gpu_mj"):
            a, b = self.start.get(kind), end.get(kind)
            if isinstance(a, int) and isinstance(b, int) and b >= a:
                out[kind] = b - a
        a, b = self.start.get("rapl_uj"), end.get("rapl_uj")
        if isinstance(a, dict) and isinstance(b, dict) and all(a.get(d) is not None and b.get(d) is not None
                                                               for d in self.packages):
            out["rapl_uj"] = sum((b[d] - a[d]) % wrap for d, wrap in self.packages.items())
        return out
