"""Figures of `pybench history --check`: false alarms over identical code, and the slowdowns it finds.

    python scripts/bench_history.py collect DIR [--runs 30] [--rounds 3] [--slow-env NAME=VALUE] [--slow-every 3]
                                            [--image-size 64] [--batch-size 2]
    python scripts/bench_history.py figures DIR [--scaled 1.1 1.3] [--threshold 0.05]
    python scripts/bench_history.py simulate [--between 0.03 0.05 0.08] [--within 0.05] [--trials 2000]

`collect` makes --runs small runs of one cell into DIR/base, one after another (`pybench run
--framework pytorch --model resnet18 --image-size 64 --batch-size 2 --device cpu --rounds 3
--max-time 5`, or at the --image-size and --batch-size given; --rounds sets the rounds a run, which carry its own share of the spread between runs), and after every --slow-every of them one run into DIR/slow under the extra
environment --slow-env (e.g. ONEDNN_MAX_CPU_ISA=AVX2: oneDNN limited to an older instruction set,
which keeps the cell identity and runs no extra process the noise audit would see).  `uptime` before
each run goes to DIR/uptime.log.  `pybench` runs from the current folder: a fixed checkout (a git
worktree) measures one code while others edit theirs.

`figures` checks the runs oldest first as a nightly job would:
- false alarms: base run j against the n base runs before it, n cycling through 4..10, for every run
  with at least 10 before it (20 checks from 30 runs); any "slower" is a false alarm (target 0 of 20);
- scaled slowdowns: the same runs with every sample multiplied by each --scaled factor, against the 5
  runs before them: real noise and an exact slowdown (target: found in >= 9 of 10 at 1.3);
- real slowdowns: each run of DIR/slow against the 5 base runs made just before it.

`simulate` draws scripted histories instead (no run): five phases of one cell sharing each run's
factor (log-normal, --between), three rounds a run with their own noise (--within), and counts
false alarms (histories of 4-10 runs, identical code) and slowdowns found (history of 5 runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from cli_run import pybench_run  # beside this script

CELL = ["--framework", "pytorch", "--model", "resnet18", "--device", "cpu"]
FIRST_CHECK = 10  # runs before the first check: the history may reach 10 runs
HISTORIES = range(4, 11)  # history lengths the false-alarm checks cycle through
DETECT_HISTORY = 5


def _one(args: argparse.Namespace, folder: str, env: dict[str, str]) -> None:
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        run = pybench_run([*CELL, "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
                           "--rounds", str(args.rounds), "--max-time", str(args.max_time)], args.dir / folder, quiet=True)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    with (args.dir / "uptime.log").open("a") as f:
        f.write(f"{folder}/{run.path.name}\t{run.seconds:.0f} s\t{env}\t{load}\n")
    print(f"{folder}/{run.path.name} in {run.seconds:.0f} s ({load})", flush=True)


def collect(args: argparse.Namespace) -> None:
    name, _, value = (args.slow_env or "").partition("=")
    args.dir.mkdir(parents=True, exist_ok=True)
    for i in range(1, args.runs + 1):
        _one(args, "base", {})
        if name and i % args.slow_every == 0:
            _one(args, "slow", {name: value})


def _scaled(doc, factor: float):
    """The document with every timed sample multiplied by `factor` (the noise stays the run's own)."""
    def phase(p):
        return dataclasses.replace(p, samples=[s * factor for s in p.samples])

    records = [dataclasses.replace(r, rounds=[dataclasses.replace(ro, phases={k: phase(v) for k, v in ro.phases.items()})
                                              for ro in r.rounds]) for r in doc.records]
    return dataclasses.replace(doc, records=records)


def _verdict(history, new, threshold: float) -> tuple[bool, str]:
    """(exit 1?, the phases called slower or faster with their ratio)."""
    from pybench.records.statistics import Verdict
    from pybench.report.history import check

    judged, whole = check(history, new, threshold)
    alarm = any(j.verdict == Verdict.SLOWER for j in judged) or any(w.verdict == Verdict.BROKEN for w in whole)
    said = [f"{j.history.phase} {j.verdict} x{j.ratio:.2f}" for j in judged if j.verdict != Verdict.INCONCLUSIVE]
    return alarm, ", ".join(said) or f"all inconclusive (x{max(j.ratio for j in judged):.2f} at most)"


def figures(args: argparse.Namespace) -> None:
    from pybench.records.results import collect as load_all
    from pybench.report.selection import _created

    base = sorted(load_all([args.dir / "base"]), key=_created)
    print(f"{len(base)} runs in {args.dir / 'base'}")
    alarms = checks = 0
    for j in range(FIRST_CHECK, len(base)):
        n = HISTORIES[(j - FIRST_CHECK) % len(HISTORIES)]
        alarm, said = _verdict(base[j - n:j], [base[j]], args.threshold)
        alarms, checks = alarms + alarm, checks + 1
        print(f"identical code, history {n:2d}: {'ALARM ' if alarm else ''}{said}")
    print(f"false alarms: {alarms} of {checks} checks of identical code (history of 4-10 runs)")
    for factor in args.scaled:
        found = total = 0
        for j in range(FIRST_CHECK, len(base)):
            alarm, said = _verdict(base[j - DETECT_HISTORY:j], [_scaled(base[j], factor)], args.threshold)
            found, total = found + alarm, total + 1
            print(f"scaled x{factor:g}: {'found ' if alarm else 'missed'} {said}")
        print(f"slowdown x{factor:g} (samples scaled): found in {found} of {total} checks (history of {DETECT_HISTORY})")
    if not (args.dir / "slow").is_dir():
        return
    found = total = 0
    for doc in sorted(load_all([args.dir / "slow"]), key=_created):
        before = [b for b in base if _created(b) <= _created(doc)][-DETECT_HISTORY:]
        alarm, said = _verdict(before, [doc], args.threshold)
        found, total = found + alarm, total + 1
        print(f"slow run {doc.path.name}: {'found ' if alarm else 'missed'} {said}")
    print(f"real slowdown: found in {found} of {total} checks (history: the {DETECT_HISTORY} base runs before each)")


def _simulated(rng, n: int, between: float, within: float, factor: float = 1.0):
    """One cell's five phases over n runs, as history.Series of synthetic runs."""
    from datetime import datetime, timezone

    from pybench.report.history import Run, Series
    from pybench.records.spec import CellKey

    key = CellKey("resnet18", "cpu", "CPU", "sim", 2, 64, "fp32", 2, False, "pytorch")
    levels = factor * np.exp(rng.normal(0, between, n))
    out = []
    for phase in ("forward", "backward", "total", "inference", "step"):
        runs = []
        for i, level in enumerate(levels):
            rounds = tuple(level * np.exp(rng.normal(0, within, 3)))
            runs.append(Run("sim", datetime.fromtimestamp(i, timezone.utc), float(np.exp(np.mean(np.log(rounds)))),
                            None, None, rounds))
        out.append(Series(key, phase, "sim", tuple(runs)))
    return out


def simulate(args: argparse.Namespace) -> None:
    from pybench.records.statistics import Verdict
    from pybench.report.history import judge_runs

    rng = np.random.default_rng(26)
    for between in args.between:
        alarms = 0
        for t in range(args.trials):
            n = HISTORIES[t % len(HISTORIES)]
            series = _simulated(rng, n + 1, between, args.within)
            pairs = [(dataclasses.replace(s, runs=s.runs[:-1]), s.runs[-1:]) for s in series]
            alarms += any(j.verdict == Verdict.SLOWER for j in judge_runs(pairs, args.threshold, args.confidence))
        line = [f"level {args.confidence:.0%}, run spread {between:.0%}, rounds {args.within:.0%}: "
                f"false alarms {alarms / args.trials:.2%}"]
        for factor in args.scaled:
            found = 0
            for _ in range(args.trials):
                history = _simulated(rng, DETECT_HISTORY, between, args.within)
                new = _simulated(rng, 1, between, args.within, factor)
                found += any(j.verdict == Verdict.SLOWER
                             for j in judge_runs([(h, s.runs) for h, s in zip(history, new)], args.threshold,
                                                 args.confidence))
            line.append(f"x{factor:g} found {found / args.trials:.0%}")
        print(", ".join(line) + f" ({args.trials} trials each)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("collect", help="make identical small runs into a folder")
    c.add_argument("dir", type=Path)
    c.add_argument("--runs", type=int, default=30)
    c.add_argument("--rounds", type=int, default=3, help="rounds a run")
    c.add_argument("--slow-env", help="NAME=VALUE under which the slow runs run")
    c.add_argument("--slow-every", type=int, default=3, help="one slow run after every N base runs")
    c.add_argument("--max-time", type=float, default=5.0)
    c.add_argument("--image-size", type=int, default=64, help="of the resnet18 cell (224: the standard one)")
    c.add_argument("--batch-size", type=int, default=2)
    f = sub.add_parser("figures", help="check the runs as a nightly job would and count the verdicts")
    f.add_argument("dir", type=Path)
    f.add_argument("--scaled", type=float, nargs="*", default=[1.1, 1.3])
    f.add_argument("--threshold", type=float, default=0.05)
    m = sub.add_parser("simulate", help="scripted histories: false alarms and slowdowns found")
    m.add_argument("--between", type=float, nargs="*", default=[0.02, 0.03, 0.05, 0.08])
    m.add_argument("--within", type=float, default=0.05)
    m.add_argument("--trials", type=int, default=2000)
    m.add_argument("--scaled", type=float, nargs="*", default=[1.1, 1.3])
    m.add_argument("--threshold", type=float, default=0.05)
    m.add_argument("--confidence", type=float, default=None, help="the check's level (default: history's)")
    args = ap.parse_args()
    if args.what == "simulate" and args.confidence is None:
        from pybench.report.history import CONFIDENCE

        args.confidence = CONFIDENCE
    {"collect": collect, "figures": figures, "simulate": simulate}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())
