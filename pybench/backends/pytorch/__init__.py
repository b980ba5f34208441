"""PyTorch as the orchestrator sees it; the backend itself (`backend.py`) imports torch."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pybench.backends.base import Availability, Framework, Options


class PyTorch(Framework):
    name = "pytorch"
    title = "PyTorch"
    backend = "pybench.backends.pytorch.backend:PyTorchBackend"
    options = Options(dtypes={"cpu": ("fp32", "bf16", "fp16"), "cuda": ("fp32", "bf16", "fp16")},
                      channels_last=True, compile=True,
                      compile_modes=("default", "reduce-overhead", "max-autotune",
                                     "max-autotune-no-cudagraphs"))
    packages = ("torch", "torchvision")

    def availability(self) -> Availability:
        missing = [m for m in self.packages if importlib.util.find_spec(m) is None]
        if missing:
            return Availability(False, f"{' and '.join(missing)} not installed: pip install -e .")
        return Availability(True)

    def cache_env(self, cache_dir: Path) -> dict[str, str]:
        # Inductor's own cache (FX graphs, Triton kernels) in the matrix's folder: `--compile` rounds
        # after the first reuse round 1's work, and no round reads a global cache from earlier runs.
        return {**super().cache_env(cache_dir), "TORCHINDUCTOR_CACHE_DIR": str(cache_dir / "inductor")}


FRAMEWORK = PyTorch()
