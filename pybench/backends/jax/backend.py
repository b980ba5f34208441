"""JAX backend: the Flax models of `models.py`, every phase jitted, `block_until_ready` as the
synchronize.  Imports jax, flax and optax, never torch.

Phases as a JAX user times them:
- forward: the train-mode forward (BatchNorm on batch statistics, running statistics updated) that
  returns its VJP, as autograd records a graph and Zygote returns a pullback;
- backward: that VJP applied to the all-ones output gradient;
- step: loss, gradient and optax SGD-with-momentum update in one jitted function, buffers donated;
- inference: the eval-mode forward.
The first call of each traces and compiles: the protocol records it as the first run.  Each jitted
function is traced once; `traces` counts it, so a retrace inside the loop would show.
"""

from __future__ import annotations

import importlib.util
import os
from collections import Counter
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from pybench.backends.base import (
    CACHE_ENV, SGD_LR, SGD_MOMENTUM, Backend, make_input, make_labels, package_version,
)
from pybench.backends.jax import XLA_CACHE_ENV, XLA_CACHE_MAX_BYTES
from pybench.backends.jax.models import DTYPES, build, init_variables, param_count, to_nhwc
from pybench.protocol.sampling import Loop, PythonLoopSampler, Sampler
from pybench.records.numerics import Numerics
from pybench.records.round import WorkloadFacts
from pybench.protocol.workloads import NUM_CLASSES, get_workload


