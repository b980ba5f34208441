"""Framework backends, looked up by name without importing any framework in the orchestrator."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from pybench.errors import UserError


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""  # one line: why not, and what fixes it


# name -> "module:Class"; imported only inside the worker that runs the framework.
BACKENDS = {
    "pytorch": "pybench.backends.pytorch:PyTorchBackend",
    "flux": "pybench.backends.flux:FluxBackend",
}


def check_framework(name: str) -> None:
    if name not in BACKENDS:
        raise UserError(f"unknown framework {name!r}; valid: {', '.join(BACKENDS)}")


def resolve_frameworks(names: list[str] | None) -> list[str]:
    if not names or "all" in names:
        return list(BACKENDS)
    for n in names:
        check_framework(n)
    return list(dict.fromkeys(names))


def load_backend(name: str) -> type:
    check_framework(name)
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def availability(name: str) -> Availability:
    """Cheap check from the orchestrator: nothing heavy is imported or started."""
    check_framework(name)
    if name == "pytorch":
        missing = [m for m in ("torch", "torchvision") if importlib.util.find_spec(m) is None]
        if missing:
            return Availability(False, f"{' and '.join(missing)} not installed: pip install -e .")
        return Availability(True)
    from pybench.julia_env import flux_availability

    return flux_availability()


def worker_env(spec) -> dict[str, str]:
    """Environment variables for a worker, set before the framework loads: thread pools read them once."""
    n = str(spec.threads)
    env = {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}
    if spec.framework == "flux":
        from pybench.julia_env import juliacall_env

        env.update(juliacall_env(spec.threads))
    return env
