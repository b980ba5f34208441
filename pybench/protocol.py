"""The timing protocol, shared by every framework: what is timed, warm-up, stopping and statistics.

Backends only prepare a workload, run one iteration of a phase and synchronize the device; everything
that decides what a number means lives here, so a PyTorch row and a Flux row are produced by the same
rules.

One *train* iteration yields three phases: forward, backward (of that same forward) and total (their
per-iteration sum).  An *inference* iteration yields one.  Each sample is bracketed as
synchronize -> clock -> run -> synchronize -> clock, so queued device work can neither leak into nor
escape from the timed region.
"""

from __future__ import annotations

import bisect
import gc
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
from scipy.stats import binom

from pybench.spec import StopRule

TRAIN_PHASES = ("forward", "backward", "total")
INFERENCE_PHASES = ("inference",)

# GPU warm-up: cudnn.benchmark (and Julia's compiler) make the first few iterations slow; we keep
# warming up until two consecutive iterations agree this closely, within the bounds below.
WARMUP_SETTLED = 0.05
GPU_WARMUP_MIN = 3
GPU_WARMUP_MAX = 50


class Steps(Protocol):
    """The small interface a backend exposes to the protocol."""

    def zero_grad(self) -> None: ...
    def forward(self) -> None: ...
    def backward(self) -> None: ...
    def inference(self) -> None: ...
    def synchronize(self) -> None: ...


class MemoryProbe(Protocol):
    """Peak memory over a window; reset when a phase group starts, read when it ends."""

    def reset(self) -> None: ...
    def read(self) -> dict: ...


class Sampler(Protocol):
    """Produces raw samples in nanoseconds; the protocol decides how many and what they mean."""

    def train(self, n: int) -> list[tuple[int, int]]: ...  # (forward_ns, backward_ns) per iteration
    def inference(self, n: int) -> list[int]: ...


class PythonLoopSampler:
    """Times a backend's steps from Python with a monotonic ns clock."""

    def __init__(self, steps: Steps) -> None:
        self.steps = steps

    def train(self, n: int) -> list[tuple[int, int]]:
        s, clock = self.steps, time.perf_counter_ns
        out = []
        for _ in range(n):
            s.zero_grad()  # untimed: gradients never accumulate across iterations
            s.synchronize()
            t0 = clock()
            s.forward()
            s.synchronize()
            t1 = clock()
            s.backward()
            s.synchronize()
            t2 = clock()
            out.append((t1 - t0, t2 - t1))
        return out

    def inference(self, n: int) -> list[int]:
        s, clock = self.steps, time.perf_counter_ns
        out = []
        for _ in range(n):
            s.synchronize()
            t0 = clock()
            s.inference()
            s.synchronize()
            out.append(clock() - t0)
        return out


def _lower_ranks(n_max: int, confidence: float) -> np.ndarray:
    """For every n in 0..n_max, the 1-based rank j of the lower CI bound (0: no valid interval).

    The rank of the true median among n samples is Binomial(n, 1/2); j is the largest rank with
    P(B <= j-1) <= alpha/2, so [x_(j), x_(n-j+1)] covers the median with at least `confidence`.
    Computed for all n in one vectorised call: the stopping rule asks for it after every sample.
    """
    alpha = (1.0 - confidence) / 2.0
    n = np.arange(n_max + 1)
    j = binom.ppf(alpha, n, 0.5).astype(int)  # smallest j with P(B <= j) >= alpha
    j += binom.cdf(j, n, 0.5) <= alpha
    return j


_RANK_TABLES: dict[float, np.ndarray] = {}


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based order-statistic indices bounding a distribution-free CI of the median.

    None when n is too small for any interval to reach the confidence (n < 6 at 95%), so a tiny
    sample never counts as precise.
    """
    table = _RANK_TABLES.get(confidence)
    if table is None or len(table) <= n:
        table = _RANK_TABLES[confidence] = _lower_ranks(max(2 * n, 1024), confidence)
    j = int(table[n])
    return (j - 1, n - j) if j >= 1 else None


def precise(sorted_samples: list[float], stop: StopRule) -> bool:
    """The stopping test on an already sorted sample: cheap enough to run after every sample."""
    n = len(sorted_samples)
    ranks = median_ci_ranks(n, stop.confidence)
    if ranks is None:
        return False
    mid = n // 2
    med = sorted_samples[mid] if n % 2 else (sorted_samples[mid - 1] + sorted_samples[mid]) / 2
    return (
        sorted_samples[ranks[0]] >= med * (1 - stop.precision)
        and sorted_samples[ranks[1]] <= med * (1 + stop.precision)
    )


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    min: float
    mean: float
    std: float
    iqr: float
    ci_low: float | None
    ci_high: float | None


def summarize(samples: Sequence[float], confidence: float = 0.95) -> Summary:
    """Statistics of one phase's samples (seconds)."""
    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n == 0:
        raise ValueError("no samples to summarize")
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    ranks = median_ci_ranks(n, confidence)
    lo, hi = (float(x[ranks[0]]), float(x[ranks[1]])) if ranks else (None, None)
    return Summary(
        n=n,
        median=float(q50),
        min=float(x[0]),
        mean=float(x.mean()),
        std=float(x.std(ddof=1)) if n > 1 else 0.0,
        iqr=float(q75 - q25),
        ci_low=lo,
        ci_high=hi,
    )


