"""Simulates `--rounds auto` on pybench's own scheduler and prints the error rates docs/protocol.md states.

Every sequence is one cell of two members measured by `rounds.matrix.run_matrix`, unchanged: scripted
workers stand in for the processes, a scripted meter for the other work on the machine, a fake clock
for time and an in-memory store for the results file.  The scripted machine has what the reference VM
showed: a factor per process on every phase, a smaller one per phase, noise per sample, slow processes
(more often on the second member), a slow drift of the machine's speed, and rounds that other work
disturbs (set aside).  Per phase and sequence it keeps the final ratio's interval and verdict:

- A/A (true ratio 1): a "faster"/"slower" verdict is a false call; per phase, and across the five
  phases of a sequence (any of them: the family `ratios.paired_ratios` calls as one);
- true ratios 1.05, 1.2, 1.8: coverage, the share of final intervals that contain the true ratio of
  the typical processes;
- how many rounds ran, and the share of ratios decided (within +-planning.DECIDED_WIDTH).

    python scripts/simulate_stopping.py [--sequences 20000] [--ratios 1 1.05 1.2 1.8] [--seed 1]

`--spread-scan` instead runs the rule alone on normal per-round log ratios (no scheduler, 400,000 A/A
sequences per spread, in seconds): its false-call rate for every spread of the rounds, the worst case.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np

from pybench.machine.noise import OTHER_BUSY_LIMIT, CpuShare
from pybench.protocol.group import PhaseSamples, StopRule
from pybench.records.record import CellRecord
from pybench.records.round import Round
from pybench.records.spec import CellSpec
from pybench.records.ratios import ratio_confidence
from pybench.records.statistics import Verdict, t_quantile
from pybench.rounds import matrix, planning

PHASES = ("forward", "backward", "total", "inference", "step")
# Seconds per sample of the first member (resnet50-like on 2 cores), and of a process's fixed cost.
SAMPLE_S = {"forward": 0.35, "backward": 0.6, "inference": 0.25, "step": 1.0}
FIXED_S = 20.0
BATCH = 500  # sequences per matrix: cells of one run_matrix call, each its own sequence


@dataclass(frozen=True)
class Machine:
    """The scripted machine: sds are of log times."""

    process_sd: float = 0.03  # a process's own speed, on every phase
    phase_sd: float = 0.015  # on top, per phase of a process
    sample_sd: float = 0.03
    slow_chance: tuple[float, float] = (0.02, 0.10)  # a slow process, first and second member
    slow_factor: tuple[float, float] = (1.35, 1.45)
    drift: float = 0.05  # amplitude of the machine's slow drift
    drift_period_s: tuple[float, float] = (300.0, 3000.0)
    busy_chance: float = 0.05  # other work disturbs a process (its round is set aside)
    samples: int = 6  # per phase in round 1 (later rounds: the plan)


@dataclass
class Sequence:
    """One cell's own clock and drift."""

    ratio: float
    drift_phase: float
    drift_period: float
    elapsed: float = 0.0


