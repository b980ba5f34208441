"""Decided answers: what `pybench compare` concludes, how sure, and where its wall time goes.

    python scripts/bench_decided.py [--repeat 1] [--busy-after S] [--results DIR] -- COMPARE-ARGS...
    python scripts/bench_decided.py --reread DIR

Runs `python -m pybench compare COMPARE-ARGS` (e.g. `--model resnet50 --device cpu`, default options
otherwise) `--repeat` times and prints, per run: its wall time, rounds (and how many were set aside
because other work ran), the share of the rounds' wall time in timed iterations, and per phase every
framework's ratio to the first with its interval, the interval's half-width, and whether it is
decided (`Ratio.decided`: known within +-10%), and the seconds per round pair outside samples (each
framework's median round from `Round.anatomy`, summed).  The last line sums the runs up: how many had every phase decided and within +-10%, and, for an A/A
control (`--framework pytorch pytorch`), how many intervals contained 1 and how many runs called
some phase "faster" or "slower" (false calls), and how many phases the family's test called within
+-SMALLEST_CALL (read "tie").  `--busy-after S` starts one
busy-loop process S seconds into every run (drift in the middle of a run).  `--reread DIR` runs
nothing: it reads the runs an earlier `--results DIR` kept under today's statistics (verdicts are
recomputed from the stored rounds, so a changed rule can be read on old runs).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pybench.cli.options import non_negative_int, positive_float, positive_int, results_dir
from pybench.records.record import CellRecord
from pybench.records.results import ResultsDoc, load
from pybench.records.ratios import SMALLEST_CALL, Ratio
from pybench.records.statistics import Verdict
from pybench.report.anatomy import anatomy_rows

from cli_run import busy, pybench_run  # beside this script

TARGET = 0.10


def phase_rows(records: list[CellRecord]) -> list[tuple[str, str, Ratio | None]]:
    """(framework, phase, ratio to the first ok record of the cell) for every other ok record."""
    ok = [r for r in records if r.ok]
    if len(ok) < 2:
        return []
    base = ok[0]
    return [(r.title + (f" ({r.key.variant})" if r.key.variant else ""), p, r.ratio_to(base, p))
            for r in ok[1:] for p in base.phase_names]


@dataclass
class Tally:
    runs: int = 0
    decided: int = 0  # runs with every phase decided within +-TARGET
    called: int = 0  # runs that called some phase faster or slower
    intervals: int = 0
    contains_one: int = 0
    small_calls: int = 0  # phases the family's test calls that are within SMALLEST_CALL: ties

    def add(self, i: int, doc: ResultsDoc, seconds: float | None) -> None:
        """Print one run's figures (`seconds`: its wall time, None when re-read) and count it."""
        share = (doc.environment.get("time") or {}).get("timed_share")
        rounds = max((len(r.rounds) for r in doc.records if r.ok), default=0)
        aside = max((len(r.set_aside) for r in doc.records if r.ok), default=0)
        outside = anatomy_rows(doc.records)
        pair = " + ".join(f"{r.label} {r.outside:.1f}" for r in outside)
        wall = "wall not stored" if seconds is None else f"{seconds:.0f} s wall"
        print(f"run {i}: {wall}, {rounds} rounds ({aside} set aside: other work), "
              f"{'?' if share is None else f'{share:.0%}'} of the rounds in timed iterations; outside "
              f"samples per round: {pair} = {sum(r.outside for r in outside):.1f} s a round pair", flush=True)
        all_decided, called = True, False
        for who, phase, ratio in phase_rows(doc.records):
            if ratio is None or ratio.ci_low is None:
                print(f"  {who} {phase}: no interval")
                all_decided = False
                continue
            half = ratio.half_width_rel
            decided = ratio.decided()
            all_decided &= decided and half <= TARGET
            self.intervals += 1
            self.contains_one += ratio.ci_low <= 1 <= ratio.ci_high
            verdict = ratio.verdict()
            called |= verdict in (Verdict.FASTER, Verdict.SLOWER)
            small = ratio.called and verdict == Verdict.TIE
            self.small_calls += small
            print(f"  {who} {phase}: {ratio.value:.3f} [{ratio.ci_low:.3f}, {ratio.ci_high:.3f}] "
                  f"+-{half:.1%} {verdict}{'' if decided else ' UNDECIDED'}"
                  f"{f' (the test calls it, within +-{SMALLEST_CALL:.0%})' if small else ''}", flush=True)
        self.runs += 1
        self.decided += all_decided
        self.called += called

    def __str__(self) -> str:
        return (f"{self.decided} of {self.runs} runs had every phase decided within +-{TARGET:.0%}; "
                f"{self.contains_one} of {self.intervals} intervals contain 1; {self.called} of {self.runs} runs "
                f"called some phase faster or slower (an A/A control: false calls); {self.small_calls} phase(s) "
                f"the test calls read tie, within +-{SMALLEST_CALL:.0%}")


def reread(root: Path) -> Tally:
    """The runs an earlier `--results DIR` kept (DIR/run1, run2, ...), read under today's rules."""
    tally = Tally()
    for i, folder in sorted((int(p.name[3:]), p) for p in root.glob("run*") if p.name[3:].isdigit()):
        for path in sorted(folder.glob("*.json")):
            tally.add(i, load(path), None)
    return tally


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=positive_int, default=1)
    ap.add_argument("--busy-after", type=positive_float, help="start a busy loop this many seconds in")
    ap.add_argument("--busy", type=non_negative_int, default=1, help="busy loops with --busy-after")
    ap.add_argument("--results", type=results_dir, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--reread", type=Path, metavar="DIR",
                    help="run nothing: read the runs an earlier --results DIR kept, with today's statistics")
    ap.add_argument("compare", nargs=argparse.REMAINDER, help="arguments of pybench compare, after --")
    args = ap.parse_args()
    if args.reread:
        print(reread(args.reread))
        return
    cmp_args = [a for a in args.compare if a != "--"]
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="pybench-decided-") as tmp:
        root = args.results or Path(tmp)
        for i in range(1, args.repeat + 1):
            with busy(args.busy if args.busy_after else 0, args.busy_after or 0.0):
                run = pybench_run(cmp_args, root / f"run{i}", quiet=True, command="compare")
            tally.add(i, load(run.path), run.seconds)
    print(tally)


if __name__ == "__main__":
    main()
