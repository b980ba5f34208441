"""Runs cells in isolated worker processes and survives whatever happens to them.

A worker that crashes, is killed (the kernel's OOM killer sends SIGKILL), hangs past its timeout or
prints garbage turns into a failed record with the reason; the matrix goes on.  Isolation also keeps
torch and Julia out of each other's process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pybench.backends import worker_env
from pybench.spec import CellSpec

# Beyond the protocol's own time limit, a worker needs time to start, build the model and (for Julia)
# compile every phase; a cell is only declared hung after all of that.
STARTUP_ALLOWANCE_S = 600.0
STDERR_TAIL_LINES = 20


def default_timeout(spec: CellSpec) -> float:
    return spec.stop.max_time * 1.5 + STARTUP_ALLOWANCE_S


def failed_record(spec: CellSpec, reason: str, stderr: str = "") -> dict:
    return {
        "spec": spec.to_json(),
        "cell": spec.cell_id,
        "framework": spec.framework,
        "status": "failed",
        "error": reason,
        "stderr_tail": stderr.splitlines()[-STDERR_TAIL_LINES:],
    }


def _exit_reason(code: int, stderr: str) -> str:
    if code < 0:
        sig = signal.Signals(-code).name
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if sig == "SIGKILL" else ""
        return f"worker killed by {sig}{hint}"
    last = next((ln for ln in reversed(stderr.splitlines()) if ln.strip()), "")
    return f"worker exited with code {code}" + (f": {last.strip()}" if last else "")


def run_cell(spec: CellSpec, timeout: float | None = None, command: list[str] | None = None) -> dict:
    """Run one cell in a fresh worker process and return its record, failed or not.

    `command` replaces the worker command line (a launcher such as `taskset -c 0-3 python -m
    pybench.worker`); it must read the spec on stdin and print the record on stdout.
    """
    timeout = default_timeout(spec) if timeout is None else timeout
    cmd = command or [sys.executable, "-m", "pybench.worker"]
    env = {**os.environ, **worker_env(spec)}
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, so a kill takes its children too
    )
    try:
        out, err = proc.communicate(json.dumps(spec.to_json()), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        return failed_record(spec, f"timed out after {timeout:.0f} s (hung?); worker killed", err)
    except BaseException:  # Ctrl-C: the worker must not outlive us
        _kill_group(proc)
        proc.wait()
        raise
    if proc.returncode != 0:
        return failed_record(spec, _exit_reason(proc.returncode, err), err)
    try:
        record = json.loads(out.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return failed_record(spec, "worker returned no valid JSON record", err)
    if record.get("status") != "ok":
        record.setdefault("stderr_tail", err.splitlines()[-STDERR_TAIL_LINES:])
    return record


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
