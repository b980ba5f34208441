"""Shared by the scripts that drive the command line: one `python -m pybench run|compare ...` into a
results folder, timed, and the results file it wrote; busy-loop processes for drift experiments."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pybench.records.record import CellRecord
from pybench.records.results import load


@dataclass(frozen=True)
class Run:
    code: int  # 0, or 1 when a cell failed (its record says why)
    seconds: float  # wall time, end to end
    path: Path  # the results file it wrote

    @property
    def records(self) -> list[CellRecord]:
        return load(self.path).records


def pybench_run(args: list[str], results_dir: Path, quiet: bool = False, command: str = "run") -> Run:
    """Run `pybench COMMAND ARGS --results DIR`; quiet hides its progress bar and tables.  Anything
    but a finished matrix (a user error, a crash, no results file) ends the script with the reason."""
    results_dir.mkdir(parents=True, exist_ok=True)
    before = set(results_dir.glob("*.json"))
    cmd = [sys.executable, "-m", "pybench", command, *args, "--results", str(results_dir)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=quiet, text=True)
    seconds = time.monotonic() - t0
    new = sorted(set(results_dir.glob("*.json")) - before)
    if proc.returncode not in (0, 1) or len(new) != 1:
        last = (proc.stderr or "").strip().splitlines()[-1:] if quiet else []
        raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode} and wrote {len(new)} results "
                         f"file(s){': ' + last[0] if last else ''}")
    return Run(proc.returncode, seconds, new[0])


BUSY_LOOP = "while True: pass"


@contextmanager
def busy(n: int, after: float = 0.0) -> Iterator[None]:
    """n processes spinning on the CPU while the block runs, starting `after` seconds into it."""
    code = f"import time\ntime.sleep({after})\n{BUSY_LOOP}"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()
