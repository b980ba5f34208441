"""The machine a run happens on: captured once per invocation, and the device selection."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path

from pybench import __version__
from pybench.errors import UserError
from pybench.spec import available_cores


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _nvml():
    """The initialised pynvml module, or None without a driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVML library or no driver both mean "no GPU"
        return None
    return pynvml


def gpu_memory_used(index: int) -> int | None:
    """Device memory in use as NVML sees it (every allocator and context, not only the framework's)."""
    pynvml = _nvml()
    if pynvml is None:
        return None
    try:
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).used)
    finally:
        pynvml.nvmlShutdown()


def gpus() -> list[dict]:
    """GPUs as NVML sees them (name, driver, memory); empty without a driver."""
    pynvml = _nvml()
    if pynvml is None:
        return []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            out.append(
                {
                    "index": i,
                    "name": _text(pynvml.nvmlDeviceGetName(h)),
                    "driver": _text(driver),
                    "memory_total": int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                }
            )
        return out
    finally:
        pynvml.nvmlShutdown()


def _text(v: str | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else v


def resolve_device(arg: str) -> str:
    """'auto' means CUDA when a GPU is present; an explicit CUDA request without one is a user error."""
    if arg == "cpu":
        return "cpu"
    found = gpus()
    if arg == "auto":
        return "cuda:0" if found else "cpu"
    if arg == "cuda" or arg.startswith("cuda:"):
        index = 0 if arg == "cuda" else arg[5:]
        try:
            index = int(index)
        except ValueError:
            raise UserError(f"bad device {arg!r}; use auto, cpu, cuda or cuda:N") from None
        if not found:
            raise UserError(f"device {arg!r} requested but no CUDA GPU is visible (NVML found none)")
        if not 0 <= index < len(found):
            raise UserError(f"device {arg!r} requested but only {len(found)} GPU(s) are visible")
        return f"cuda:{index}"
    raise UserError(f"bad device {arg!r}; use auto, cpu, cuda or cuda:N")


def device_name(device: str, env: dict) -> str:
    """Human name of a resolved device, as report headings show it."""
    if device.startswith("cuda"):
        index = int(device.split(":")[1])
        for g in env.get("gpus", []):
            if g["index"] == index:
                return g["name"]
        return device
    return env.get("cpu", "CPU")


def _package_versions() -> dict:
    out = {}
    for pkg in ("torch", "torchvision", "numpy", "scipy", "juliacall", "nvidia-ml-py"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def capture(label: str | None = None, threads: int | None = None, tf32: bool = False) -> dict:
    """Everything a reader needs to judge a number: machine, software and the settings used."""
    return {
        "label": label or socket.gethostname(),
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_available": available_cores(),
        "memory_bytes": memory_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": _package_versions(),
        "gpus": gpus(),
        "threads": threads or available_cores(),
        "tf32": tf32,
        "pybench": __version__,
        "git_commit": git_commit(),
    }
