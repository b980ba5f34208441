"""The timing protocol, shared by every framework: what is timed, warm-up, stopping and statistics.

Backends only prepare a workload and run iterations of a *phase group*; everything that decides what
a number means lives here, so a PyTorch row, a JAX row and a Flux row are produced by the same rules.

The phase vocabulary is `PHASES`: one table that also gives report columns, plot patterns and FLOP
factors.  A group is one loop a backend runs: a *train* iteration yields forward and backward (of
that same forward) and the protocol derives total (their per-iteration sum); a *step* iteration is
one full optimizer step; an *inference* iteration is one eval-mode forward.  Each sample is
bracketed as synchronize -> clock -> run -> synchronize -> clock, so queued device work can neither
leak into nor escape from the timed region.
"""

from __future__ import annotations

import bisect
import gc
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol, Sequence

from pybench.protocol.ranks import median_ci_ranks
from pybench.protocol.sampling import Sampler
from pybench.protocol.phases import GC_SUFFIX, GROUP_WEIGHTS, HEADLINE, PHASES, check_phases, groups_of

# GPU warm-up: cudnn.benchmark (and Julia's or XLA's compiler) make the first few iterations slow; we
# keep warming up until two consecutive iterations agree this closely, within the bounds below.
WARMUP_SETTLED = 0.05
GPU_WARMUP_MIN = 3
GPU_WARMUP_MAX = 50
# ...and for at least this much work: an idle GPU's clocks ramp up under load (an H200 idles at
# 345 MHz, boosts to 1980), so a short workload could settle at a low clock.  The iteration cap
# yields to it: a 5 ms iteration needs 200.
GPU_WARMUP_MIN_TIME = 1.0
# CPU warm-up: none.  Since a priming worker fills the compile cache before round 1, no counted
# round compiles, and at most the first sample or two after a first run are slow (docs/protocol.md
# has the measurement): a round's mean carries them at their weight, which a warm-up iteration did
# not steady, at the cost of one iteration of every group in every round.
CPU_WARMUP_MIN = CPU_WARMUP_MAX = 0

@dataclass(frozen=True)
class StopRule:
    """When the protocol stops sampling a phase group."""

    precision: float = 0.02  # CI half-width of the median, relative
    min_samples: int = 5
    max_samples: int = 1000
    max_time: float = 60.0  # seconds of sampling per cell (first runs and warm-up excluded)
    confidence: float = 0.95
    sequential: bool = False  # rounds stop once every ratio is decided: ratios use the stricter level


class MemoryProbe(Protocol):
    """A figure over the sampling window (peak memory, energy): opened after warm-up, read when the
    group's sampling ends."""

    def reset(self) -> None: ...
    def read(self) -> dict[str, int]: ...


class ClockProbe(Protocol):
    """Device clocks, marked when a group's sampling starts and when it ends."""

    def mark(self, group: str, when: str) -> None: ...


# --- one process's stopping test -------------------------------------------------------------------

def precise(sorted_samples: Sequence[float], stop: StopRule) -> bool:
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


# --- one process's measurement of a cell ----------------------------------------------------------

# Why sampling stopped.  "too_few_samples": the budget ran out before an interval was even possible
# (n below what a 95% interval needs); "noisy": enough samples, interval still wider than asked;
# "planned": the runner set the count from the noise of earlier rounds (`planning.plan_round`); "capped": the
# plan asked for MIN_PLANNED samples but one sample costs more than the round's cap allows.
STOP_REASONS = ("converged", "noisy", "too_few_samples", "max_samples", "planned", "capped")
MIN_PLANNED = 3  # no group gets fewer samples in a round, unless one exceeds its cap (`group_cap`)
INITIAL_GROUP_S = 2.0  # sampling per group in a cell's first round, before its noise is known


@dataclass
class PhaseSamples:
    """One phase as one worker process measured it; raw samples are the source of truth.

    `blocks` are the sizes of the consecutive runs of samples taken without a pause (in lockstep
    rounds the other frameworks ran between them); ratios pair the blocks of two frameworks."""

    first_run: float  # seconds; includes compilation/autotuning, never in the statistics
    warmup: list[float]
    samples: list[float]
    stop_reason: str
    blocks: list[int] = field(default_factory=list)  # empty: one block of all samples
    gc: list[float] | None = None  # seconds of garbage collection inside each sample; None: not reported

    def block_samples(self) -> list[list[float]]:
        sizes = self.blocks or [len(self.samples)]
        out, i = [], 0
        for size in sizes:
            out.append(self.samples[i:i + size])
            i += size
        return out

    def to_json(self) -> dict:
        out = {"first_run": self.first_run, "warmup": self.warmup, "samples": self.samples,
               "stop_reason": self.stop_reason, "blocks": self.blocks}
        return out if self.gc is None else {**out, "gc": self.gc}


@dataclass
class Measurement:
    """Everything one process measured of a cell: phases by name, peak memory and energy by group."""

    phases: dict[str, PhaseSamples] = field(default_factory=dict)
    memory: dict[str, dict[str, int]] = field(default_factory=dict)
    energy: dict[str, dict[str, int]] = field(default_factory=dict)
    timeline: dict[str, float] = field(default_factory=dict)  # "<group>.<step>" -> wall-clock time.time()


