"""Flux backend: Metalhead models, Zygote pullbacks, CUDA.jl; Julia runs in-process via juliacall.

Importing this module imports neither torch nor juliacall: Julia starts in `prepare`.  The Julia
half is `julia/PyBench.jl`; `JULIA_API` lists every function called from here (name -> arity), and
a test checks them against the Julia source.
"""

from __future__ import annotations

import os
from typing import Any

from pybench.backends.base import Backend, make_input
from pybench.convert import architecture_note, to_julia_layout
from pybench.julia_env import JULIA_DIR, juliacall_env
from pybench.protocol import Sampler
from pybench.spec import cuda_index
from pybench.workloads import Workload, get_workload

JULIA_API: dict[str, int] = {
    "configure": 2,
    "build_model": 5,
    "build_layer": 6,
    "param_count": 1,
    "prepare": 5,
    "zero_grad": 1,
    "forward": 1,
    "backward": 1,
    "inference": 1,
    "device_sync": 1,
    "sample_train": 2,
    "sample_inference": 2,
    "environment": 1,
    "memory_reset": 1,
    "memory_peak": 1,
    "param_slots": 1,
    "slot_names": 1,
    "load_slot": 3,
    "eval_output": 3,
}


class JuliaAPI:
    """The PyBench module's functions, looked up once (attribute access through juliacall costs
    more than a dict lookup) and only under the names in JULIA_API."""

    def __init__(self, module: Any) -> None:
        self._fns = {name: getattr(module, name) for name in JULIA_API}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_fns"][name]
        except KeyError:
            raise AttributeError(f"{name} is not in JULIA_API") from None


def start_julia(threads: int, device_index: int = -1, tf32: bool = False) -> JuliaAPI:
    """Start Julia in this process (once), load PyBench.jl and set threads and device.

    `device_index` -1 means CPU.  A worker normally has the environment from `juliacall_env` already
    (the runner sets it); defaults fill in anything missing, e.g. when called from a test.
    """
    for key, value in juliacall_env(threads).items():
        os.environ.setdefault(key, value)
    if device_index >= 0 and not tf32:
        # CUDA.jl 5 maps every math mode to a cuDNN mode that allows TF32 on Ampere and newer;
        # NVIDIA's switch, read when cuDNN/cuBLAS load, keeps fp32 at fp32 as PyTorch's row is.
        os.environ["NVIDIA_TF32_OVERRIDE"] = "0"
    from juliacall import Main as jl  # starts Julia: seconds, plus package loading

    jl.include(str(JULIA_DIR / "PyBench.jl"))
    api = JuliaAPI(jl.PyBench)
    api.configure(threads, device_index)  # raises a one-line error when CUDA is asked for but not functional
    return api


def build(api: JuliaAPI, w: Workload, image_size: int, seed: int) -> Any:
    if w.is_layer:
        cin, cout = w.channels
        return api.build_layer(w.family, w.kernel, w.stride, cin, cout, seed)
    return api.build_model(w.family, w.depth, w.batchnorm, image_size, seed)


def to_python(value: Any) -> Any:
    """Julia Dict values (already str/int/bool/None for PyBench's dicts) -> plain Python."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


class JuliaLoopSampler:
    """protocol.Sampler whose clock runs inside Julia (PyBench.sample_train/sample_inference), so
    the juliacall call overhead never enters a sample."""

    def __init__(self, api: JuliaAPI, bench: Any) -> None:
        self.api = api
        self.bench = bench

    def train(self, n: int) -> list[tuple[int, int]]:
        ns = [int(t) for t in self.api.sample_train(self.bench, n)]
        return list(zip(ns[0::2], ns[1::2]))

    def inference(self, n: int) -> list[int]:
        return [int(t) for t in self.api.sample_inference(self.bench, n)]


class FluxBackend(Backend):
    name = "flux"

    def prepare(self) -> dict:
        spec = self.spec
        if spec.channels_last or spec.compile:
            raise ValueError("channels-last and torch.compile are PyTorch-only settings")
        w = get_workload(spec.model)
        self.cuda = spec.device_kind == "cuda"
        self.api = start_julia(spec.threads, cuda_index(spec.device), spec.tf32)
        model = build(self.api, w, spec.image_size, spec.seed)
        params = int(self.api.param_count(model))
        # Same seeded batch as PyTorch's; copied into Julia (and to the device) once, here.
        x = to_julia_layout(make_input(spec))
        self.bench = self.api.prepare(model, x, spec.dtype, self.cuda, w.is_layer)
        facts: dict = {"params": params}
        note = None if w.is_layer else architecture_note(spec.model, spec.image_size)
        if note:
            facts["architecture_note"] = note
        return facts

    def zero_grad(self) -> None:
        self.api.zero_grad(self.bench)

    def forward(self) -> None:
        self.api.forward(self.bench)

    def backward(self) -> None:
        self.api.backward(self.bench)

    def inference(self) -> None:
        self.api.inference(self.bench)

    def synchronize(self) -> None:
        self.api.device_sync(self.bench)

    def environment(self) -> dict:
        env = {str(k): to_python(v) for k, v in self.api.environment(self.bench).items()}
        env["sampler"] = "julia loop (time_ns)"
        if self.cuda:
            env["tf32"] = self.spec.tf32
            env["nvidia_tf32_override"] = os.environ.get("NVIDIA_TF32_OVERRIDE")
        return env

    def sampler(self) -> Sampler:
        return JuliaLoopSampler(self.api, self.bench)

    def reset_peak_memory(self) -> None:
        self.api.memory_reset(self.bench)

    def peak_memory(self) -> dict:
        return {str(k): int(v) for k, v in self.api.memory_peak(self.bench).items()}
