"""Time to result: the seed's whole CPU matrix under pybench's protocol, end to end.

    python scripts/bench_time_to_result.py [--framework pytorch jax] [--rounds R] [--results DIR]
                                           [--label NAME]

Runs `python -m pybench run --framework ... --model all --device cpu --rounds R` (9 models x 5
phases, batch 8, 224x224, default precision and time limit per round), times it end to end, and
prints the cells, rounds per cell, each cell's quality per phase (precise, noisy, too few samples),
and what the seed's fixed protocol (100 timed training iterations and 100 inference iterations per
model) would have taken for the same cells, estimated from pybench's estimates.  Target for PyTorch
alone: under 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
from collections import Counter

from pybench.backends import FRAMEWORKS
from pybench.limits import DEFAULT_RESULTS, RUN_ROUNDS
from pybench.cli.options import label_text, positive_int, results_dir
from pybench.records.record import CellRecord

from cli_run import pybench_run  # beside this script

SEED_ITERATIONS = 100
QUALITIES = ("precise", "noisy", "too_few_samples")


def seed_seconds(records: list[CellRecord]) -> float:
    """The seed's fixed protocol on these cells: 100 train (forward + backward) and 100 inference
    iterations, from the estimates."""
    return sum(SEED_ITERATIONS * (r.estimate("total").value + r.estimate("inference").value)
               for r in records if r.ok and {"total", "inference"} <= set(r.phase_names))


def qualities(record: CellRecord) -> Counter[str]:
    return Counter(record.quality(p) for p in record.phase_names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", nargs="+", default=["pytorch"], choices=list(FRAMEWORKS))
    ap.add_argument("--rounds", type=positive_int, default=RUN_ROUNDS)
    ap.add_argument("--results", type=results_dir, default=DEFAULT_RESULTS)
    ap.add_argument("--label", type=label_text)
    args = ap.parse_args()
    cmd = ["--framework", *args.framework, "--model", "all", "--device", "cpu", "--rounds", str(args.rounds)]
    run = pybench_run(cmd + (["--label", args.label] if args.label else []), args.results)
    records = run.records
    ok = [r for r in records if r.ok]
    print(f"pybench matrix: {run.seconds / 60:.1f} min for {len(records)} cells ({len(ok)} ok) -> {run.path}")
    print(f"seed's fixed 100-iteration protocol, same cells: {seed_seconds(ok) / 60:.1f} min "
          "(estimated from pybench's estimates)")
    total: Counter[str] = Counter()
    for r in records:
        if not r.ok:
            print(f"  {r.spec.framework:8s} {r.spec.model:10s} {r.status}: {r.error}")
            continue
        q = qualities(r)
        total += q
        counts = ", ".join(f"{name} {q[name]}" for name in QUALITIES)
        print(f"  {r.spec.framework:8s} {r.spec.model:10s} {len(r.rounds)} rounds, {r.wall_time:6.1f} s; "
              f"phases: {counts}")
    print("all phases: " + ", ".join(f"{name} {total[name]}" for name in QUALITIES))


if __name__ == "__main__":
    main()
