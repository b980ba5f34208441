"""Lockstep against back-to-back rounds: which gives a framework ratio more precision per second.

    python scripts/bench_lockstep.py [--pairs pytorch,pytorch pytorch,jax] [--models resnet18 resnet50]
                                     [--rounds 4] [--repeat 1] [--results DIR]

For every pair of frameworks and model it runs `pybench compare --framework A B --model M --rounds R
--device cpu` with lockstep rounds and with `--no-lockstep`, alternating the two (interleaved, so the
machine's drift hits both alike), and prints per phase the spread of the per-round log ratio (its
standard deviation over rounds), the wall seconds per round, and their product s^2 x seconds per
round: the variance of the mean ratio after one second of rounds, so smaller is better at equal wall
time.  The last column says which mode wins each phase.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np

from pybench.cli.options import positive_int, results_dir
from pybench.rounds.planning import round_logs
from pybench.records.results import load
from pybench.protocol.workloads import WORKLOADS

from cli_run import pybench_run  # beside this script

MODES = {"lockstep": ["--lockstep"], "back-to-back": ["--no-lockstep"]}


def spread(path: Path) -> tuple[dict[str, float], float]:
    """Per phase the sd of the per-round log ratio of the second record to the first, and the wall
    seconds per round."""
    doc = load(path)
    base, other = [r for r in doc.records if r.ok][:2]
    rounds = len(base.rounds)
    sds = {p: float(np.std(round_logs(other, base, p), ddof=1)) for p in base.phase_names}
    return sds, doc.environment["time"]["wall_s"] / rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+", default=["pytorch,pytorch", "pytorch,jax"])
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50"], choices=list(WORKLOADS))
    ap.add_argument("--rounds", type=positive_int, default=4)
    ap.add_argument("--repeat", type=positive_int, default=1, help="runs of each mode, interleaved")
    ap.add_argument("--results", type=results_dir, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pybench-lockstep-") as tmp:
        root = args.results or Path(tmp)
        for pair in args.pairs:
            for model in args.models:
                got: dict[str, list[tuple[dict[str, float], float]]] = {m: [] for m in MODES}
                for i in range(args.repeat):
                    for mode, extra in MODES.items():
                        cmd = ["--framework", *pair.split(","), "--model", model, "--rounds",
                               str(args.rounds), "--device", "cpu", *extra]
                        run = pybench_run(cmd, root / f"{pair}-{model}-{mode}-{i}", quiet=True,
                                          command="compare")
                        got[mode].append(spread(run.path))
                print(f"{pair} {model}:", flush=True)
                for phase in got["lockstep"][0][0]:
                    cost = {}
                    for mode, runs in got.items():
                        sd = math.sqrt(np.mean([r[0][phase] ** 2 for r in runs]))
                        per_round = float(np.mean([r[1] for r in runs]))
                        cost[mode] = sd ** 2 * per_round
                        print(f"  {phase:9s} {mode:12s} sd {sd:.2%} per round, {per_round:.0f} s a round, "
                              f"s^2 x s {cost[mode]:.2e}", flush=True)
                    print(f"  {phase:9s} better: {min(cost, key=cost.get)}", flush=True)


if __name__ == "__main__":
    main()
