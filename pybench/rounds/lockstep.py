"""Lockstep rounds: the frameworks (or variants) of a cell start together, each in its own fresh
worker pinned to the same cores, and after every worker's first runs take turns running blocks of
about a second (A B B A ...), the waiting worker blocked on its pipe.

Back-to-back rounds let the machine drift between one framework's process and the next (5-13% here);
in lockstep the two see the same machine within a second, so their per-round ratio (from the block
pairs, `ratios.round_log_ratio`) carries little of that drift.  First runs go one worker at a
time, so compile times are not inflated by the other worker; imports and model builds overlap.  On a
GPU all workers of a cell hold their model and buffers on the device at once: the cell needs the sum of
their memory, and the peak-memory figures of each stay its own.

Opt-in (`--lockstep`): on the reference VM the per-round ratio did not come out steadier than from
back-to-back rounds (scripts/bench_lockstep.py, docs/validation.md), and its rounds took longer; what a process
pair adds dominates there, and only more rounds average it out.
"""

from __future__ import annotations

import json
import math
import os
import queue
import subprocess
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Callable

from pybench.rounds.interpreter import worker_command
from pybench.machine.lifetime import die_with_parent, interruptible, kill_group
from pybench.rounds.planning import fit_samples
from pybench.protocol.group import INITIAL_GROUP_S, group_cap
from pybench.protocol.phases import groups_of
from pybench.records.record import CellRecord, Malformed
from pybench.rounds.runner import exit_reason, worker_environment
from pybench.records.spec import CellSpec

BLOCK_S = 1.0  # a block is about this long (at least one iteration)


class WorkerGone(Exception):
    """The worker ended or stopped answering; the message says why."""


class Member:
    """One framework's worker in a lockstep round, spoken to in JSON lines."""

    def __init__(self, spec: CellSpec, cache_dir: Path | None) -> None:
        self.spec = spec
        env = worker_environment(spec, cache_dir)
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a file: chatter can never fill a pipe
        self.spawned = time.time()  # the round's timeline counts from here
        self.proc = subprocess.Popen(
            worker_command(spec), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, text=True, env=env, start_new_session=True,
            preexec_fn=partial(die_with_parent, os.getpid()))
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.record: CellRecord | None = None  # the final (or failed) record
        self.cost: dict[str, float] = {}  # seconds per iteration of each group's headline phase
        self.send({"spec": spec.to_json(), "serve": True, "spawned": self.spawned})

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, message: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the worker is gone: the next receive says why

    def receive(self, key: str, timeout: float) -> object:
        """The reply's `key`.  A record where something else was expected is the worker's failure."""
        try:
            with interruptible():  # a signal stops a round under way; the caller saves a finished one
                line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise WorkerGone(f"no answer within {timeout:.0f} s (hung?); worker killed") from None
        if line is None:
            raise WorkerGone(self._exit_reason())
        try:
            message = json.loads(line)
            if "record" in message:
                self.record = CellRecord.from_json(message["record"], "worker record")
            value = message[key]
        except (json.JSONDecodeError, KeyError, TypeError, Malformed):
            if self.record is not None and not self.record.ok:
                raise WorkerGone(self.record.error or "the worker failed") from None
            raise WorkerGone("worker returned no valid JSON reply") from None
        return value

    def _exit_reason(self) -> str:
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return "worker closed its output but did not exit"
        return exit_reason(code, self.stderr_text())

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()

    def close(self) -> None:
        kill_group(self.proc)
        self.proc.wait()
        self.stderr.close()


def _block_plan(costs: list[float], samples: int) -> tuple[int, list[int]]:
    """How many blocks, and each member's block size, for about `samples` per member: blocks of about
    BLOCK_S for the slowest member, every member the same number of blocks so that they pair."""
    blocks = max(1, min(samples, math.ceil(samples * max(costs) / BLOCK_S)))
    return blocks, [max(1, math.ceil(samples / blocks))] * len(costs)


def lockstep_round(specs: list[CellSpec], plan: dict[str, int] | None, timeout: float,
                   cache_dir: Path | None, failed: Callable[[CellSpec, str, str], CellRecord]
                   ) -> list[CellRecord]:
    """One round of a cell's members side by side; a record per spec, in order, failed or not.

    `plan` gives each group's samples per member (None: the cell's first round, sized to
    INITIAL_GROUP_S from a first one-iteration block).  The first spec goes first (the scheduler
    alternates the order between rounds).  A member that fails drops out with a failed record; the
    others finish the round.
    """
    members = [Member(s, cache_dir) for s in specs]
    errors: dict[int, str] = {}

    def ask(i: int, message: dict | None, key: str) -> object | None:
        if i in errors:
            return None
        if message is not None:
            members[i].send(message)
        try:
            return members[i].receive(key, timeout)
        except WorkerGone as exc:
            errors[i] = str(exc)
            return None

    try:
        for i in range(len(members)):
            ask(i, None, "ready")
        order = list(range(len(members)))
        groups = groups_of(specs[0].phases)
        for group in groups:
            for i in order:  # one at a time: a first run (compilation) is not slowed by the others
                ask(i, {"begin": group}, "first")
            for i in order:
                seconds = ask(i, {"block": group, "n": 1}, "seconds")
                if seconds:
                    members[i].cost[group] = min(seconds)
            live = [i for i in order if i not in errors]
            costs = [members[i].cost[group] for i in live]
            limit = "planned"
            if live:
                want = plan[group] if plan else math.ceil(INITIAL_GROUP_S / max(costs))
                want, limit = fit_samples(want, max(costs), group_cap(specs[0].stop, group, groups))
                blocks, sizes = _block_plan(costs, want - 1)
                for b in range(blocks if want > 1 else 0):
                    turn_order = live[::-1] if b % 2 == 0 else live  # A B | B A | A B ...
                    for i in turn_order:
                        ask(i, {"block": group, "n": sizes[live.index(i)]}, "seconds")
            for i in order:
                ask(i, {"end": group, "limit": limit}, "ended")
        records = []
        for i, (spec, m) in enumerate(zip(specs, members)):
            ask(i, {"done": True}, "record")
            if i in errors:
                records.append(m.record if m.record is not None and not m.record.ok else
                               failed(spec, errors[i], m.stderr_text()))
            else:
                records.append(m.record)
        return records
    finally:
        for m in members:
            m.close()