def _stop_reason(cols: Mapping[str, list[float]], stop: StopRule, limit: str) -> str:
    if limit in ("max_samples", "planned", "capped"):
        return limit
    if all(precise(sorted(c), stop) for c in cols.values()):
        return "converged"
    n = len(next(iter(cols.values())))
    return "too_few_samples" if median_ci_ranks(n, stop.confidence) is None else "noisy"


def _derive(raw: dict[str, list[int]], names: Sequence[str]) -> dict[str, list[float]]:
    """Seconds per iteration for every phase of the group, derived ones included (and their GC
    time where the sampler reports it for every part)."""
    out = {k: [v * 1e-9 for v in vs] for k, vs in raw.items()}
    for name in names:
        parts = PHASES[name].parts
        for suffix in ("", GC_SUFFIX):
            if parts and all(p + suffix in out for p in parts):
                out[name + suffix] = [sum(vals) for vals in zip(*(out[p + suffix] for p in parts))]
    return out


class GroupRun:
    """One phase group in one process: `begin` (first run, warm-up), any number of `block`s of
    samples, `end`.  A back-to-back round calls them in one go (`measure`); a lockstep round calls
    them as the orchestrator commands, with other frameworks' blocks in between.

    The first run is never a sample and the sampling clock starts after it and the warm-up, so
    compilation (Inductor, XLA, Julia) never eats the sampling time.  The memory window opens after warm-up, so
    autotuning workspaces are not counted.  Python's collector is paused inside blocks: a collector
    pause inside a timed region is noise, not the framework's cost.
    """

    def __init__(self, sampler: Sampler, group: str, gpu: bool, memory: MemoryProbe | None = None,
                 clock: Callable[[], float] = time.monotonic, energy: MemoryProbe | None = None,
                 clocks: ClockProbe | None = None) -> None:
        self.sampler, self.group, self.gpu, self.memory, self.clock = sampler, group, gpu, memory, clock
        self.energy_probe, self.clocks = energy, clocks
        self.energy: dict[str, int] = {}  # summed over the blocks: never the other workers' turns
        self.names = [p.name for p in PHASES.values() if p.group == group]
        self.lead = HEADLINE[group]
        self.first: dict[str, float] = {}
        self.warmup: dict[str, list[float]] = {n: [] for n in self.names}
        self.cols: dict[str, list[float]] = {n: [] for n in self.names}
        self.gc: dict[str, list[float]] = {n: [] for n in self.names}  # where the sampler reports it
        self.ordered: dict[str, list[float]] = {n: [] for n in self.names}  # sorted, for stopping
        self.blocks: list[int] = []
        self.started = 0.0
        # Wall-clock ends of its steps (first_run, warmup, sampling) for the round's timeline: the
        # injected `clock` drives limits, this only describes where the round's time went.
        self.marks: dict[str, float] = {}

    def begin(self, budget: float = math.inf) -> dict[str, float]:
        """First run, then warm-up until two iterations agree (and on a GPU GPU_WARMUP_MIN_TIME of
        work has run), within the device's bounds and `budget` seconds after the first run."""
        first = _derive(self.sampler.sample(self.group, 1), self.names)
        self.first = {n: first[n][0] for n in self.names}
        self.marks[f"{self.group}.first_run"] = time.time()
        warm_from = self.clock()
        least, most, min_time = ((GPU_WARMUP_MIN, GPU_WARMUP_MAX, GPU_WARMUP_MIN_TIME) if self.gpu
                                 else (CPU_WARMUP_MIN, CPU_WARMUP_MAX, 0.0))
        prev, i = self.first[self.lead], 0
        while most and self.clock() < warm_from + budget:  # the CPU has none; on a GPU min_time may outlast most
            cur = _derive(self.sampler.sample(self.group, 1), self.names)
            for n in self.names:
                self.warmup[n].extend(cur[n])
            now = cur[self.lead][0]
            settled = abs(now - prev) <= WARMUP_SETTLED * min(now, prev)
            prev, i = now, i + 1
            if sum(self.warmup[self.lead]) >= min_time and (i >= most or (i >= least and settled)):
                break
        self.started = self.clock()  # the sampling clock: caps and budgets count samples only
        self.marks[f"{self.group}.warmup"] = time.time()
        if self.memory:
            self.memory.reset()
        if self.clocks:
            self.clocks.mark(self.group, "start")
        return self.first

    def block(self, n: int, until: Callable[[], bool] = lambda: False,
              on_sample: Callable[[], None] | None = None) -> dict[str, list[float]]:
        """Up to `n` samples in one block, stopping early when `until()` says so (checked before
        each sample after the first); returns this block's seconds by phase."""
        got: dict[str, list[float]] = {name: [] for name in self.names}
        gc.collect()
        gc_was_enabled = gc.isenabled()
        gc.disable()
        if self.energy_probe:  # the block less the collection: energy counts each iteration's whole cost
            self.energy_probe.reset()
        try:
            while len(got[self.lead]) < n and not (got[self.lead] and until()):
                for name, values in _derive(self.sampler.sample(self.group, 1), self.names).items():
                    if name.endswith(GC_SUFFIX):
                        self.gc[name[:-len(GC_SUFFIX)]].extend(values)
                        continue
                    got[name].extend(values)
                    self.cols[name].extend(values)
                    bisect.insort(self.ordered[name], values[0])
                if on_sample:
                    on_sample()
        finally:
            if gc_was_enabled:
                gc.enable()
        if self.energy_probe:
            for kind, value in self.energy_probe.read().items():
                self.energy[kind] = self.energy.get(kind, 0) + value
        self.blocks.append(len(got[self.lead]))
        return got

    @property
    def count(self) -> int:
        return len(self.cols[self.lead])

    def precise(self, stop: StopRule) -> bool:
        return self.count >= stop.min_samples and all(precise(o, stop) for o in self.ordered.values())

    def end(self, stop: StopRule, limit: str) -> tuple[dict[str, PhaseSamples], dict[str, int], float]:
        """Close the group: its phases, its peak memory and the seconds since the first run (its
        energy over the blocks is `self.energy`)."""
        if self.clocks:
            self.clocks.mark(self.group, "end")
        self.marks[f"{self.group}.sampling"] = time.time()
        peak = self.memory.read() if self.memory else {}
        self.sampler.finish(self.group)
        reason = _stop_reason(self.cols, stop, limit)
        blocks = self.blocks if len(self.blocks) > 1 else []
        phases = {n: PhaseSamples(first_run=self.first[n], warmup=self.warmup[n], samples=self.cols[n],
                                  stop_reason=reason, blocks=list(blocks),
                                  gc=self.gc[n] if self.cols[n] and len(self.gc[n]) == len(self.cols[n]) else None)
                  for n in self.names}
        return phases, peak, self.clock() - self.started


