"""Parity beside speed: after `compare` measures, each framework that has a weight-transfer check
(`Framework.parity`: PyTorch's weights copied in, eval outputs compared on the same input) is checked
once per model, image size and device kind, and the answer stored in its records (`record.parity`).

The check runs in a child process (`python -m pybench.rounds.parity`), as a worker does: it imports
torch and the other framework together, and a crash or a hang there must not take pybench down.
Answers are cached per versions (pybench, the framework's and PyTorch's packages) in the user's cache
folder, written atomically; a check that could not run is not cached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from pybench.machine.environment import user_cache
from pybench import __version__
from pybench.backends import get_framework
from pybench.backends.base import PARITY_RTOL, Framework
from pybench.records.numerics import Parity
from pybench.records.record import CellRecord
from pybench.records.results import ResultsFile, atomic_write
from pybench.records.shape import Malformed
from pybench.request.request import Request

PARITY_BATCH = 2  # outputs agree or not whatever the batch: the smallest that is still a batch
TIMEOUT_S = 900.0  # resnet152 on a CPU, JAX's compilation included, with room to spare
REFERENCE = "pytorch"
NOT_ASKED = "--no-parity"


def cache_path() -> Path:
    return user_cache() / "parity.json"


def cache_key(framework: Framework, model: str, image_size: int, device_kind: str) -> str:
    """What the answer depends on: the code on both sides, the model, the input size and the device."""
    versions = {**get_framework(REFERENCE).versions(), **framework.versions()}
    return json.dumps([__version__, framework.name, versions, model, image_size, device_kind], sort_keys=True)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a missing or damaged cache is an empty one: the checks run again
    return data if isinstance(data, dict) else {}


def cached(key: str, path: Path) -> Parity | None:
    entry = _load(path).get(key)
    try:
        return replace(Parity.from_json(entry, "parity cache"), cached=True) if entry else None
    except Malformed:
        return None


def remember(key: str, parity: Parity, path: Path) -> None:
    data = _load(path)
    data[key] = parity.to_json()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True))


def run_check(framework: Framework, model: str, image_size: int, device: str,
              timeout: float = TIMEOUT_S) -> Parity:
    """The framework's parity check in a child process; a failure is a Parity saying why."""
    cmd = [sys.executable, "-m", "pybench.rounds.parity", framework.name, model, str(image_size), device]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Parity(False, None, PARITY_RTOL, f"the check took over {timeout:.0f} s")
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
        diff = float(result["max_rel_diff"])
        return Parity(bool(result["ok"]), diff, PARITY_RTOL)
    except (ValueError, IndexError, KeyError, TypeError):
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return Parity(False, None, PARITY_RTOL, f"the check failed: {last[:200]}")


Check = Callable[[Framework, str, int, str], Parity]


def after_compare(request: Request, records: list[CellRecord], store: ResultsFile,
                  say: Callable[[str], None] = lambda _: None) -> None:
    """A compare's parity beside its speed, stored with its records: where the rounds ran (this
    machine, or the Slurm node of the cell's job), as the device it names is there."""
    if request.command == "compare":
        attach(records, request.parity, say)
        store.save()


def attach(records: list[CellRecord], enabled: bool = True, say: Callable[[str], None] = lambda _: None,
           check: Check = run_check, path: Path | None = None) -> None:
    """Set `parity` on every measured record of a framework that has a check: from the cache, by
    running the check once per model, image size and device kind, or as not asked (`enabled` False)."""
    path = path or cache_path()
    answers: dict[str, Parity] = {}
    for record in records:
        framework = get_framework(record.spec.framework)
        if not record.ok or not framework.has_parity:
            continue
        if not enabled:
            record.parity = Parity(False, None, PARITY_RTOL, NOT_ASKED)
            continue
        spec = record.spec
        key = cache_key(framework, spec.model, spec.image_size, spec.device_kind)
        if key not in answers:
            answers[key] = cached(key, path) or _fresh(framework, record, key, path, say, check)
        record.parity = answers[key]


def _fresh(framework: Framework, record: CellRecord, key: str, path: Path, say: Callable[[str], None],
           check: Check) -> Parity:
    spec = record.spec
    say(f"parity: {spec.model}, {framework.title} vs PyTorch on the same weights (once per versions)")
    parity = check(framework, spec.model, spec.image_size, spec.device)
    if parity.checked:
        try:
            remember(key, parity, path)
        except OSError as exc:  # only the cache: the answer still goes into this run's records
            say(f"parity: not cached ({path}: {exc.strerror or exc}); the next compare checks again")
    return parity


def main(argv: list[str]) -> None:
    """Child process: one check, its result as the last line of stdout (anything else on stderr)."""
    name, model, image_size, device = argv
    real_stdout = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # a framework's chatter goes to stderr
    result = get_framework(name).parity(model, int(image_size), PARITY_BATCH, device)
    real_stdout.write(json.dumps({"ok": bool(result.get("ok")), "max_rel_diff": result.get("max_rel_diff")}) + "\n")
    real_stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
