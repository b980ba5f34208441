"""Real processes from tests: pybench run as a user runs it, whether a Slurm cluster answers, and
(Linux /proc) whose children, still running or not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def pybench(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pybench", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a dead child nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def cluster_problem() -> str | None:
    if not shutil.which("sbatch"):
        return "Slurm's commands are not installed (sudo scripts/slurm_local.sh start installs and starts one)"
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed: {exc}"
    if done.returncode != 0:
        return f"no Slurm controller answers: {done.stderr.strip()[:200]} (scripts/slurm_local.sh start)"
    if not any(s.startswith(("idle", "mix", "alloc")) for s in done.stdout.split()):
        return f"no Slurm node accepts jobs (sinfo: {done.stdout.split()})"
    return None
