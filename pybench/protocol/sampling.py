"""How a backend's iterations are run and timed: the `Sampler` the protocol drives, and the Python
loop most backends use (Flux's sampler runs its loop in Julia).  Each sample is bracketed as
synchronize -> clock -> run -> synchronize -> clock, so queued device work can neither leak into nor
escape from the timed region."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol


class Sampler(Protocol):
    """Runs `n` iterations of a group and returns raw ns per iteration, keyed by measured phase."""

    def sample(self, group: str, n: int) -> dict[str, list[int]]: ...
    def finish(self, group: str) -> None: ...  # untimed: release what the group held (gradients)


@dataclass(frozen=True)
class Loop:
    """One iteration of a group as a backend runs it from Python: untimed set-up, then timed phases."""

    phases: tuple[tuple[str, Callable[[], None]], ...]
    before: Callable[[], None] = lambda: None
    finish: Callable[[], None] = lambda: None


class PythonLoopSampler:
    """Times a backend's loops from Python with a monotonic ns clock."""

    def __init__(self, loops: Mapping[str, Loop], synchronize: Callable[[], None]) -> None:
        self.loops = loops
        self.synchronize = synchronize

    def sample(self, group: str, n: int) -> dict[str, list[int]]:
        loop, sync, clock = self.loops[group], self.synchronize, time.perf_counter_ns
        out: dict[str, list[int]] = {name: [] for name, _ in loop.phases}
        for _ in range(n):
            loop.before()  # untimed: e.g. gradients cleared so nothing accumulates
            sync()
            t0 = clock()
            for name, run in loop.phases:
                run()
                sync()
                t1 = clock()
                out[name].append(t1 - t0)
                t0 = t1
        return out

    def finish(self, group: str) -> None:
        self.loops[group].finish()
