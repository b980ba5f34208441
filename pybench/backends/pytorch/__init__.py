"""PyTorch as the orchestrator sees it; the backend itself (`backend.py`) imports torch."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sysconfig
from pathlib import Path

from pybench.backends.base import Availability, Framework, Options
from pybench.errors import UserError
from pybench.records.spec import CellSpec

# What Triton needs to build its launcher the first time a compiled graph runs on a GPU.
C_TOOLCHAIN_FIX = ("install a C compiler and the Python headers (Debian/Ubuntu: apt install gcc python3-dev; "
                   "RHEL/Fedora: dnf install gcc python3-devel), or set CC")
CXX_FIX = "install one (Debian/Ubuntu: apt install g++; RHEL/Fedora: dnf install gcc-c++), or set CXX"


def c_toolchain_missing() -> str | None:
    """What Triton's C build lacks here (as triton.runtime.build looks: $CC, else gcc, else clang on
    PATH, and Python.h in the interpreter's include directory), or None."""
    if not (os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")):
        return "no C compiler (CC unset, no gcc or clang on PATH)"
    scheme = sysconfig.get_default_scheme()
    include = sysconfig.get_paths(scheme="posix_prefix" if scheme == "posix_local" else scheme)["include"]
    if not (Path(include) / "Python.h").is_file():
        return f"no Python.h in {include}"


def cxx_missing() -> str | None:
    """What Inductor's CPU code generation lacks here (as torch._inductor.cpp_builder looks: the
    compiler $CXX names, else g++ on PATH), or None."""
    cxx = os.environ.get("CXX", "g++")
    try:
        words = shlex.split(cxx)
    except ValueError:  # unbalanced quotes: Inductor cannot run it either
        words = []
    if words and shutil.which(words[0]):
        return None
    return f"no C++ compiler (CXX={cxx!r} is not a program)" if "CXX" in os.environ else \
        "no C++ compiler (CXX unset, no g++ on PATH)"


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

    def preflight(self, spec: CellSpec) -> None:
        if spec.compile and spec.device_kind == "cpu":
            missing = cxx_missing()
            if missing:
                raise UserError(f"--compile on the CPU needs a C++ compiler for Inductor's kernels, but there "
                                f"is {missing}: {CXX_FIX}")
        if spec.compile and spec.device_kind == "cuda":
            missing = c_toolchain_missing()
            if missing:
                raise UserError(f"--compile on a GPU needs Triton to build C code at first use, but there is "
                                f"{missing}: {C_TOOLCHAIN_FIX}")

    def primes(self, spec: CellSpec) -> bool:
        return spec.compile  # eager mode keeps nothing from one process to the next; Inductor's cache does

    def cache_env(self, cache_dir: Path) -> dict[str, str]:
        # Inductor's own cache (FX graphs, Triton kernels) in the matrix's folder: `--compile` rounds
        # after the first reuse round 1's work, and no round reads a global cache from earlier runs.
        return {**super().cache_env(cache_dir), "TORCHINDUCTOR_CACHE_DIR": str(cache_dir / "inductor")}


FRAMEWORK = PyTorch()