class Clock:
    """The scheduler's time: advanced by every scripted process."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@dataclass
class Store:
    """The results file, in memory: the scheduler adds and saves records, nothing is written."""

    environment: dict = field(default_factory=dict)
    path: Path = Path("simulated.json")

    def add(self, record: CellRecord) -> None:
        pass

    def save(self) -> None:
        pass


class Worker:
    """Scripted processes (`run_one`) and a scripted meter of other work (`meter`)."""

    def __init__(self, machine: Machine, sequences: dict[int, Sequence], clock: Clock,
                 rng: np.random.Generator) -> None:
        self.machine, self.sequences, self.clock, self.rng = machine, sequences, clock, rng
        self.disturbed = False

    def meter(self) -> SimpleNamespace:
        self.disturbed = bool(self.rng.random() < self.machine.busy_chance)
        share = CpuShare(steal=0.0, other_busy=2 * OTHER_BUSY_LIMIT if self.disturbed else 0.0, seconds=1.0)
        return SimpleNamespace(read=lambda: share)

    def __call__(self, spec: CellSpec, timeout: float, cache_dir: Path, plan: dict | None = None,
                 initial: float | None = None) -> CellRecord:
        m, rng = self.machine, self.rng
        seq = self.sequences[spec.batch_size]
        second = spec.variant_name != ""
        drift = m.drift * math.sin(2 * math.pi * seq.elapsed / seq.drift_period + seq.drift_phase)
        speed = drift + rng.normal(0, m.process_sd) + math.log(seq.ratio if second else 1.0)
        if rng.random() < m.slow_chance[second]:
            speed += math.log(rng.uniform(*m.slow_factor))
        if self.disturbed:  # other work slows this process far more than the rest of the machine
            speed += math.log(2.0)
        phases, cost = {}, FIXED_S
        groups = {g: (plan or {}).get(g, m.samples) for g in matrix.groups_of(list(spec.phases))}
        own = {p: speed + rng.normal(0, m.phase_sd) for p in SAMPLE_S}
        for p in spec.phases:
            n = groups[matrix.groups_of([p])[0]]
            if p == "total":
                samples = [f + b for f, b in zip(phases["forward"].samples, phases["backward"].samples)]
            else:
                samples = list(SAMPLE_S[p] * np.exp(own[p] + rng.normal(0, m.sample_sd, n)))
                cost += sum(samples)
            phases[p] = PhaseSamples(1.0, [], samples, "planned")
        seq.elapsed += cost
        self.clock.now += cost
        return CellRecord(spec=spec, status="ok", title="X 1", rounds=[Round(phases=phases)], wall_time=cost)


@dataclass
class Outcome:
    """One phase of one sequence, as the run ended."""

    ratio: float  # the true one
    value: float
    low: float | None
    high: float | None
    verdict: Verdict
    decided: bool
    counted: int  # paired quiet rounds the ratio rests on
    attempts: int  # rounds run, set-aside and slow ones included

    @property
    def false_call(self) -> bool:
        return self.verdict in (Verdict.FASTER, Verdict.SLOWER) and (
            self.ratio == 1 or (self.verdict == Verdict.FASTER) != (self.ratio < 1))

    @property
    def covered(self) -> bool:
        return self.low is not None and self.low <= self.ratio <= self.high


def specs(n: int) -> list[CellSpec]:
    """n cells of two members, told apart by their batch size."""
    stop = StopRule(sequential=True)
    return [CellSpec("pytorch", "resnet50", "cpu", b, 64, threads=1, stop=stop, phases=PHASES, variant_name=v)
            for b in range(1, n + 1) for v in ("", "#2")]


def batch(ratio: float, n: int, seed: tuple[int, ...], machine: Machine, budget: float) -> list[list[Outcome]]:
    """n sequences in one run_matrix call: per sequence, its five phases' outcomes."""
    rng = np.random.default_rng(seed)
    seqs = {b: Sequence(ratio, rng.uniform(0, 2 * math.pi), rng.uniform(*machine.drift_period_s))
            for b in range(1, n + 1)}
    clock = Clock()
    worker = Worker(machine, seqs, clock, rng)
    with mock.patch.object(matrix, "time", clock):
        records = matrix.run_matrix(specs(n), Store(), matrix.Schedule(rounds=None, budget=budget),
                                    run_one=worker, meter=worker.meter)
    out = []
    for base, other in zip(records[::2], records[1::2]):
        row = []
        ratios = other.ratios_to(base)
        for p in PHASES:
            r = ratios.get(p)
            row.append(Outcome(ratio, r.value if r else math.nan, r and r.ci_low, r and r.ci_high,
                               r.verdict() if r else Verdict.UNDECIDED, p not in other.undecided,
                               r.n_rounds if r else 0, len(base.rounds)))
        out.append(row)
    return out


def simulate(ratio: float, sequences: int, seed: int, machine: Machine = Machine(), budget: float = 1e9,
             workers: int = 1) -> list[list[Outcome]]:
    """Per sequence, its five phases' outcomes; batches in `workers` processes, the same for any
    number of them (each batch has its own seed)."""
    sizes = [min(BATCH, sequences - start) for start in range(0, sequences, BATCH)]
    jobs = [(ratio, n, (seed, i), machine, budget) for i, n in enumerate(sizes)]
    if workers <= 1:
        return [row for job in jobs for row in batch(*job)]
    with ProcessPoolExecutor(workers) as pool:
        return [row for rows in pool.map(batch, *zip(*jobs)) for row in rows]