@dataclass
class PhaseResult:
    first_run: float  # seconds; includes compilation/autotuning, never in the statistics
    warmup: list[float]
    samples: list[float]
    summary: Summary
    stop_reason: str  # "converged", "max_time" or "max_samples"
    memory: dict  # peak bytes by kind over the phase group (train phases share one window)

    @property
    def noisy(self) -> bool:
        return self.stop_reason != "converged"

    def to_json(self) -> dict:
        return {
            "first_run": self.first_run,
            "warmup": self.warmup,
            "samples": self.samples,
            "stats": self.summary.__dict__,
            "stop_reason": self.stop_reason,
            "noisy": self.noisy,
            "memory": self.memory,
        }


def _rows_to_columns(rows: list[tuple[int, ...]], n_cols: int) -> list[list[float]]:
    return [[r[i] * 1e-9 for r in rows] for i in range(n_cols)]


def _measure_group(
    sample: Callable[[int], list[tuple[int, ...]]],
    names: Sequence[str],
    stop: StopRule,
    gpu: bool,
    deadline: float,
    on_sample: Callable[[], None] | None,
    memory: MemoryProbe | None,
) -> dict[str, PhaseResult]:
    """Warm up, then sample until every phase in the group is precise or a limit is hit."""
    k = len(names)
    if memory:
        memory.reset()
    first = _rows_to_columns(sample(1), k)
    warmup: list[list[float]] = [[] for _ in range(k)]
    if gpu:
        prev = first[-1][0]
        for i in range(GPU_WARMUP_MAX):
            cur = _rows_to_columns(sample(1), k)
            for col, v in zip(warmup, cur):
                col.extend(v)
            now = cur[-1][0]
            settled = abs(now - prev) <= WARMUP_SETTLED * min(now, prev)
            prev = now
            if (i + 1 >= GPU_WARMUP_MIN and settled) or time.monotonic() >= deadline:
                break

    cols: list[list[float]] = [[] for _ in range(k)]
    ordered: list[list[float]] = [[] for _ in range(k)]  # kept sorted for the stopping test
    reason = "max_time"
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collector pause inside a timed region is noise, not the framework's cost
    try:
        while time.monotonic() < deadline:
            n = len(cols[0])
            if n >= stop.max_samples:
                reason = "max_samples"
                break
            if n >= stop.min_samples and all(precise(o, stop) for o in ordered):
                reason = "converged"
                break
            for col, o, v in zip(cols, ordered, _rows_to_columns(sample(1), k)):
                col.extend(v)
                bisect.insort(o, v[0])
            if on_sample:
                on_sample()
    finally:
        if gc_was_enabled:
            gc.enable()
    if not cols[0]:  # the deadline passed during warm-up: one sample so the phase has a number
        for col, v in zip(cols, _rows_to_columns(sample(1), k)):
            col.extend(v)
    peak = memory.read() if memory else {}
    return {
        name: PhaseResult(
            first_run=first[i][0],
            warmup=warmup[i],
            samples=cols[i],
            summary=summarize(cols[i], stop.confidence),
            stop_reason=reason,
            memory=peak,
        )
        for i, name in enumerate(names)
    }


def measure(
    sampler: Sampler,
    phases: Sequence[str],
    stop: StopRule,
    gpu: bool,
    on_sample: Callable[[], None] | None = None,
    memory: MemoryProbe | None = None,
) -> dict[str, PhaseResult]:
    """Run the whole protocol for one cell and return a result per requested phase.

    The time limit is shared: the train group may use two thirds of it (its iterations cost about three
    inference passes), and inference gets whatever is left, so one slow group cannot starve the other.
    """
    start = time.monotonic()
    results: dict[str, PhaseResult] = {}
    if any(p in phases for p in TRAIN_PHASES):

        def train(n: int) -> list[tuple[int, ...]]:
            return [(f, b, f + b) for f, b in sampler.train(n)]

        train_deadline = start + stop.max_time * (2 / 3 if "inference" in phases else 1)
        results.update(_measure_group(train, TRAIN_PHASES, stop, gpu, train_deadline, on_sample, memory))
    if "inference" in phases:

        def infer(n: int) -> list[tuple[int, ...]]:
            return [(t,) for t in sampler.inference(n)]

        results.update(
            _measure_group(
                infer, INFERENCE_PHASES, stop, gpu, start + stop.max_time, on_sample, memory
            )
        )
    return {p: results[p] for p in phases if p in results}
