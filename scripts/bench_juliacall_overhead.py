"""The cost of one Python -> Julia call through juliacall, with a no-op Julia function.

    python scripts/bench_juliacall_overhead.py      (needs `python -m pybench setup-julia` first)

This is why the Flux backend samples inside a Julia loop (PyBench.sample_train/sample_inference):
a per-call cost of a few microseconds is measurable against the smallest phases (the per-layer
suite runs in tens of microseconds), so the clock must not straddle the language boundary.
"""

from __future__ import annotations

import statistics
import time

from pybench.backends.flux import start_julia
from pybench.julia_env import flux_availability
from pybench.spec import available_cores


def main() -> None:
    status = flux_availability()
    if not status.ok:
        raise SystemExit(f"flux unavailable: {status.reason}")
    start_julia(available_cores())
    from juliacall import Main as jl

    noop = jl.seval("() -> nothing")
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


if __name__ == "__main__":
    main()