def rate(hits: int, n: int) -> str:
    """A rate with its standard error."""
    p = hits / n
    return f"{p:.2%} +- {math.sqrt(p * (1 - p) / n):.2%}"


def summary(ratio: float, runs: list[list[Outcome]]) -> list[str]:
    """The figures docs/protocol.md states, for one true ratio."""
    flat = [o for row in runs for o in row]
    attempts = np.array([row[0].attempts for row in runs])
    n = len(runs)
    decided = sum(all(o.decided for o in row) for row in runs)
    lines = [f"true ratio {ratio:g}: {n} sequences; rounds run: median {np.median(attempts):.0f}, 90% within "
             f"{np.percentile(attempts, 90):.0f}; every phase decided: {rate(decided, n)}"]
    if ratio == 1:
        per_phase = [rate(sum(row[i].false_call for row in runs), n) for i in range(len(PHASES))]
        lines.append("  false calls per phase: " + ", ".join(f"{p} {r}" for p, r in zip(PHASES, per_phase)))
        any_phase = sum(any(o.false_call for o in row) for row in runs)
        lines.append(f"  false calls in any of the five phases: {rate(any_phase, n)}")
    coverage = [rate(sum(row[i].covered for row in runs), n) for i in range(len(PHASES))]
    lines.append("  coverage per phase: " + ", ".join(f"{p} {c}" for p, c in zip(PHASES, coverage)))
    bias = np.median([o.value / o.ratio for o in flat if o.counted]) - 1
    lines.append(f"  median final ratio over the true one: {bias:+.2%}; wrong-direction calls: "
                 f"{rate(sum(o.false_call for o in flat), len(flat))} of phases")
    return lines


def spread_scan(level: float, sequences: int = 400_000, seed: int = 0) -> list[str]:
    """A/A false calls of the rule alone, per spread of the per-round log ratio: stop at the first
    round from MIN_ROUNDS on whose interval is within +-DECIDED_WIDTH (or at MAX_ROUNDS)."""
    rng = np.random.default_rng(seed)
    lines = []
    for sd in (0.01, 0.03, 0.05, 0.08, 0.1, 0.12, 0.14, 0.16, 0.2, 0.3):
        x = rng.normal(0, sd, (sequences, planning.MAX_ROUNDS))
        open_, false = np.ones(sequences, bool), np.zeros(sequences, bool)
        for n in range(planning.MIN_ROUNDS, planning.MAX_ROUNDS + 1):
            half = t_quantile((1 + level) / 2, n - 1) * x[:, :n].std(1, ddof=1) / math.sqrt(n)
            stop = open_ & ((half <= math.log1p(planning.DECIDED_WIDTH)) | (n == planning.MAX_ROUNDS))
            false[stop] = np.abs(x[stop, :n].mean(1)) > half[stop]
            open_ &= ~stop
        lines.append(f"  spread {sd:.0%}: false calls {rate(int(false.sum()), sequences)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=20000)
    ap.add_argument("--ratios", type=float, nargs="+", default=[1.0, 1.05, 1.2, 1.8])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: the cores)")
    ap.add_argument("--spread-scan", action="store_true", help="the rule alone, A/A, for every spread")
    args = ap.parse_args(argv)
    if args.spread_scan:
        level = ratio_confidence(0.95, sequential=True)
        print(f"the rule alone at {level:.1%}, A/A, normal per-round log ratios:")
        print("\n".join(spread_scan(level, seed=args.seed)))
        return 0
    print(f"rule: stop at >= {planning.MIN_ROUNDS} paired quiet rounds once every ratio is within "
          f"+-{planning.DECIDED_WIDTH:.0%}, at most {planning.MAX_ROUNDS} counted "
          f"({planning.MAX_ATTEMPTS} run); {Machine()}")
    for i, ratio in enumerate(args.ratios):
        for line in summary(ratio, simulate(ratio, args.sequences, args.seed + i, workers=args.workers)):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
