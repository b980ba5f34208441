"""Calibration: does run A's interval contain run B's estimate of the same phase?

    python scripts/bench_calibration.py RUN_A RUN_B [--stat mean|median|min] [--confidence 0.95]

Run the same matrix twice (RUN_A, RUN_B: results files or folders) and this prints, over the phases
both runs measured with an interval between rounds, the share whose interval from A contains B's
estimate, and the reverse.  Target on this machine: >= 90%.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable

from pybench.report.selection import latest
from pybench.records.results import collect
from pybench.records.statistics import DEFAULT_STAT, STATS, estimate

RunRounds = dict[Hashable, list[list[float]]]  # phase key -> rounds of samples (seconds)


@dataclass(frozen=True)
class Calibration:
    phases: int  # phases in both runs with an interval between rounds on both sides
    a_contains_b: float  # share of them (0 when there are none)
    b_contains_a: float
    missed: list[Hashable]  # phases where either interval missed the other run's estimate


def calibration(run_a: RunRounds, run_b: RunRounds, confidence: float = 0.95,
                stat: str = DEFAULT_STAT) -> Calibration:
    a_in = b_in = 0
    missed, keys = [], []
    for key in sorted(run_a.keys() & run_b.keys(), key=repr):
        a, b = estimate(run_a[key], confidence, stat), estimate(run_b[key], confidence, stat)
        if not (a.between_rounds and b.between_rounds):
            continue  # one round: its interval promises nothing about another process
        keys.append(key)
        hit_a, hit_b = a.ci_low <= b.value <= a.ci_high, b.ci_low <= a.value <= b.ci_high
        a_in, b_in = a_in + hit_a, b_in + hit_b
        if not (hit_a and hit_b):
            missed.append(key)
    n = max(len(keys), 1)
    return Calibration(len(keys), a_in / n, b_in / n, missed)


def load_rounds(paths: list[Path]) -> RunRounds:
    """(cell key, phase) -> rounds of samples, from the newest ok record of each cell in the files
    or folders, as reports select them."""
    return {(e.record.key, phase): e.record.samples(phase)
            for e in latest(collect(paths)) if e.record.ok for phase in e.record.phase_names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    ap.add_argument("--stat", default=DEFAULT_STAT, choices=STATS)
    ap.add_argument("--confidence", type=float, default=0.95)
    args = ap.parse_args()
    c = calibration(load_rounds([args.run_a]), load_rounds([args.run_b]), args.confidence, args.stat)
    print(f"{c.phases} phases with >= 2 rounds in both runs")
    if not c.phases:
        return
    print(f"A's interval contains B's estimate: {c.a_contains_b:.1%}")
    print(f"B's interval contains A's estimate: {c.b_contains_a:.1%}  (target >= 90% each)")
    for key in c.missed:
        print("missed:", " ".join(map(str, key)))


if __name__ == "__main__":
    main()
