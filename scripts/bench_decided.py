"""Decided answers: what `pybench compare` concludes, how sure, and where its wall time goes.

    python scripts/bench_decided.py [--repeat 1] [--busy-after S] [--results DIR] -- COMPARE-ARGS...

Runs `python -m pybench compare COMPARE-ARGS` (e.g. `--model resnet50 --device cpu`, default options
otherwise) `--repeat` times and prints, per run: its wall time, rounds (and how many were set aside
because other work ran), the share of the rounds' wall time in timed iterations, and per phase every
framework's ratio to the first with its interval, the interval's half-width, and whether it is
decided (`Ratio.decided`: known within +-10%), and the seconds per round pair outside samples (each
framework's median round from `Round.anatomy`, summed).  The last line sums the runs up: how many had every phase decided and within +-10%, and, for an A/A
control (`--framework pytorch pytorch`), how many intervals contained 1 and how many runs called
some phase "faster" or "slower" (false calls).  `--busy-after S` starts one
busy-loop process S seconds into every run (drift in the middle of a run).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pybench.cli.options import non_negative_int, positive_float, positive_int, results_dir
from pybench.records.record import CellRecord
from pybench.records.results import load
from pybench.records.ratios import Ratio
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=positive_int, default=1)
    ap.add_argument("--busy-after", type=positive_float, help="start a busy loop this many seconds in")
    ap.add_argument("--busy", type=non_negative_int, default=1, help="busy loops with --busy-after")
    ap.add_argument("--results", type=results_dir, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("compare", nargs=argparse.REMAINDER, help="arguments of pybench compare, after --")
    args = ap.parse_args()
    cmp_args = [a for a in args.compare if a != "--"]
    decided_runs = contains_one = intervals = called_runs = 0
    with tempfile.TemporaryDirectory(prefix="pybench-decided-") as tmp:
        root = args.results or Path(tmp)
        for i in range(1, args.repeat + 1):
            with busy(args.busy if args.busy_after else 0, args.busy_after or 0.0):
                run = pybench_run(cmp_args, root / f"run{i}", quiet=True, command="compare")
            doc = load(run.path)
            share = (doc.environment.get("time") or {}).get("timed_share")
            rounds = max((len(r.rounds) for r in doc.records if r.ok), default=0)
            aside = max((len(r.set_aside) for r in doc.records if r.ok), default=0)
            outside = anatomy_rows(doc.records)
            pair = " + ".join(f"{r.label} {r.outside:.1f}" for r in outside)
            print(f"run {i}: {run.seconds:.0f} s wall, {rounds} rounds ({aside} set aside: other work), "
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
                intervals += 1
                contains_one += ratio.ci_low <= 1 <= ratio.ci_high
                called |= ratio.verdict() in (Verdict.FASTER, Verdict.SLOWER)
                print(f"  {who} {phase}: {ratio.value:.3f} [{ratio.ci_low:.3f}, {ratio.ci_high:.3f}] "
                      f"+-{half:.1%} {ratio.verdict()}{'' if decided else ' UNDECIDED'}", flush=True)
            decided_runs += all_decided
            called_runs += called
    print(f"{decided_runs} of {args.repeat} runs had every phase decided within +-{TARGET:.0%}; "
          f"{contains_one} of {intervals} intervals contain 1; {called_runs} of {args.repeat} runs called "
          f"some phase faster or slower (an A/A control: false calls)")


if __name__ == "__main__":
    main()
