"""Time to result: the seed's whole CPU matrix under pybench's adaptive protocol.

    python scripts/bench_time_to_result.py [--results results] [--label NAME]

Runs `pybench run --framework pytorch --model all --device cpu` (9 models x 4 phases, batch 8,
224x224, default precision), times it end to end, and estimates from the measured medians what the
seed's fixed protocol (100 timed training iterations and 100 inference iterations per model) would
have taken for the same cells.  Target: under 15 minutes on 2 cores, against over an hour.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from pybench import results

SEED_ITERATIONS = 100


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--label", default=None)
    args = ap.parse_args()
    before = set(args.results.glob("*.json"))
    cmd = [sys.executable, "-m", "pybench", "run", "--framework", "pytorch", "--model", "all",
           "--device", "cpu", "--results", str(args.results)]
    if args.label:
        cmd += ["--label", args.label]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    elapsed = time.monotonic() - t0
    (new,) = set(args.results.glob("*.json")) - before
    records = results.load(new)["records"]
    seed = sum(SEED_ITERATIONS * (r["phases"]["total"]["stats"]["median"]
                                  + r["phases"]["inference"]["stats"]["median"])
               for r in records if r["status"] == "ok")
    noisy = [r["spec"]["model"] for r in records if r.get("noisy")]
    print(f"pybench matrix: {elapsed / 60:.1f} min for {len(records)} cells ({new})")
    print(f"seed's fixed 100-iteration protocol, same cells: {seed / 60:.1f} min (estimated from medians)")
    print(f"cells flagged noisy: {', '.join(noisy) or 'none'}")


if __name__ == "__main__":
    main()