def group_cap(stop: StopRule, group: str, groups: Sequence[str]) -> float:
    """The most sampling time one group may take in a round: its share of `stop.max_time` by cost."""
    return stop.max_time * GROUP_WEIGHTS[group] / sum(GROUP_WEIGHTS[g] for g in groups)


def _measure_group(run: GroupRun, stop: StopRule, budget: float, cap: float, planned: int | None,
                   on_sample: Callable[[], None] | None) -> tuple[dict[str, PhaseSamples], dict[str, int], float]:
    """A whole group in one go: `planned` samples, or without a plan until every phase is precise or
    the `budget` is spent.  Either way at least MIN_PLANNED samples unless the group's `cap` is hit
    first (the record then says "capped")."""
    run.begin(budget)

    def past(seconds: float) -> bool:
        return run.clock() >= run.started + seconds

    if planned is not None:
        run.block(planned, until=lambda: past(cap), on_sample=on_sample)
        return run.end(stop, "planned" if run.count >= min(planned, MIN_PLANNED) else "capped")
    enough = max(MIN_PLANNED, stop.min_samples)
    run.block(stop.max_samples, on_sample=on_sample, until=lambda: (
        run.precise(stop) or (past(budget) and run.count >= enough) or past(cap)))
    if run.count < MIN_PLANNED and not run.precise(stop):
        return run.end(stop, "capped")
    return run.end(stop, "max_samples" if run.count >= stop.max_samples and not run.precise(stop) else "max_time")


def measure(
    sampler: Sampler,
    phases: Sequence[str],
    stop: StopRule,
    gpu: bool,
    memory: MemoryProbe | None = None,
    on_sample: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    plan: Mapping[str, int] | None = None,
    energy: MemoryProbe | None = None,
    initial: float | None = None,
    clocks: ClockProbe | None = None,
) -> Measurement:
    """Run the whole protocol for one round of a cell in this process and return the requested phases.

    `plan` gives the samples per group (from the noise of earlier rounds).  Without one a group
    samples until precise, for `initial` seconds (a cell's first round) or else for its share of
    `stop.max_time` by relative cost (`GROUP_WEIGHTS`), what one group leaves unused going to the
    next.  No group samples longer than its share of `stop.max_time` (`group_cap`).  `clock` is the
    clock the limits are read from (tests inject a scripted one).
    """
    check_phases(phases)
    groups = groups_of(phases)
    remaining = stop.max_time
    out = Measurement()
    for i, group in enumerate(groups):
        weights = [GROUP_WEIGHTS[g] for g in groups[i:]]
        budget = initial if initial is not None else remaining * weights[0] / sum(weights)
        run = GroupRun(sampler, group, gpu, memory, clock, energy, clocks)
        got, peak, used = _measure_group(run, stop, budget, group_cap(stop, group, groups),
                                         (plan or {}).get(group), on_sample)
        remaining = max(0.0, remaining - used)
        out.phases.update({p: r for p, r in got.items() if p in phases})
        out.memory[group] = peak
        out.timeline.update(run.marks)
        if run.energy:
            out.energy[group] = run.energy
    out.phases = {p: out.phases[p] for p in phases}
    return out
