"""False positives of `pybench diff`: how often two identical runs are called a regression.

    python scripts/bench_diff_false_positives.py [--pairs 10] [--model resnet18] [--image-size 64]
                                                 [--busy N] [--threshold 0.05] [--results DIR]

Runs N pairs of identical small runs (`pybench run --framework pytorch --model resnet18 --image-size
64 --batch-size 4 --rounds 3 --max-time 4 --device cpu`), `pybench diff`s each pair and counts exit
code 1, a regression that is not there (target: at most 1 pair in 20, diff's 5% family-wise level).
With `--busy N`, N busy-loop processes run during the second run of every pair: a real slowdown,
which diff should call "slower" (exit 1) in every pair.  Per pair it prints the exit code and the
phases diff did not call "same".
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from pybench.report import diff
from pybench.records import results
from pybench.cli.options import non_negative_int, positive_float, positive_int, results_dir
from pybench.protocol.workloads import WORKLOADS

from cli_run import busy, pybench_run  # beside this script

def changes(old: Path, new: Path, threshold: float) -> list[str]:
    """The phases diff does not call 'same', as 'model framework phase verdict ratio'."""
    rows = diff.compare_runs(results.collect([old]), results.collect([new]), threshold)
    return [f"{r.key.model} {r.key.framework} {r.phase or ''} {r.verdict}"
            + (f" x{r.ratio:.2f}" if r.ratio is not None else "") for r in rows if r.verdict != "same"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=positive_int, default=10)
    ap.add_argument("--model", default="resnet18", choices=list(WORKLOADS))
    ap.add_argument("--image-size", type=positive_int, default=64)
    ap.add_argument("--batch-size", type=positive_int, default=4)
    ap.add_argument("--rounds", type=positive_int, default=3)
    ap.add_argument("--max-time", type=positive_float, default=4.0)
    ap.add_argument("--busy", type=non_negative_int, default=0,
                    help="busy-loop processes during each second run")
    ap.add_argument("--threshold", type=positive_float, default=0.05, help="diff's threshold")
    ap.add_argument("--results", type=results_dir, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    cell = ["--framework", "pytorch", "--model", args.model, "--image-size", str(args.image_size),
            "--batch-size", str(args.batch_size), "--rounds", str(args.rounds),
            "--max-time", str(args.max_time), "--device", "cpu"]
    with tempfile.TemporaryDirectory(prefix="pybench-diff-") as tmp:
        root = args.results or Path(tmp)
        flagged = 0
        for i in range(1, args.pairs + 1):
            old = pybench_run(cell, root / f"pair{i}" / "old", quiet=True).path
            with busy(args.busy):
                new = pybench_run(cell, root / f"pair{i}" / "new", quiet=True).path
            code = subprocess.run([sys.executable, "-m", "pybench", "diff", str(old), str(new),
                                   "--threshold", str(args.threshold)], capture_output=True).returncode
            if code not in (0, 1):
                raise SystemExit(f"pybench diff exited with {code} on pair {i}")
            flagged += code == 1
            called = "; ".join(changes(old, new, args.threshold)) or "all same"
            print(f"pair {i}: diff exit {code}; {called}", flush=True)
    what = (f"slowdown detected ({args.busy} busy loops in every second run)" if args.busy
            else "false positives")
    print(f"{what}: {flagged} of {args.pairs} pairs exited 1 (threshold {args.threshold:.0%})")


if __name__ == "__main__":
    main()
