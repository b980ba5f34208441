"""Results storage: one JSON file per invocation in a results folder, rewritten atomically per cell."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

from pybench.errors import UserError

SCHEMA = "pybench.results"
SCHEMA_VERSION = 1
DEFAULT_DIR = Path("results")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and rename, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would make results private to their writer
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_writable(directory: Path) -> Path:
    """Create the results folder and prove we can write there, before any cell runs."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UserError(f"results path {str(directory)!r} is not writable: {exc.strerror}") from None
    return directory


class ResultsFile:
    """The file of one invocation; every finished cell is appended and the file rewritten atomically."""

    def __init__(self, path: Path, environment: dict, command: list[str]) -> None:
        self.path = Path(path)
        self.data = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command,
            "environment": environment,
            "records": [],
        }

    @classmethod
    def create(cls, directory: Path, environment: dict, command: list[str]) -> "ResultsFile":
        directory = ensure_writable(directory)
        label = re.sub(r"[^A-Za-z0-9_.-]+", "-", environment.get("label") or "run").strip("-")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = directory / f"{label}-{stamp}.json"
        n = 1
        while path.exists():
            n += 1
            path = directory / f"{label}-{stamp}-{n}.json"
        return cls(path, environment, command)

    def add(self, record: dict) -> None:
        self.data["records"].append(record)
        self.save()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=1) + "\n")


def load(path: Path) -> dict:
    """Load and validate a results file; anything corrupt or foreign is a UserError, never a traceback."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such results file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}): corrupt results file") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UserError(f"{path}: not a pybench results file (no '{SCHEMA}' schema tag)")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UserError(f"{path}: schema version {version!r}, this pybench reads {SCHEMA_VERSION}")
    records = data.get("records")
    if not isinstance(data.get("environment"), dict) or not isinstance(records, list):
        raise UserError(f"{path}: malformed results file (environment or records missing)")
    for i, rec in enumerate(records):
        if not _valid_record(rec):
            raise UserError(f"{path}: malformed record #{i + 1}")
    return data


def _valid_record(rec: object) -> bool:
    if not isinstance(rec, dict) or rec.get("status") not in ("ok", "failed"):
        return False
    spec = rec.get("spec")
    if not isinstance(spec, dict) or not {"framework", "model", "device"} <= spec.keys():
        return False
    if rec["status"] == "failed":
        return isinstance(rec.get("error"), str)
    phases = rec.get("phases")
    return isinstance(phases, dict) and all(
        isinstance(p, dict) and isinstance(p.get("stats"), dict) and "median" in p["stats"]
        for p in phases.values()
    )


def collect(paths: list[Path]) -> list[dict]:
    """Expand folders to their *.json files and load each."""
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    if not files:
        raise UserError(f"no results files found in {', '.join(map(str, paths))}")
    return [load(f) for f in files]
