"""How many iterations after a first run a framework's CPU samples take to settle, and what a round's
median gains from a warm-up iteration.

    python scripts/bench_warmup.py [--framework jax pytorch] [--model resnet50] [--processes 4]
                                   [--iterations 12] [--batch-size 8] [--image-size 224] [--threads 2]
                                   [--groups train step inference]

Each process is a fresh interpreter, as a round's worker is: it builds the backend, runs every phase
group's first run and then `--iterations` timed iterations through the backend's own sampler (no
protocol, no warm-up), with the compilation cache a priming process filled, as every counted round
has it.  Processes of the frameworks alternate.  Prints each process's iterations, then per phase
the spread between processes (sd of the log) of a round's median of 4 samples taken right after the
first run, of 6, and of 4 after one warm-up iteration: the `CPU_WARMUP_MIN` choice in
`pybench/protocol/group.py`.  `--groups inference` runs that group alone, as a round that measures
only it would: compared with the full order it shows whether a group's times depend on what ran
before it in the process.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from pybench.protocol.phases import PHASES, groups_of
from pybench.records.spec import CellSpec
from pybench.rounds.runner import worker_environment

ALL_GROUPS = groups_of(list(PHASES))  # in the protocol's order
POLICIES = (("4 right after the first run", 0, 4), ("6 right after", 0, 6), ("4 after one warm-up", 1, 4))


def cell(framework: str, args: argparse.Namespace) -> CellSpec:
    return CellSpec(framework=framework, model=args.model, device="cpu", batch_size=args.batch_size,
                    image_size=args.image_size, threads=args.threads)


def one_process(spec: CellSpec, iterations: int, groups: list[str]) -> None:
    """Run in the child: print one JSON line of seconds per iteration by phase; index 0 is the first run."""
    from pybench.backends import get_framework

    backend = get_framework(spec.framework).load_backend()(spec)
    backend.prepare()
    sampler = backend.sampler()
    out: dict[str, list[float]] = {}
    for group in groups:
        first = sampler.sample(group, 1)
        rest = sampler.sample(group, iterations)
        sampler.finish(group)
        for phase, ns in rest.items():
            out[phase] = [x * 1e-9 for x in first[phase] + ns]
    if "forward" in out and "backward" in out:
        out["total"] = [a + b for a, b in zip(out["forward"], out["backward"])]
    print(json.dumps({"framework": spec.framework, "seconds": out}), flush=True)


def spawn(args: argparse.Namespace, framework: str, cache: str) -> dict:
    env = worker_environment(cell(framework, args), Path(cache))  # what a round's worker starts with
    cmd = [sys.executable, __file__, "--child", framework, "--model", args.model, "--iterations",
           str(args.iterations), "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
           "--threads", str(args.threads), "--groups", *args.groups]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def spread(runs: list[dict[str, list[float]]], phase: str, warm: int, n: int) -> float:
    logs = [math.log(statistics.median(r[phase][1 + warm:1 + warm + n])) for r in runs]
    return statistics.stdev(logs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", nargs="+", default=["jax", "pytorch"])
    p.add_argument("--model", default="resnet50")
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--iterations", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--groups", nargs="+", choices=ALL_GROUPS, default=ALL_GROUPS)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        one_process(cell(args.child, args), args.iterations, [g for g in ALL_GROUPS if g in args.groups])
        return
    if args.iterations < 7 or args.processes < 2:
        p.error("--iterations must be at least 7 and --processes at least 2")
    runs: dict[str, list[dict[str, list[float]]]] = {f: [] for f in args.framework}
    with tempfile.TemporaryDirectory() as cache:
        for f in args.framework:
            spawn(args, f, cache)  # the priming process: fills the cache, not counted
        for _ in range(args.processes):
            for f in args.framework:
                got = spawn(args, f, cache)["seconds"]
                runs[f].append(got)
                print(f, " ".join(f"{p}: {' '.join(f'{x:.2f}' for x in v)}" for p, v in got.items()), flush=True)
    for f, rs in runs.items():
        print(f"\n{f}: spread between processes of a round's median (sd of the log), {len(rs)} processes")
        for phase in rs[0]:
            print(f"  {phase:10s}", "; ".join(f"{name} {spread(rs, phase, w, n):.1%}" for name, w, n in POLICIES))


if __name__ == "__main__":
    main()