class JaxBackend(Backend):
    def prepare(self) -> WorkloadFacts:
        spec = self.spec
        # fp32 means fp32: no TF32 or bf16 passes in matmuls and convolutions unless --tf32.
        self.matmul_precision = "tensorfloat32" if spec.tf32 else "highest"
        jax.config.update("jax_default_matmul_precision", self.matmul_precision)
        self.cache = os.environ.get(CACHE_ENV)  # this matrix's folder: the seeded weights
        self.compiled = os.environ.get(XLA_CACHE_ENV)  # the user's: `Jax.cache_env` sets both
        if self.compiled:  # every round loads what the priming worker (or an earlier run) compiled
            jax.config.update("jax_compilation_cache_dir", self.compiled)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            if importlib.util.find_spec("filelock"):  # XLA's eviction locks the folder with it
                jax.config.update("jax_compilation_cache_max_size", XLA_CACHE_MAX_BYTES)
        # The runner pins the worker to its GPU: it is JAX's only GPU.
        self.device = jax.devices("gpu" if spec.device_kind == "cuda" else "cpu")[0]
        self.workload = get_workload(spec.model)
        self.module = build(spec.model, DTYPES[spec.dtype])
        variables = self._variables()
        put = lambda a: jax.device_put(a, self.device)  # noqa: E731 - one-line transfer helper
        self.params = put(variables.get("params", {}))
        self.stats = put(variables.get("batch_stats", {}))
        self.x = put(to_nhwc(make_input(spec)))  # transposed here, outside any timed region
        self.labels = put(make_labels(spec))
        self.rng = put(jax.random.PRNGKey(spec.seed))  # dropout in train mode, as torch does
        self.traces: Counter[str] = Counter()
        self._compile()
        self.pending: Any = None  # what the last phase produced: synchronize waits for it
        self.y = self.vjp = self.dy = None
        self.opt_state: Any = None
        return WorkloadFacts(params=param_count(variables), notes=_cpu_notes(spec))

    def _variables(self) -> dict:
        """The seeded initial weights: initialised once per matrix (by its priming worker) and loaded
        by every later worker from the matrix's cache folder, the same values without the initialisers'
        per-process cost.  Plain arrays in an .npz, read without pickle."""
        spec = self.spec
        if not self.cache:
            return init_variables(self.module, spec.image_size, spec.batch_size, spec.seed)
        path = Path(self.cache) / (f"jax-weights-{spec.model}-{spec.dtype}-{spec.image_size}-{spec.batch_size}-"
                                   f"{spec.seed}.npz")
        if path.exists():
            with np.load(path, allow_pickle=False) as saved:
                return traverse_util.unflatten_dict({k: saved[k] for k in saved.files}, sep="/")
        variables = init_variables(self.module, spec.image_size, spec.batch_size, spec.seed)
        flat = traverse_util.flatten_dict(variables, sep="/")
        part = path.with_suffix(f".{os.getpid()}.npz")  # complete before its name appears
        np.savez(part, **{k: np.asarray(a) for k, a in flat.items()})
        os.replace(part, path)
        return variables

    def _apply_train(self, params: Any, stats: Any, x: jax.Array, rng: jax.Array) -> tuple[jax.Array, Any]:
        y, updates = self.module.apply({"params": params, "batch_stats": stats}, x, train=True,
                                       mutable=["batch_stats"], rngs={"dropout": rng})
        return y, updates.get("batch_stats", {})

    def _compile(self) -> None:
        wrt_input = self.workload.is_layer  # a lone layer: the input's gradient too, as torch does

        def forward(params, stats, x, rng):
            self.traces["forward"] += 1  # runs only while tracing
            if wrt_input:
                y, vjp, new_stats = jax.vjp(lambda p, xx: self._apply_train(p, stats, xx, rng), params, x,
                                            has_aux=True)
            else:
                y, vjp, new_stats = jax.vjp(lambda p: self._apply_train(p, stats, x, rng), params,
                                            has_aux=True)
            return y, vjp, new_stats

        def backward(vjp, dy):
            self.traces["backward"] += 1
            return vjp(dy)

        self.tx = optax.sgd(SGD_LR, momentum=SGD_MOMENTUM)

        def step(params, stats, opt_state, x, labels, rng):
            self.traces["step"] += 1

            def loss(p):
                logits, new_stats = self._apply_train(p, stats, x, rng)
                onehot = jax.nn.one_hot(labels, NUM_CLASSES, dtype=jnp.float32)
                return optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot).mean(), new_stats

            (_, new_stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
            updates, opt_state = self.tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), new_stats, opt_state

        def inference(params, stats, x):
            self.traces["inference"] += 1
            return self.module.apply({"params": params, "batch_stats": stats}, x, train=False)

        self.fns = {
            "forward": jax.jit(forward),
            "backward": jax.jit(backward),
            # Parameters, statistics and optimizer state are updated in place, as optimizers do.
            "step": jax.jit(step, donate_argnums=(0, 1, 2)),
            "inference": jax.jit(inference),
        }

    # train group
    def _forward(self) -> None:
        self.y, self.vjp, self.stats = self.fns["forward"](self.params, self.stats, self.x, self.rng)
        self.pending = (self.y, self.stats)

    def _backward(self) -> None:
        if self.dy is None:  # first (excluded) iteration: its cost belongs to the first run
            self.dy = jnp.ones_like(self.y)
        self.pending = self.fns["backward"](self.vjp, self.dy)
        self.vjp = None

    def _free(self) -> None:
        """Release the last graph, gradients and optimizer state before the next group's window."""
        self.y = self.vjp = self.pending = self.opt_state = None

    # step group
    def _step(self) -> None:
        if self.opt_state is None:  # created by the first (excluded) step
            self.opt_state = self.tx.init(self.params)
        self.params, self.stats, self.opt_state = self.fns["step"](
            self.params, self.stats, self.opt_state, self.x, self.labels, self.rng)
        self.pending = self.params

    def _inference(self) -> None:
        self.pending = self.fns["inference"](self.params, self.stats, self.x)

    def sampler(self) -> Sampler:
        loops = {
            "train": Loop(phases=(("forward", self._forward), ("backward", self._backward)), finish=self._free),
            "step": Loop(phases=(("step", self._step),), finish=self._free),
            "inference": Loop(phases=(("inference", self._inference),)),
        }
        return PythonLoopSampler(loops, self.synchronize)

    def synchronize(self) -> None:
        if self.pending is not None:
            jax.block_until_ready(self.pending)

    def version(self) -> str:
        return jax.__version__

    def environment(self) -> dict[str, Any]:
        env: dict[str, Any] = {
            "jaxlib": package_version("jaxlib"),
            "flax": package_version("flax"),
            "optax": package_version("optax"),
            "backend": jax.default_backend(),
            "device": str(self.device),
            "matmul_precision": self.matmul_precision,
            "cores": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "xla_flags": os.environ.get("XLA_FLAGS"),
            "traces": dict(self.traces),
            "compilation_cache": "every run's, in the user's cache folder" if self.compiled else None,
        }
        if self.spec.device_kind == "cuda":
            env.update(gpu=self.device.device_kind, gpu_uuid=_uuid(self.device),
                       preallocate=os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"))
        return env

    def numerics(self) -> Numerics:
        cuda = self.spec.device_kind == "cuda"
        precision = jax.config.jax_default_matmul_precision
        level = _xla_flag("xla_gpu_autotune_level", "4")  # XLA's default level: autotuning on
        graphs = _xla_flag("xla_gpu_enable_command_buffer", "default") != ""  # "": switched off
        prealloc = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "true").lower() not in ("false", "0")
        return Numerics(
            dtype=jnp.dtype(self.module.dtype).name,
            # XLA's default precision lets GPU matmuls and convolutions round fp32 through TF32.
            tf32=cuda and precision not in ("highest", "float32"),
            matmul_precision=str(precision or "default"), autotuned=cuda and level != "0",
            autotune=f"XLA autotune level {level}" if cuda else "none (CPU)",
            cuda_graphs=cuda and graphs, compile="XLA jit",
            preallocate=("preallocates" if prealloc else "grows on demand") if cuda else "none (CPU)",
            threads=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
            layout="NHWC")  # XLA's CPU pool takes every core this worker may run on

    def peak_memory(self) -> dict[str, int]:
        # XLA keeps a peak since the process started and offers no reset: named for what it is.
        stats = self.device.memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
        return {"xla_peak_bytes_in_use_since_start": int(peak)} if peak is not None else {}


# Below these sizes the last stages' 3x3 convolutions see inputs smaller than the kernel; XLA's CPU
# simplifier then swaps their operands into a naive loop (measured: 133 ms against torch's 2.2 ms
# for one such conv), so a CPU row there measures that weakness more than the model.
SMALL_IMAGE_ON_CPU = {"resnet": 96, "vgg": 48}


def _cpu_notes(spec: Any) -> list[str]:
    family = get_workload(spec.model).family
    limit = SMALL_IMAGE_ON_CPU.get(family)
    if spec.device_kind != "cpu" or limit is None or spec.image_size >= limit:
        return []
    return [f"below {limit} px XLA's CPU compiler runs the last stages' convolutions as naive loops"]


def _xla_flag(name: str, default: str) -> str:
    """A flag's value as XLA_FLAGS sets it for this process, else XLA's default."""
    found = default
    for flag in os.environ.get("XLA_FLAGS", "").split():
        key, _, value = flag.lstrip("-").partition("=")
        if key == name:
            found = value
    return found


def _uuid(device: Any) -> str | None:
    """The GPU's UUID as the CUDA driver reports it (PJRT exposes no UUID attribute everywhere)."""
    for name in ("uuid", "device_uuid"):
        value = getattr(device, name, None)
        if value:
            return str(value)
    return None

