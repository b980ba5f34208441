"""Replays `--rounds auto`'s stop rule on finished compare runs, once per round statistic.

    python scripts/replay_stop.py [--stat mean median min] FILE...

For every results file (one compare of two frameworks each): after each round from the fourth on, would
the rule (`planning.looks`) have stopped with this statistic, and how wide is the widest ratio's
interval at that stop (or at the run's end)?  Then, per phase, the per-round spread of the log ratio
(pooled sd over the files), the figure that decides how many rounds a decision needs.  The rounds are
the ones the run took: a run under another statistic would have planned other sample counts, so this
compares statistics on the same processes, not whole runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np

from pybench.records.record import CellRecord
from pybench.records.results import load
from pybench.records.statistics import STATS
from pybench.rounds import planning


def members(path: Path) -> list[CellRecord]:
    ok = [r for r in load(path).records if r.ok]
    if len(ok) != 2:
        raise SystemExit(f"{path}: {len(ok)} ok records; one compare of two frameworks is needed")
    return ok


def stop_after(records: list[CellRecord], stat: str) -> tuple[int | None, float]:
    """The round the rule stops after (None: it never did) and the widest half-width there."""
    total = max(len(r.rounds) for r in records)
    stop = None
    for k in range(planning.MIN_ROUNDS, total + 1):
        cut = [dataclasses.replace(r, rounds=r.rounds[:k]) for r in records]
        if all(look.decided for look in planning.looks(cut, stat).values()):
            stop = k
            break
    cut = [dataclasses.replace(r, rounds=r.rounds[:stop or total]) for r in records]
    widths = [x.half_width_rel for x in cut[1].ratios_to(cut[0], stat).values() if x and x.half_width_rel]
    return stop, max(widths, default=math.inf)


def spread(runs: list[list[CellRecord]], stat: str) -> dict[str, float]:
    """Per phase, the pooled sd of the per-round log ratios over the runs."""
    sums: dict[str, list[float]] = {}
    for base, other in runs:
        for phase in base.phase_names:
            logs = planning.round_logs(other, base, phase, stat)
            if len(logs) > 1:
                acc = sums.setdefault(phase, [0.0, 0.0])
                acc[0] += float(np.var(logs, ddof=1)) * (len(logs) - 1)
                acc[1] += len(logs) - 1
    return {p: math.sqrt(ss / df) for p, (ss, df) in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stat", nargs="+", choices=STATS, default=list(STATS))
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args()
    runs = [members(f) for f in args.files]
    for stat in args.stat:
        stops = [stop_after(r, stat) for r in runs]
        cells = " ".join(f"{'stop ' + str(k) if k else 'open'} +-{w:.1%}" for k, w in stops)
        print(f"{stat:6s} decided in {sum(k is not None for k, _ in stops)} of {len(runs)}: {cells}")
        print("       per-round spread of the log ratio: "
              + ", ".join(f"{p} {s:.1%}" for p, s in spread(runs, stat).items()))


if __name__ == "__main__":
    main()
