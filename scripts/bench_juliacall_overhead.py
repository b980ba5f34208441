"""The cost of one Python -> Julia call through juliacall, with a no-op Julia function.

    python scripts/bench_juliacall_overhead.py      (needs `python -m pybench setup-julia` first)

This is why the Flux backend samples inside Julia (PyBench.sample times each phase with `time_ns`):
a per-call cost of a few microseconds is measurable against the smallest phases (the per-layer
suite runs in tens of microseconds), so the clock must not straddle the language boundary.

The measurement runs in a child process started as a Flux worker is: the worker's juliacall
environment, and juliacall imported before numpy (`Flux.preload`).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

CHILD = "--child"


def measure() -> None:
    import juliacall  # before numpy (this process imports none): Julia's native libraries load first

    noop = juliacall.Main.seval("() -> nothing")
    noop()  # compile
    per_call = []
    for _ in range(20):
        n = 10_000
        t0 = time.perf_counter_ns()
        for _ in range(n):
            noop()
        per_call.append((time.perf_counter_ns() - t0) / n)
    print(f"juliacall no-op call: median {statistics.median(per_call) / 1e3:.2f} us "
          f"(min {min(per_call) / 1e3:.2f} us) over 20 x 10,000 calls")


def main() -> None:
    from pybench.backends.flux.julia_env import flux_availability, juliacall_env

    status = flux_availability()
    if not status.ok:
        raise SystemExit(f"flux unavailable: {status.reason}")
    env = {**os.environ, **juliacall_env(threads=1)}
    raise SystemExit(subprocess.run([sys.executable, __file__, CHILD], env=env).returncode)


if __name__ == "__main__":
    measure() if sys.argv[1:] == [CHILD] else main()
