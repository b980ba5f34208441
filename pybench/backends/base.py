"""The one small interface every framework backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from pybench.protocol import PythonLoopSampler, Sampler
from pybench.spec import CellSpec
from pybench.workloads import get_workload


def make_input(spec: CellSpec) -> np.ndarray:
    """The seeded Float32 batch (NCHW, or N x features for a dense layer); every backend builds it
    from the same seed, so inputs match."""
    rng = np.random.default_rng(spec.seed)
    shape = get_workload(spec.model).input_shape(spec.batch_size, spec.image_size)
    return rng.standard_normal(shape, dtype=np.float32)


class Backend(ABC):
    """Prepares one workload on one device and runs single, untimed iterations of its phases.

    Timing, warm-up and stopping belong to `pybench.protocol`; a backend never reads a clock for the
    statistics, except through a `sampler()` that replaces the Python loop (Flux samples in Julia).
    """

    name: str

    def __init__(self, spec: CellSpec) -> None:
        self.spec = spec

    @abstractmethod
    def prepare(self) -> dict:
        """Build model, input and output gradient on the device; return facts about the workload
        (at least `params`, the parameter count)."""

    @abstractmethod
    def zero_grad(self) -> None:
        """Clear gradients (untimed, before every train iteration)."""

    @abstractmethod
    def forward(self) -> None:
        """Train mode, autograd recording: one forward pass of the batch."""

    @abstractmethod
    def backward(self) -> None:
        """The backward pass of the preceding forward, seeded with an all-ones output gradient."""

    @abstractmethod
    def inference(self) -> None:
        """Eval mode, no autograd: one forward pass."""

    @abstractmethod
    def synchronize(self) -> None:
        """Wait until all queued device work has finished."""

    @abstractmethod
    def environment(self) -> dict:
        """Framework versions and settings as this worker actually runs them."""

    def sampler(self) -> Sampler:
        return PythonLoopSampler(self)

    def reset_peak_memory(self) -> None:
        """Start a fresh peak-memory window (per phase group)."""

    def peak_memory(self) -> dict:
        """Peak memory since the last reset, in bytes, by kind."""
        return {}
