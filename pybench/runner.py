"""Runs cells in isolated worker processes and survives whatever happens to them.

A worker that crashes, is killed (the kernel's OOM killer sends SIGKILL), hangs past its timeout or
prints garbage turns into a failed record with the reason; the matrix goes on.  Isolation also keeps
torch, JAX and Julia out of each other's process.

`run_matrix` measures every cell in rounds, each round a fresh worker (pyperf's model: between-process
variation is part of what a number means).  Rounds go round-robin over the whole matrix, and the
frameworks of a cell run back to back in an order that alternates between rounds (A B, B A, ...), so
drift of the machine hits every framework alike and largely cancels in their ratio.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pybench import efficiency, noise
from pybench.backends import get_framework
from pybench.backends.base import CACHE_ENV
from pybench.interpreter import worker_command, worker_environ
from pybench.lifetime import run_bounded, signals_deferred
from pybench.records import CellRecord, Malformed
from pybench.results import ResultsFile
from pybench.spec import CellKey, CellSpec

# Beyond the protocol's own time limit, a worker needs time to start, build the model and compile
# every phase (Julia, XLA, Inductor); a cell is only declared hung after all of that.
STARTUP_ALLOWANCE_S = 600.0
STDERR_TAIL_LINES = 20


def default_timeout(spec: CellSpec) -> float:
    return spec.stop.max_time * 1.5 + STARTUP_ALLOWANCE_S


def failed_record(spec: CellSpec, reason: str, stderr: str = "", status: str = "failed") -> CellRecord:
    return CellRecord(spec=spec, status=status, title=get_framework(spec.framework).title, error=reason,
                      stderr_tail=stderr.splitlines()[-STDERR_TAIL_LINES:])


def _exit_reason(code: int, stderr: str) -> str:
    if code < 0:
        sig = signal.Signals(-code).name
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if sig == "SIGKILL" else ""
        return f"worker killed by {sig}{hint}"
    last = next((ln for ln in reversed(stderr.splitlines()) if ln.strip()), "")
    return f"worker exited with code {code}" + (f": {last.strip()}" if last else "")


def run_cell(spec: CellSpec, timeout: float | None = None, command: list[str] | None = None,
             cache_dir: Path | None = None) -> CellRecord:
    """Run one round of a cell in a fresh worker process and return its record, failed or not.

    `command` replaces the worker command line (a launcher such as `taskset -c 0-3 python -m
    pybench.worker`); it must read the spec on stdin and print the record on stdout.  `cache_dir`
    is where a framework may keep compiled code for the later rounds of the same matrix.
    """
    timeout = default_timeout(spec) if timeout is None else timeout
    cmd = command or worker_command(spec)
    env = {**worker_environ(spec, os.environ), **get_framework(spec.framework).worker_env(spec)}
    if spec.gpu:  # every framework of the cell sees exactly this GPU, as its device 0
        env.update(spec.gpu.visible_env)
    if cache_dir is not None:
        env[CACHE_ENV] = str(cache_dir)
    try:
        done = run_bounded(cmd, timeout, json.dumps(spec.to_json()), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    except subprocess.TimeoutExpired as exc:
        return failed_record(spec, f"timed out after {_seconds(timeout)} s (hung?); worker killed",
                             exc.stderr or "")
    out, err = done.stdout, done.stderr
    if done.returncode != 0:
        return failed_record(spec, _exit_reason(done.returncode, err), err)
    try:
        record = CellRecord.from_json(json.loads(out.strip().splitlines()[-1]), "worker record")
    except (json.JSONDecodeError, IndexError, Malformed):
        return failed_record(spec, "worker returned no valid JSON record", err)
    if not record.ok:
        record.stderr_tail = err.splitlines()[-STDERR_TAIL_LINES:]
    return record


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


def run_matrix(
    specs: list[CellSpec],
    store: ResultsFile,
    rounds: int = 1,
    min_rounds: int = 2,
    timeout: float | None = None,
    peak_gflops: float | None = None,
    events: MatrixEvents | None = None,
    run_one: Callable[..., CellRecord] = run_cell,
) -> list[CellRecord]:
    """Measure every cell in `rounds` rounds, saving after every worker, and return the records.

    Cells a framework cannot run (unavailable, option unsupported) become skipped records, never
    attempted.  A cell stops early once `min_rounds` rounds agree within the asked precision for every
    framework; a cell whose round fails keeps the rounds it has and a warning.  `run_one` measures one
    round (tests script it).
    """
    with tempfile.TemporaryDirectory(prefix="pybench-cache-") as cache:
        return _rounds(specs, store, rounds, min_rounds, timeout, peak_gflops, events or MatrixEvents(),
                       lambda spec, t: run_one(spec, t, cache_dir=Path(cache)))


def _rounds(specs: list[CellSpec], store: ResultsFile, rounds: int, min_rounds: int, timeout: float | None,
            peak_gflops: float | None, events: MatrixEvents,
            run_one: Callable[[CellSpec, float | None], CellRecord]) -> list[CellRecord]:
    gpus = sorted({s.gpu.uuid for s in specs if s.gpu})
    meter = noise.StealMeter()
    audit = noise.capture_start(gpus)  # what else ran on the machine: shown when it matters
    store.environment["noise"] = audit.to_json()
    records: dict[CellSpec, CellRecord] = {}
    cells: dict[CellKey, list[CellSpec]] = {}
    for spec in specs:
        reason = skip_reason(spec)
        if reason:
            records[spec] = failed_record(spec, reason, status="skipped")
            store.add(records[spec])
        else:
            cells.setdefault(spec.key.cell, []).append(spec)

    done: set[CellKey] = set()
    for round_no in range(1, rounds + 1):
        for cell, members in cells.items():
            if cell in done:
                continue
            order = members if round_no % 2 else members[::-1]  # ABBA: drift hits all alike
            for spec in order:
                if spec in records and not records[spec].ok:
                    continue  # failed in an earlier round: its error stands
                events.started(spec, round_no)
                record = run_one(spec, timeout)
                _keep(records, spec, record, round_no, store, peak_gflops)
                events.finished(records[spec], round_no)
            measured = [records[s] for s in members if records[s].ok]
            if measured and all(len(r.rounds) >= min_rounds for r in measured) and all(
                    r.quality(p) == "precise" for r in measured for p in r.phase_names):
                done.add(cell)
    store.environment["noise"] = noise.capture_end(audit, meter, gpus).to_json()
    store.save()
    return [records[s] for s in specs]


def _keep(records: dict[CellSpec, CellRecord], spec: CellSpec, record: CellRecord, round_no: int,
          store: ResultsFile, peak_gflops: float | None) -> None:
    """Save first; derived figures afterwards are best effort, never a lost cell.  A signal waits
    until the round is in the file."""
    first = records.get(spec)
    if first is None:
        records[spec] = record
        store.add(record)
        if record.ok:
            efficiency.annotate(record, peak_gflops)
        store.save()
        return
    with signals_deferred():
        if record.ok:
            try:
                first.add_round(record)
            except ValueError as exc:  # another version or environment: never pooled, said why
                first.warnings.append(f"round {round_no} not pooled: {exc}")
        else:
            first.warnings.append(f"round {round_no} failed: {record.error}")
        store.save()
