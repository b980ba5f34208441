"""The machine a run happens on, captured once per invocation into every results file.  GPUs, and
which device a run means, are `pybench.machine.devices`."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path

from pybench import __version__
from pybench.machine.devices import gpus
from pybench.errors import UserError


def available_cores() -> int:
    """Cores this process may run on (affinity-aware, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity API
        return os.cpu_count() or 1


def user_cache() -> Path:
    """pybench's folder in the user's cache (XDG), for what outlives one run."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pybench"


def checked_threads(threads: int | None, what: str = "--threads") -> int:
    """Threads asked for (default: every available core), refused beyond the cores available."""
    cores = available_cores()
    threads = threads or cores
    if threads > cores:
        raise UserError(f"{what} {threads} is more than the {cores} cores available: more threads "
                        "than cores measures oversubscription, not the framework")
    return threads


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


def _package_versions() -> dict:
    out = {}
    for pkg in ("torch", "torchvision", "jax", "jaxlib", "flax", "optax", "numpy", "scipy",
                "juliacall", "nvidia-ml-py"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def capture(label: str | None = None, threads: int | None = None, tf32: bool = False) -> dict:
    """Everything a reader needs to judge a number: machine, software and the settings used.  GPUs
    are NVML's, with UUIDs; the CUDA_* variables say which of them CUDA showed to this run."""
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
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cuda_device_order": os.environ.get("CUDA_DEVICE_ORDER"),
        "threads": checked_threads(threads),
        "tf32": tf32,
        "pybench": __version__,
        "git_commit": git_commit(),
    }
