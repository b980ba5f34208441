"""PyTorch as the orchestrator sees it; the backend itself (`backend.py`) imports torch."""

from __future__ import annotations

import importlib.util

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


FRAMEWORK = PyTorch()
