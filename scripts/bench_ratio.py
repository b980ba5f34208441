"""Time to a framework ratio: how soon `compare` pins JAX/PyTorch down to +-5% on one model.

    python scripts/bench_ratio.py [--frameworks pytorch jax] [--model resnet18] [--rounds 6]
                                  [--max-time 15] [--batch-size 8] [--image-size 224] [--results DIR]
                                  [--label NAME]

Runs the `compare` matrix of one model on the CPU (batch 8, 224x224, every core) through
`runner.run_matrix`, the frameworks back to back in alternating order each round.  After every
round it prints the elapsed time and, per phase, each framework's ratio to the first one
(`statistics.paired_ratio`, one number per round and framework) with its 95% interval's half-width.
It then says when every phase's interval first reached +-5% and how long that took.  One round's
interval describes that process only, so the target counts from two rounds on.  Target: +-5%
within 2 minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from pybench import environment, results, runner
from pybench.backends import FRAMEWORKS
from pybench.options import label_text, positive_float, positive_int, results_dir
from pybench.protocol import StopRule
from pybench.records import CellRecord
from pybench.spec import CellSpec
from pybench.statistics import Ratio, paired_ratio
from pybench.workloads import WORKLOADS

TARGET = 0.05
TARGET_SECONDS = 120.0


def half_width(r: Ratio) -> float | None:
    """The interval's larger distance from the ratio, relative (log intervals are asymmetric)."""
    if r.ci_low is None or r.ci_high is None:
        return None
    return max(r.ci_high / r.value - 1, 1 - r.ci_low / r.value)


def ratios(base: CellRecord, other: CellRecord) -> dict[str, Ratio] | None:
    """other/base per phase, rounds paired by index; None when a failed round left them unpaired."""
    if len(base.rounds) != len(other.rounds):
        return None
    return {p: paired_ratio(other.samples(p), base.samples(p)) for p in base.phase_names}


def within_target(table: dict[str, Ratio]) -> bool:
    return all(r.between_rounds and (w := half_width(r)) is not None and w <= TARGET for r in table.values())


def describe(r: Ratio) -> str:
    w = half_width(r)
    return f"{r.value:.3f} ({'no interval' if w is None else f'+-{w:.1%}'})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frameworks", nargs="+", default=["pytorch", "jax"], choices=list(FRAMEWORKS),
                    help="the first is the denominator of every ratio")
    ap.add_argument("--model", default="resnet18", choices=list(WORKLOADS))
    ap.add_argument("--rounds", type=positive_int, default=6)
    ap.add_argument("--max-time", type=positive_float, default=15.0, help="seconds of sampling per round")
    ap.add_argument("--batch-size", type=positive_int, default=8)
    ap.add_argument("--image-size", type=positive_int, default=224)
    ap.add_argument("--results", type=results_dir,
                    help="keep the run here (default: a temporary folder, so reports never pick it up)")
    ap.add_argument("--label", type=label_text)
    args = ap.parse_args()
    frameworks = list(dict.fromkeys(args.frameworks))
    if len(frameworks) < 2:
        ap.error("a ratio needs two frameworks")

    env = environment.capture(args.label)
    specs = [CellSpec(fw, args.model, "cpu", batch_size=args.batch_size, image_size=args.image_size,
                      device_name=env["cpu"], label=env["label"], stop=StopRule(max_time=args.max_time))
             for fw in frameworks]
    for spec in specs:
        reason = runner.skip_reason(spec)
        if reason:
            ap.error(reason)
    tmp = tempfile.TemporaryDirectory(prefix="pybench-ratio-")
    store = results.ResultsFile.create(args.results or Path(tmp.name), env, sys.argv)
    print(f"{' / '.join(frameworks[1:])} over {frameworks[0]}: {args.model}, batch {args.batch_size}, "
          f"{args.image_size}x{args.image_size}, cpu, {specs[0].threads} threads, up to {args.rounds} "
          f"rounds of {args.max_time:g} s; ratio (95% interval half-width)")
    latest: dict[str, CellRecord] = {}
    reached: tuple[int, float] | None = None
    start = time.monotonic()

    def finished(record: CellRecord, round_no: int) -> None:
        nonlocal reached
        latest[record.spec.framework] = record
        # run_matrix runs a cell's frameworks in alternating order (A B, B A, ...): the round is
        # complete when the last of this round's order has finished.
        if record.spec.framework != (frameworks[-1] if round_no % 2 else frameworks[0]):
            return
        elapsed = time.monotonic() - start
        print(f"round {round_no}, {elapsed:6.0f} s:")
        tables = []
        for fw in frameworks[1:]:
            base, other = latest[frameworks[0]], latest[fw]
            table = ratios(base, other) if base.ok and other.ok else None
            if table is None:
                print(f"  {fw}: {other.error or base.error or 'a failed round left the rounds unpaired'}")
                continue
            tables.append(table)
            print(f"  {fw}: " + ", ".join(f"{p} {describe(r)}" for p, r in table.items()))
        if reached is None and len(tables) == len(frameworks) - 1 and all(map(within_target, tables)):
            reached = (round_no, elapsed)

    with tmp:
        runner.run_matrix(specs, store, rounds=args.rounds, events=runner.MatrixEvents(finished=finished))
    if args.results:
        print(f"results: {store.path}")
    if reached is None:
        print(f"every phase's ratio interval within +-{TARGET:.0%}: not reached in {args.rounds} rounds")
    else:
        verdict = "met" if reached[1] <= TARGET_SECONDS else "missed"
        print(f"every phase's ratio interval within +-{TARGET:.0%} after round {reached[0]}, "
              f"{reached[1]:.0f} s ({verdict}: target {TARGET_SECONDS:.0f} s)")


if __name__ == "__main__":
    main()
