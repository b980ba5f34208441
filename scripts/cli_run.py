"""Shared by the scripts that drive the command line: one `python -m pybench run ...` into a results
folder, timed, and the results file it wrote."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pybench.records import CellRecord
from pybench.results import load


@dataclass(frozen=True)
class Run:
    code: int  # 0, or 1 when a cell failed (its record says why)
    seconds: float  # wall time, end to end
    path: Path  # the results file it wrote

    @property
    def records(self) -> list[CellRecord]:
        return load(self.path).records


def pybench_run(args: list[str], results_dir: Path, quiet: bool = False) -> Run:
    """Run `pybench run ARGS --results DIR`; quiet hides its progress bar and tables.  Anything but
    a finished matrix (a user error, a crash, no results file) ends the script with the reason."""
    results_dir.mkdir(parents=True, exist_ok=True)
    before = set(results_dir.glob("*.json"))
    cmd = [sys.executable, "-m", "pybench", "run", *args, "--results", str(results_dir)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=quiet, text=True)
    seconds = time.monotonic() - t0
    new = sorted(set(results_dir.glob("*.json")) - before)
    if proc.returncode not in (0, 1) or len(new) != 1:
        last = (proc.stderr or "").strip().splitlines()[-1:] if quiet else []
        raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode} and wrote {len(new)} results "
                         f"file(s){': ' + last[0] if last else ''}")
    return Run(proc.returncode, seconds, new[0])
