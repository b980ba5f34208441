"""Runs cells in isolated worker processes and survives whatever happens to them.

A worker that crashes, is killed (the kernel's OOM killer sends SIGKILL), hangs past its timeout or
prints garbage turns into a failed record with the reason; the matrix goes on.  Isolation also keeps
torch, JAX and Julia out of each other's process.

`run_cell` runs one round of one framework in one go; `pybench.rounds.lockstep` runs the frameworks of a
cell side by side; `pybench.rounds.matrix` schedules the rounds of a whole matrix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pybench.backends import get_framework
from pybench.rounds.interpreter import worker_command, worker_environ
from pybench.machine.lifetime import run_bounded
from pybench.machine.malloc import malloc_env
from pybench.records.record import CellRecord, Malformed
from pybench.records.spec import CellSpec

# Beyond the protocol's own time limit, a worker needs time to start, build the model and compile
# every phase (Julia, XLA, Inductor); a cell is only declared hung after all of that.
STARTUP_ALLOWANCE_S = 600.0
STDERR_TAIL_LINES = 20


def default_timeout(spec: CellSpec) -> float:
    return spec.stop.max_time * 1.5 + STARTUP_ALLOWANCE_S


def failed_record(spec: CellSpec, reason: str, stderr: str = "", status: str = "failed") -> CellRecord:
    return CellRecord(spec=spec, status=status, title=get_framework(spec.framework).title, error=reason,
                      stderr_tail=stderr.splitlines()[-STDERR_TAIL_LINES:])


def exit_reason(code: int, stderr: str) -> str:
    if code < 0:
        sig = signal.Signals(-code).name
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if sig == "SIGKILL" else ""
        return f"worker killed by {sig}{hint}"
    last = next((ln for ln in reversed(stderr.splitlines()) if ln.strip()), "")
    return f"worker exited with code {code}" + (f": {last.strip()}" if last else "")


def worker_environment(spec: CellSpec, cache_dir: Path | None) -> dict[str, str]:
    """The environment a worker of this cell starts with: the framework's settings, the one GPU the
    cell names (as its device 0), and where it may cache compiled code for later rounds."""
    framework = get_framework(spec.framework)
    env = {**worker_environ(spec, os.environ), **framework.worker_env(spec)}
    env.update(malloc_env(spec.malloc, env))
    if spec.gpu:
        env.update(spec.gpu.visible_env)
    if cache_dir is not None:
        env.update(framework.cache_env(cache_dir))
    return env


def run_cell(spec: CellSpec, timeout: float | None = None, command: list[str] | None = None,
             cache_dir: Path | None = None, plan: dict[str, int] | None = None,
             initial: float | None = None) -> CellRecord:
    """Run one round of a cell in a fresh worker process and return its record, failed or not.

    `command` replaces the worker command line (a launcher such as `taskset -c 0-3 python -m
    pybench.rounds.worker`); it must read the spec on stdin and print the record on stdout.  `cache_dir`
    is where a framework may keep compiled code for the later rounds of the same matrix.  `plan`:
    samples per phase group (`planning.plan_round`); without one the worker samples until precise,
    for `initial` seconds per group if given (a cell's first round).
    """
    timeout = default_timeout(spec) if timeout is None else timeout
    cmd = command or worker_command(spec)
    env = worker_environment(spec, cache_dir)
    spawned = time.time()
    try:
        request = {"spec": spec.to_json(), "plan": plan, "initial": initial, "spawned": spawned}
        done = run_bounded(cmd, timeout, json.dumps(request) + "\n", stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    except subprocess.TimeoutExpired as exc:
        return failed_record(spec, f"timed out after {_seconds(timeout)} s (hung?); worker killed",
                             exc.stderr or "")
    out, err = done.stdout, done.stderr
    if done.returncode != 0:
        return failed_record(spec, exit_reason(done.returncode, err), err)
    try:
        record = CellRecord.from_json(json.loads(out.strip().splitlines()[-1]), "worker record")
    except (json.JSONDecodeError, IndexError, Malformed):
        return failed_record(spec, "worker returned no valid JSON record", err)
    if not record.ok:
        record.stderr_tail = err.splitlines()[-STDERR_TAIL_LINES:]
    for r in record.rounds:  # the process is gone: the round's timeline ends here
        r.timeline["exited"] = time.time() - spawned
    return record


def prime_cell(spec: CellSpec, timeout: float, cache_dir: Path) -> str | None:
    """A priming worker: compiles every group of the cell into the matrix's cache before round 1, so
    that every counted round finds the same cache (round 1 would otherwise compile and the others
    load).  None when it primed, or when the framework has nothing to prime for the cell (no worker
    starts); else why not (the counted rounds then say it again)."""
    if not get_framework(spec.framework).primes(spec):
        return None
    env = worker_environment(spec, cache_dir)
    request = {"spec": spec.to_json(), "prime": True}
    try:
        done = run_bounded(worker_command(spec), timeout, json.dumps(request) + "\n", stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    except subprocess.TimeoutExpired:
        return f"timed out after {_seconds(timeout)} s"
    if done.returncode != 0:
        return exit_reason(done.returncode, done.stderr)
    try:
        reply = json.loads(done.stdout.strip().splitlines()[-1])
        return None if isinstance(reply.get("primed"), (int, float)) else str(reply["record"]["error"])
    except (json.JSONDecodeError, IndexError, KeyError, TypeError, AttributeError):
        return "the priming worker returned no valid reply"


def _seconds(t: float) -> str:
    """2 -> '2', 0.001 -> '0.001', 750.4 -> '750': as many digits as a time-out needs."""
    return f"{t:.0f}" if t >= 100 else f"{t:.3g}"


@dataclass
class MatrixEvents:
    """What the CLI shows while a matrix runs (progress bar, failures); all optional."""

    started: Callable[[CellSpec, int], None] = lambda spec, round_no: None
    finished: Callable[[CellRecord, int], None] = lambda record, round_no: None


def skip_reason(spec: CellSpec) -> str | None:
    """Why a cell will not be attempted here (framework unavailable, option unsupported), or None."""
    framework = get_framework(spec.framework)
    status = framework.availability()
    if not status.ok and not spec.interpreter:  # another interpreter is probed before the run
        return f"{framework.name} unavailable: {status.reason}"
    return framework.unsupported(spec)
