"""Flux backend: Metalhead models, Zygote pullbacks, Optimisers, CUDA.jl; Julia runs in-process via juliacall.

Importing this module imports neither torch nor juliacall: Julia starts in `start_julia`, or before
anything else when the worker preloads juliacall (`Flux.preload`).  The Julia half is
`julia/PyBench.jl`; `JULIA_API` lists every function called from here (name -> arity), and a test
checks them against the Julia source.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from pybench.backends.base import Backend, make_input, make_labels
from pybench.backends.flux.convert import architecture_note, to_julia_layout
from pybench.backends.flux.julia_env import JULIA_DIR, juliacall_env
from pybench.protocol.sampling import Sampler
from pybench.records.numerics import Numerics
from pybench.records.round import WorkloadFacts
from pybench.protocol.workloads import Workload, get_workload

JULIA_API: dict[str, int] = {
    "configure": 3,
    "build_model": 5,
    "build_layer": 6,
    "param_count": 1,
    "prepare": 6,
    "sample": 3,
    "finish": 2,
    "version": 0,
    "environment": 1,
    "memory_reset": 1,
    "memory_peak": 1,
    "param_slots": 1,
    "slot_names": 1,
    "load_slot": 3,
    "eval_output": 3,
}


# Flux's fp16 is another workload than PyTorch's and JAX's mixed precision, so its rows say so.
FP16_NOTE = ("fp16 not comparable with PyTorch's: PyTorch autocasts over fp32 weights (fp32 master weights and "
             "momentum), Flux runs Float16 throughout (weights, gradients, Float16 momentum)")


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

    `device_index` -1 means CPU.  A worker has the environment from `juliacall_env` already (the
    runner sets it, and the worker imported juliacall first: `Flux.preload`); defaults fill in
    anything missing, e.g. when called from a test.
    """
    for key, value in juliacall_env(threads, device_index >= 0, tf32).items():
        os.environ.setdefault(key, value)
    from juliacall import Main as jl  # starts Julia unless preloaded: seconds, plus package loading

    default_signals()
    jl.include(str(JULIA_DIR / "PyBench.jl"))
    api = JuliaAPI(jl.PyBench)
    api.configure(threads, device_index, tf32)  # raises a one-line error when CUDA is asked for but not functional
    return api


def default_signals() -> None:
    """SIGTERM and SIGINT back to their default action (or ignored, where they were) in this, the
    main thread, once Julia runs.

    With PYTHON_JULIACALL_HANDLE_SIGNALS=yes, Julia blocks both in the thread that starts it and
    waits for them in a signal thread of its own: SIGTERM then prints a backtrace and exits 143
    (signals-unix.c, `jl_exit_thread0`), and SIGINT waits for a Julia safepoint to raise an
    InterruptException.  Unblocked here, a signal sent to the process goes to this thread first and
    ends it as it ends a PyTorch or JAX worker, so the record says "worker killed by SIGTERM".
    Julia keeps every other signal (its GC's safepoints need SIGSEGV)."""
    wanted = (signal.SIGTERM, signal.SIGINT)
    for sig in wanted:  # Python still reports the disposition it found at start-up
        signal.signal(sig, signal.SIG_IGN if signal.getsignal(sig) is signal.SIG_IGN else signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, wanted)


def build(api: JuliaAPI, w: Workload, image_size: int, seed: int) -> Any:
    if w.is_layer:
        cin, cout = w.channels
        return api.build_layer(w.family, w.kernel, w.stride, cin, cout, seed)
    return api.build_model(w.family, w.depth, w.batchnorm, image_size, seed)


def to_python(value: Any) -> Any:
    """Julia Dict values (already str/int/bool/None for PyBench's dicts) -> plain Python."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


class JuliaLoopSampler:
    """protocol.Sampler whose clock runs inside Julia (PyBench.sample), so the juliacall call
    overhead never enters a sample."""

    def __init__(self, api: JuliaAPI, bench: Any) -> None:
        self.api = api
        self.bench = bench

    def sample(self, group: str, n: int) -> dict[str, list[int]]:
        columns = self.api.sample(self.bench, group, n)  # Dict{String,Vector{Int64}}: phase -> ns
        return {str(phase): [int(t) for t in ns] for phase, ns in columns.items()}

    def finish(self, group: str) -> None:
        self.api.finish(self.bench, group)


class FluxBackend(Backend):
    def prepare(self) -> WorkloadFacts:
        spec = self.spec
        w = get_workload(spec.model)
        self.cuda = spec.device_kind == "cuda"
        # The runner pins the worker to its GPU: it is Julia's device 0.
        self.api = start_julia(spec.threads, 0 if self.cuda else -1, spec.tf32)
        model = build(self.api, w, spec.image_size, spec.seed)
        params = int(self.api.param_count(model))
        # Same seeded batch and labels as every other framework; copied into Julia (and to the
        # device) once, here.
        x = to_julia_layout(make_input(spec))
        labels = None if w.is_layer else make_labels(spec)
        self.bench = self.api.prepare(model, x, labels, spec.dtype, self.cuda, w.is_layer)
        note = None if w.is_layer else architecture_note(spec.model, spec.image_size)
        notes = [note] if note else []
        return WorkloadFacts(params=params, notes=notes + ([FP16_NOTE] if spec.dtype == "fp16" else []))

    def sampler(self) -> Sampler:
        return JuliaLoopSampler(self.api, self.bench)

    def version(self) -> str:
        return str(self.api.version())

    def environment(self) -> dict:
        env = {str(k): to_python(v) for k, v in self.api.environment(self.bench).items()}
        env["sampler"] = "julia loop (time_ns)"
        if self.cuda:
            env["tf32"] = self.spec.tf32
            env["nvidia_tf32_override"] = os.environ.get("NVIDIA_TF32_OVERRIDE")
        return env

    def numerics(self) -> Numerics:
        """From CUDA.jl's and Julia's own settings (PyBench.environment); Flux computes in the
        element type `prepare` converted the model and batch to, throughout."""
        env = self.environment()
        fast = self.cuda and env.get("math_mode") == "FAST_MATH"  # CUDA.jl's TF32 switch for Float32
        pool = "CUDA.jl pool, stream-ordered" if env.get("cuda_stream_ordered_pool") is True else "CUDA.jl pool"
        return Numerics(
            dtype={"fp32": "float32", "fp16": "float16"}[self.spec.dtype], tf32=fast,
            matmul_precision=f"{env.get('math_mode')}, {env.get('math_precision')}" if self.cuda else "default",
            # NNlib's cuDNN extension times the convolution algorithms (cudnnFind) and caches the fastest.
            autotuned=self.cuda, autotune="cudnnFind (NNlib)" if self.cuda else "none (CPU)",
            cuda_graphs=False, compile="Julia JIT",
            preallocate=pool if self.cuda else "none (CPU)",
            threads=int(env.get("julia_threads") or 1), layout="WHCN")

    def reset_peak_memory(self) -> None:
        self.api.memory_reset(self.bench)

    def peak_memory(self) -> dict:
        return {str(k): int(v) for k, v in self.api.memory_peak(self.bench).items()}
