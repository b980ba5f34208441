"""What the allocator setting (`--malloc`, pybench/machine/malloc.py) does to a framework's CPU
iterations: their time, their spread, and the page faults behind both.

    python scripts/bench_malloc.py [--framework jax pytorch] [--model resnet50] [--processes 3]
                                   [--iterations 10] [--batch-size 8] [--image-size 224] [--threads 2]

Each process is a fresh interpreter started with a round's worker environment for its setting
(`worker_environment`), so the setting reaches it as it reaches a worker.  It builds the backend, and
per phase group runs the first run and then `--iterations` iterations one at a time through the
backend's own sampler, counting each iteration's minor page faults.  Settings alternate within each
framework, their order swapped every time (`--processes` times), so drift falls on both alike;
a priming process per framework fills the compile cache first.  Prints, per framework, phase and
setting: the median iteration, the spread within a process (median over processes of the sd of the
log times), the slowest iteration over the median, and the median page faults per iteration of the
phase's group.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from pybench.machine.malloc import MALLOC
from pybench.protocol.phases import groups_of
from pybench.records.spec import CellSpec
from pybench.rounds.runner import worker_environment

def cell(framework: str, malloc: str, args: argparse.Namespace) -> CellSpec:
    return CellSpec(framework=framework, model=args.model, device="cpu", batch_size=args.batch_size,
                    image_size=args.image_size, threads=args.threads, malloc=malloc)


def one_process(spec: CellSpec, iterations: int) -> None:
    """In the child: one JSON line of {phase: [[seconds, faults of its group's iteration], ...]}."""
    from pybench.backends import get_framework

    backend = get_framework(spec.framework).load_backend()(spec)
    backend.prepare()
    sampler = backend.sampler()
    out: dict[str, list[list[float]]] = {}
    for group in groups_of(spec.phases):
        sampler.sample(group, 1)  # the first run: compilation, never a sample
        for _ in range(iterations):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            ns = sampler.sample(group, 1)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
            for phase, (t,) in ns.items():
                out.setdefault(phase, []).append([t * 1e-9, faults])
        sampler.finish(group)
    print(json.dumps(out), flush=True)


def spawn(args: argparse.Namespace, spec: CellSpec, cache: str) -> dict[str, list[list[float]]]:
    cmd = [sys.executable, __file__, "--child", spec.framework, spec.malloc, "--model", args.model,
           "--iterations", str(args.iterations), "--batch-size", str(args.batch_size),
           "--image-size", str(args.image_size), "--threads", str(args.threads)]
    done = subprocess.run(cmd, env=worker_environment(spec, Path(cache)), capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(processes: list[dict[str, list[list[float]]]], phase: str) -> str:
    times = [[t for t, _ in p[phase]] for p in processes]
    every = [t for ts in times for t in ts]
    median = statistics.median(every)
    spread = statistics.median(statistics.stdev(math.log(t) for t in ts) for ts in times)
    faults = statistics.median(f for p in processes for _, f in p[phase])
    return (f"median {median:.3f} s, spread {spread:.1%}, slowest {max(every) / median:.2f}x, "
            f"{faults:.0f} faults")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", nargs="+", default=["jax", "pytorch"])
    p.add_argument("--model", default="resnet50")
    p.add_argument("--processes", type=int, default=3)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", nargs=2, metavar=("FRAMEWORK", "MALLOC"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        one_process(cell(*args.child, args), args.iterations)
        return
    if args.iterations < 3 or args.processes < 1:
        p.error("--iterations must be at least 3 and --processes at least 1")
    runs: dict[tuple[str, str], list[dict[str, list[list[float]]]]] = {}
    with tempfile.TemporaryDirectory() as cache:
        for f in args.framework:
            spawn(args, cell(f, MALLOC[0], args), cache)  # the priming process: fills the cache, not counted
        for i in range(args.processes):
            for f in args.framework:
                for malloc in MALLOC if i % 2 else MALLOC[::-1]:
                    got = spawn(args, cell(f, malloc, args), cache)
                    runs.setdefault((f, malloc), []).append(got)
                    print(f"{f} {malloc}:", "; ".join(f"{ph} {' '.join(f'{t:.2f}' for t, _ in v)}"
                                                     for ph, v in got.items()), flush=True)
    for f in args.framework:
        print(f"\n{f}, {args.processes} processes a setting, {args.iterations} iterations each")
        for phase in runs[(f, MALLOC[0])][0]:
            for malloc in MALLOC:
                print(f"  {phase:10s} {malloc:7s} {summary(runs[(f, malloc)], phase)}")


if __name__ == "__main__":
    main()
