"""Julia's Flux as the orchestrator sees it.  The Flux side reads as one unit in this folder:

- `julia_env.py`: where Julia and the package environment are, availability, `setup-julia`;
- `backend.py`: the worker half, driving `julia/PyBench.jl` through juliacall (never imports torch);
- `convert.py`: PyTorch weights to Flux layout, in numpy; `parity.py`: the proof both sides agree.
"""

from __future__ import annotations

from typing import Any

from pybench.backends.base import Availability, Framework, Options
from pybench.protocol.workloads import get_workload
from pybench.records.spec import CellSpec

# Flux's cuDNN BatchNorm takes Float32 and Float64 inputs only (FluxCUDAcuDNNExt); `f16` makes the
# statistics Float16 too, so a Float16 BatchNorm runs Flux's generic kernels with Float16 running
# statistics, a computation PyTorch's fp16 rows (autocast: BatchNorm in fp32) never perform.
FP16_BATCHNORM = ("Flux's fp16 would run BatchNorm in Float16 (statistics included, outside cuDNN), "
                  "not the computation of the other frameworks' fp16 rows: fp16 Flux rows are models "
                  "without BatchNorm (vgg16, vgg19) and layers")


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

    def unsupported(self, spec: CellSpec) -> str | None:
        w = get_workload(spec.model)
        if spec.dtype == "fp16" and (w.batchnorm or w.family in ("resnet", "batchnorm")):
            return super().unsupported(spec) or FP16_BATCHNORM
        return super().unsupported(spec)

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
