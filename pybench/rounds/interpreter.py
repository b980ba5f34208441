"""Workers under another Python interpreter (a variant's `@/path/to/python`).

That interpreter needs only numpy and its framework: pybench itself is not installed there.  The
worker gets a staged copy of pybench's own package folder on its path, and nothing else of the
environment pybench runs in (its site-packages, its PYTHONPATH), so it measures that environment's
framework and nothing leaks in.  Stdlib only: the worker imports this module too.
"""

from __future__ import annotations

import atexit
import functools
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

from pybench.errors import UserError
from pybench.machine.lifetime import remove_stale, run_bounded
from pybench.records.spec import CellSpec

MIN_PYTHON = (3, 10)
PROBE_TIMEOUT_S = 120.0
STAGED_PREFIX = "pybench-src"
# Run by the other interpreter: which of the modules named on its command line it cannot import.
PROBE = ("import importlib.util, json, platform, sys; print(json.dumps({'python': platform.python_version(), "
         "'version': list(sys.version_info[:2]), "
         "'missing': [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]}))")
# The worker's entry under another interpreter: the staged pybench first on the path, ahead of the
# current folder (`-c` puts it first), which may hold a pybench checkout of its own.
BOOT = ("import runpy, sys; sys.path.insert(0, {root!r}); "
        "runpy.run_module('pybench.rounds.worker', run_name='__main__', alter_sys=True)")


@functools.cache
def staged_source() -> Path:
    """A copy of pybench's package folder, alone in a folder of its own, for this process's life.
    Putting the package's parent on the path instead would show everything beside it there (all of
    site-packages for a regular install).  Named with our pid: the copies of SIGKILLed runs are
    removed here, as `lifetime.scratch_dir` removes their caches."""
    remove_stale(STAGED_PREFIX)
    root = Path(tempfile.mkdtemp(prefix=f"{STAGED_PREFIX}-{os.getpid()}-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    shutil.copytree(Path(__file__).resolve().parents[1], root / "pybench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def clean_environ(base: Mapping[str, str]) -> dict[str, str]:
    """`base` without what points Python at this environment's packages."""
    return {k: v for k, v in base.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}


def worker_command(spec: CellSpec) -> list[str]:
    """The command line of a worker for this cell."""
    if not spec.interpreter:
        return [sys.executable, "-m", "pybench.rounds.worker"]
    return [spec.interpreter, "-c", BOOT.format(root=str(staged_source()))]


def worker_environ(spec: CellSpec, base: Mapping[str, str]) -> dict[str, str]:
    """The environment a worker for this cell starts from (the framework adds its own on top)."""
    if not spec.interpreter:
        return dict(base)
    return {**clean_environ(base), "PYTHONPATH": str(staged_source())}


def probe(interpreter: str, modules: tuple[str, ...], who: str) -> str:
    """Check that `interpreter` runs and can import numpy and `modules`; return its Python version.
    Anything missing is one UserError line naming it (`who` says which variant asked)."""
    try:  # bounded: whatever the interpreter (or a script posing as one) starts dies with the probe
        done = run_bounded([interpreter, "-c", PROBE, "numpy", *modules], PROBE_TIMEOUT_S,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           errors="replace", env=clean_environ(os.environ))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"{who}: {interpreter} does not run as a Python interpreter "
                        f"({type(exc).__name__})") from None
    facts = _facts(done.stdout)
    if facts is None:
        last = next((ln for ln in reversed(done.stderr.splitlines()) if ln.strip()), "no answer it could read")
        raise UserError(f"{who}: {interpreter} does not run as a Python interpreter: {last.strip()[:300]}")
    if tuple(facts["version"]) < MIN_PYTHON:
        raise UserError(f"{who}: {interpreter} is Python {facts['python']}; workers need "
                        f"{'.'.join(map(str, MIN_PYTHON))} or newer")
    missing = facts["missing"]
    if missing:
        raise UserError(f"{who}: {interpreter} lacks {' and '.join(missing)}: install "
                        f"{'them' if len(missing) > 1 else 'it'} there ({interpreter} -m pip install "
                        f"{' '.join(missing)})")
    return str(facts["python"])


def _facts(stdout: str) -> dict[str, Any] | None:
    """The probe's answer, the last line of its output, if it has the shape PROBE prints; else None."""
    try:
        facts = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError, RecursionError):
        return None
    if not isinstance(facts, dict):
        return None
    version, missing = facts.get("version"), facts.get("missing")
    shaped = (isinstance(facts.get("python"), str) and isinstance(version, list) and len(version) == 2
              and all(type(v) is int for v in version)
              and isinstance(missing, list) and all(isinstance(m, str) for m in missing))
    return facts if shaped else None


def interpreter_facts(spec: CellSpec) -> dict:
    """What the worker's record says about the Python it ran under; under another interpreter also
    every package it sees, with versions (the results file's environment describes only pybench's)."""
    facts: dict = {"executable": sys.executable, "version": platform.python_version()}
    if spec.interpreter:
        dists = ((d.metadata["Name"], d.version) for d in importlib.metadata.distributions())
        facts["packages"] = dict(sorted((name, version) for name, version in dists if name))
    return facts
