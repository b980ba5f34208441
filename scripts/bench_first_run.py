"""First run: what the first iteration of each phase group costs (JAX: tracing and XLA compilation).

    python scripts/bench_first_run.py [--framework jax] [--models all] [--image-size 224]
                                      [--max-time 5] [--results DIR]

Runs `pybench run --framework F --model ... --device cpu --rounds 1` (a short sampling budget: only
the first iteration matters here) and prints, per model and group, the record's first run
(`CellRecord.first_run`; train = forward + backward) beside the steady-state estimate (the mean
per round), so the compilation cost reads as first run minus that.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pybench.backends import FRAMEWORKS
from pybench.cli.options import positive_float, positive_int, results_dir
from pybench.records.record import CellRecord
from pybench.report.format import fmt_duration

from cli_run import pybench_run  # beside this script

GROUPS = (("train", "total"), ("step", "step"), ("inference", "inference"))  # group, its headline phase


def row(record: CellRecord) -> list[str]:
    """'first run (steady)' per group; total's first run is the sum of forward's and backward's."""
    cells = []
    for _, phase in GROUPS:
        if phase not in record.phase_names:
            cells.append("")
            continue
        first, steady = record.first_run(phase), record.estimate(phase).value
        cells.append(f"{fmt_duration(first)} ({fmt_duration(steady)})")
    return cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", default="jax", choices=list(FRAMEWORKS))
    ap.add_argument("--models", nargs="+", default=["all"], help="model names or all")
    ap.add_argument("--image-size", type=positive_int, default=224)
    ap.add_argument("--batch-size", type=positive_int, help="default: the model's (8 on the CPU)")
    ap.add_argument("--max-time", type=positive_float, default=5.0, help="seconds of sampling per cell")
    ap.add_argument("--results", type=results_dir, help="keep the run here (default: a temporary folder)")
    args = ap.parse_args()
    cmd = ["--framework", args.framework, "--model", *args.models, "--device", "cpu", "--rounds", "1",
           "--image-size", str(args.image_size), "--max-time", str(args.max_time)]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    with tempfile.TemporaryDirectory(prefix="pybench-first-run-") as tmp:
        run = pybench_run(cmd, args.results or Path(tmp), quiet=True)
        records = run.records
    print(f"first run (steady-state mean) per group: {args.framework}, cpu, {args.image_size}x"
          f"{args.image_size}; {run.seconds:.0f} s in all")
    header = ["model", *(group for group, _ in GROUPS)]
    table = [header] + [[r.spec.model, *(row(r) if r.ok else [f"{r.status}: {r.error}", "", ""])]
                        for r in records]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())


if __name__ == "__main__":
    main()
