"""Julia's Flux as the orchestrator sees it.  The Flux side reads as one unit in this folder:

- `julia_env.py`: where Julia and the package environment are, availability, `setup-julia`;
- `backend.py`: the worker half, driving `julia/PyBench.jl` through juliacall (never imports torch);
- `convert.py`: PyTorch weights to Flux layout, in numpy; `parity.py`: the proof both sides agree.
"""

from __future__ import annotations

from typing import Any

from pybench.backends.base import Availability, Framework, Options
from pybench.records.spec import CellSpec


class Flux(Framework):
    name = "flux"
    title = "Flux"
    backend = "pybench.backends.flux.backend:FluxBackend"
    options = Options(dtypes={"cpu": ("fp32",), "cuda": ("fp32", "fp16")})
    packages = ("juliacall",)
    preload = ("juliacall",)  # starts Julia before numpy/scipy load their libstdc++ and OpenSSL

    def availability(self) -> Availability:
        from pybench.backends.flux.julia_env import flux_availability

        return flux_availability()

    def worker_env(self, spec: CellSpec) -> dict[str, str]:
        from pybench.backends.flux.julia_env import juliacall_env

        return {**super().worker_env(spec), **juliacall_env(spec.threads, spec.device_kind == "cuda", spec.tf32)}

    def describe(self) -> dict[str, Any]:
        from pybench.backends.flux.julia_env import describe

        return {**super().describe(), **describe()}

    def parity(self, model: str, image_size: int, batch: int, device: str) -> dict[str, Any]:
        from pybench.backends.flux.parity import run_parity

        return run_parity(model, image_size, batch, device)


FRAMEWORK = Flux()
