"""The two small interfaces behind which every framework lives.

`Framework` is what the orchestrator knows without importing the framework: name, display title,
availability, supported options, worker environment, versions, parity.  `Backend` runs inside the
worker: it prepares one workload on one device and hands the protocol a sampler for its phase groups.
Nothing outside `pybench/backends/` branches on a framework's name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pybench.protocol.sampling import Sampler
from pybench.records.numerics import Numerics
from pybench.records.round import WorkloadFacts
from pybench.records.spec import CellSpec
from pybench.protocol.workloads import NUM_CLASSES, get_workload


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""  # one line: why not, and what fixes it


@dataclass(frozen=True)
class Options:
    """What a framework's rows can be asked for; anything else is a row saying why not."""

    dtypes: dict[str, tuple[str, ...]]  # device kind -> dtypes it computes in
    channels_last: bool = False
    compile: bool = False
    compile_modes: tuple[str, ...] = ()  # modes its compiler takes besides its default


def make_input(spec: CellSpec) -> np.ndarray:
    """The seeded Float32 batch (NCHW, or N x features for a dense layer); every backend builds it
    from the same seed, so inputs match (a backend that wants NHWC transposes it, untimed)."""
    rng = np.random.default_rng(spec.seed)
    shape = get_workload(spec.model).input_shape(spec.batch_size, spec.image_size)
    return rng.standard_normal(shape, dtype=np.float32)


def make_labels(spec: CellSpec) -> np.ndarray:
    """The seeded class labels (0-based) the training step's cross-entropy uses, on every side."""
    return np.random.default_rng(spec.seed + 1).integers(0, NUM_CLASSES, spec.batch_size)


# Parity: max |other - torch| relative to max |torch|.  fp32 with different convolution algorithms and
# summation orders agrees to ~1e-6..1e-5; a wrong layout or layer order is off by O(1).
PARITY_RTOL = 1e-4

# A folder that lives as long as one matrix run: round 1 compiles (its first run says how long that
# takes), later rounds of the same cell may reuse the compiled code instead of paying for it again.
CACHE_ENV = "PYBENCH_CACHE_DIR"

# The training step as users train: SGD with momentum, the same on every side.
SGD_LR = 0.01
SGD_MOMENTUM = 0.9


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class Backend(ABC):
    """Prepares one workload on one device; timing, warm-up and stopping belong to the protocol."""

    def __init__(self, spec: CellSpec) -> None:
        self.spec = spec

    @abstractmethod
    def prepare(self) -> WorkloadFacts:
        """Build model, inputs, labels and output gradient on the device (untimed)."""

    @abstractmethod
    def sampler(self) -> Sampler:
        """The phase groups of this workload, runnable by the protocol."""

    @abstractmethod
    def version(self) -> str:
        """The framework's version as this worker imported it."""

    @abstractmethod
    def environment(self) -> dict[str, Any]:
        """Versions and settings as this worker actually runs them (threads, precision, device)."""

    @abstractmethod
    def numerics(self) -> Numerics:
        """The numeric settings this worker runs with, read back from the framework after `prepare`
        (compare flags a pair whose settings differ in a way that changes speed)."""

    def reset_peak_memory(self) -> None:
        """Start a fresh device peak-memory window (per phase group, after warm-up)."""

    def peak_memory(self) -> dict[str, int]:
        """Device peak memory since the last reset, in bytes, by kind."""
        return {}


class Framework(ABC):
    """A framework as the orchestrator sees it: cheap to import, never imports the framework."""

    name: str  # as typed on the command line
    title: str  # as tables show it
    backend: str  # "module:Class" of its Backend, imported only inside its worker
    options: Options
    packages: tuple[str, ...]  # whose versions describe it
    # Modules the worker imports before any other (named in PYBENCH_PRELOAD): a runtime that brings
    # its own native libraries (libstdc++, OpenSSL) must load them before numpy and scipy load theirs.
    preload: tuple[str, ...] = ()

    @abstractmethod
    def availability(self) -> Availability:
        """Whether a worker could run it here, checked without starting anything heavy."""

    def worker_env(self, spec: CellSpec) -> dict[str, str]:
        """Environment for the worker, set before the framework loads (thread pools read it once)."""
        n = str(spec.threads)
        env = {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}
        return {**env, "PYBENCH_PRELOAD": ",".join(self.preload)} if self.preload else env

    def cache_env(self, cache_dir: Path) -> dict[str, str]:
        """Environment that points this framework's compilation caches at the matrix's folder, so the
        rounds after the first reuse what round 1 compiled (a round's fixed cost, not its samples)."""
        return {CACHE_ENV: str(cache_dir)}

    def primes(self, spec: CellSpec) -> bool:
        """Whether a priming worker has anything to fill for the cell: code that one process compiles
        and the next loads from the matrix's cache (`cache_env`)."""
        return True

    def unsupported(self, spec: CellSpec) -> str | None:
        """Why this framework cannot run the cell as asked, or None."""
        dtypes = self.options.dtypes.get(spec.device_kind, ())
        if spec.dtype not in dtypes:
            where = "a GPU" if spec.device_kind == "cuda" else "the CPU"
            return f"{self.title} does not run {spec.dtype} on {where} (supported: {', '.join(dtypes) or 'none'})"
        if spec.channels_last and not self.options.channels_last:
            return f"--channels-last is not a {self.title} option"
        if spec.compile and not self.options.compile:
            return f"--compile is not a {self.title} option"
        if spec.compile_mode and spec.compile_mode not in self.options.compile_modes:
            modes = ", ".join(self.options.compile_modes) or "none"
            return f"{self.title} has no compile mode {spec.compile_mode!r} (modes: {modes})"
        return None

    def preflight(self, spec: CellSpec) -> None:
        """Raise a UserError naming what to install when this machine lacks something the cell needs
        and only the user can add (checked for every cell before any runs)."""

    @property
    def modules(self) -> tuple[str, ...]:
        """What its worker imports besides numpy: checked in another interpreter before a variant
        runs there (each framework's packages are importable under their own names)."""
        return self.packages

    def versions(self) -> dict[str, str | None]:
        return {p: package_version(p) for p in self.packages}

    def describe(self) -> dict[str, Any]:
        """Facts for `pybench env`/`list` (may start the framework in a subprocess)."""
        return {"versions": self.versions()}

    def parity(self, model: str, image_size: int, batch: int, device: str) -> dict[str, Any]:
        """Copy the PyTorch weights into this framework's model and compare eval outputs."""
        raise NotImplementedError(f"{self.title} is the reference: parity compares the others to it")

    @property
    def has_parity(self) -> bool:
        return type(self).parity is not Framework.parity

    def load_backend(self) -> type[Backend]:
        module, cls = self.backend.split(":")
        return getattr(importlib.import_module(module), cls)
