"""Results storage: one JSON file per invocation in a results folder, rewritten atomically per cell.

The document is the machine's environment plus typed cell records (`pybench.records`), which own
their JSON; this module owns files: naming, atomic writes, reading safely, schema versions.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

from dataclasses import dataclass

from pybench.errors import UserError
from pybench.records import SCHEMA, SCHEMA_VERSION, CellRecord, Malformed, migrate_v1

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
        self.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.command = command
        self.environment = environment
        self.records: list[CellRecord] = []

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

    def add(self, record: CellRecord) -> None:
        self.records.append(record)
        self.save()

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "command": self.command,
            "environment": self.environment,
            "records": [r.to_json() for r in self.records],
        }

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.to_json(), indent=1) + "\n")


@dataclass
class ResultsDoc:
    """A results file as read back: oldest-first order across files comes from `created`."""

    path: Path
    created: str
    environment: dict
    records: list[CellRecord]


def load(path: Path) -> ResultsDoc:
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
    except RecursionError:
        raise UserError(f"{path}: malformed results file: nested too deeply") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UserError(f"{path}: not a pybench results file (no '{SCHEMA}' schema tag)")
    version = data.get("schema_version")
    try:
        if version == 1:
            data = migrate_v1(data)
        elif version != SCHEMA_VERSION:
            raise UserError(f"{path}: schema version {version!r}, this pybench reads 1 and {SCHEMA_VERSION}")
        records = data.get("records")
        if not isinstance(data.get("environment"), dict) or not isinstance(records, list):
            raise Malformed("environment or records missing")
        parsed = [CellRecord.from_json(r, f"record #{i + 1}") for i, r in enumerate(records)]
    except Malformed as exc:
        raise UserError(f"malformed record in {path}: {exc}") from None
    return ResultsDoc(path=path, created=str(data.get("created", "")), environment=data["environment"],
                      records=parsed)


def collect(paths: list[Path]) -> list[ResultsDoc]:
    """Expand folders to their *.json files and load each."""
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    if not files:
        raise UserError(f"no results files found in {', '.join(map(str, paths))}")
    return [load(f) for f in files]
