"""JAX/Flax as the orchestrator sees it.  The JAX side reads as one unit in this folder:

- `models.py`: Flax models written to match torchvision exactly (NHWC), and the per-layer suite;
- `backend.py`: the worker half, every phase jitted (imports jax, never torch);
- `convert.py`: torchvision weights into the Flax tree, in numpy; `parity.py`: the proof.

On CUDA, install JAX's CUDA plugin at the tested JAX version: `pip install -e ".[cuda]"` (CUDA 13
driver) or `".[cuda12]"`; the worker then runs with `JAX_PLATFORMS=cuda` and without preallocation.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pybench.backends.base import Availability, Framework, Options
from pybench.machine.environment import user_cache
from pybench.records.spec import CellSpec

# Allocate what is used, so memory figures mean something and describing JAX does not take 75% of
# every visible GPU (XLA preallocates by default).
NO_PREALLOCATE = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
# XLA's persistent compilation cache, shared by every run of this user: a matrix's priming worker then
# loads what an earlier run compiled instead of compiling it again.  XLA keys each entry by the
# program, the compile options and the JAX and XLA versions, so a stale entry is never used; the cap
# makes XLA drop the least recently used entries.
XLA_CACHE_ENV = "PYBENCH_XLA_CACHE_DIR"
XLA_CACHE_MAX_BYTES = 2 << 30
CUDA_PLUGIN_FIX = 'pip install -e ".[cuda]" (".[cuda12]" for a CUDA 12 driver)'


def cuda_plugins() -> list[str]:
    """JAX's CUDA PJRT plugins installed here, found as JAX finds plugins (modules of the `jax_plugins`
    namespace package, and `jax_plugins` entry points) without importing JAX."""
    found: set[str] = set()
    spec = importlib.util.find_spec("jax_plugins")
    if spec is not None and spec.submodule_search_locations:
        found.update(m.name for m in pkgutil.iter_modules(list(spec.submodule_search_locations)))
    found.update(e.name for e in importlib.metadata.entry_points(group="jax_plugins"))
    return sorted(n for n in found if "cuda" in n)

DESCRIBE = ("import json, jax; print(json.dumps({'backend': jax.default_backend(), "
            "'devices': [str(d) for d in jax.devices()]}))")


class Jax(Framework):
    name = "jax"
    title = "JAX"
    backend = "pybench.backends.jax.backend:JaxBackend"
    options = Options(dtypes={"cpu": ("fp32", "bf16", "fp16"), "cuda": ("fp32", "bf16", "fp16")})
    packages = ("jax", "jaxlib", "flax", "optax")

    def availability(self) -> Availability:
        missing = [m for m in ("jax", "flax", "optax") if importlib.util.find_spec(m) is None]
        if missing:
            return Availability(False, f"{', '.join(missing)} not installed: pip install -e .")
        return Availability(True)

    def unsupported(self, spec: CellSpec) -> str | None:
        if spec.device_kind == "cuda" and not cuda_plugins():
            return f"JAX's CUDA plugin is not installed, so JAX cannot use the GPU: {CUDA_PLUGIN_FIX}"
        return super().unsupported(spec)

    def worker_env(self, spec: CellSpec) -> dict[str, str]:
        return {
            **super().worker_env(spec),
            "JAX_PLATFORMS": "cuda" if spec.device_kind == "cuda" else "cpu",
            **NO_PREALLOCATE,
        }

    def cache_env(self, cache_dir: Path) -> dict[str, str]:
        return {**super().cache_env(cache_dir), XLA_CACHE_ENV: str(user_cache() / "xla")}

    def describe(self) -> dict[str, Any]:
        """Versions, and the backend and devices JAX sees (asked in a child: JAX stays out of here)."""
        facts = super().describe()
        if not self.availability().ok:
            return facts
        try:
            out = subprocess.run([sys.executable, "-c", DESCRIBE], capture_output=True, text=True, timeout=120,
                                 env={**os.environ, **NO_PREALLOCATE})
            facts.update(json.loads(out.stdout.strip().splitlines()[-1]))
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
            facts["devices"] = "unknown (JAX did not start)"
        facts["cuda_plugins"] = cuda_plugins()
        return facts

    def parity(self, model: str, image_size: int, batch: int, device: str) -> dict[str, Any]:
        from pybench.backends.jax.parity import run_parity

        return run_parity(model, image_size, batch, device)


FRAMEWORK = Jax()
