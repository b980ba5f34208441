"""Results storage: one JSON file per invocation in a results folder, rewritten atomically per cell.

The document is the machine's environment plus typed cell records (`pybench.records.record`), which own
their JSON; this module owns files: naming, atomic writes, reading safely, schema versions.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pybench.errors import UserError
from pybench.machine.lifetime import signals_deferred
from pybench.records.migrate import migrate_v1
from pybench.records.record import CellRecord, Malformed
from pybench.records.round import SCHEMA, SCHEMA_VERSION

MAX_FILE_BYTES = 512 * 2**20  # a results file or README larger than this is not one
PROBE_BYTES = 64 * 1024  # the writability check writes real bytes: an empty file fits on a full disk
STEM_MAX = 100  # leaves room for "-YYYYmmdd-HHMMSS-N.json" within any file-name limit


def safe_file_stem(label: str) -> str:
    """A label as the start of a file name: [A-Za-z0-9_.-] only, at most STEM_MAX characters,
    never hidden or option-like (no leading '.' or '-'), 'run' when nothing is left."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).lstrip(".-")[:STEM_MAX].rstrip(".-")
    return stem or "run"


def _write_error(path: Path, exc: OSError) -> UserError:
    return UserError(f"{path}: cannot write ({exc.strerror or exc}); the file is left as it was")


def atomic_write(path: Path, data: bytes | str) -> None:
    """Replace the file at `path` (through any symlink) with `data` in one step: readers, a full
    disk and any signal leave either the old file or the new one, never part of one nor a temp file.

    A new file gets 0666 minus the umask, like any file a program creates; an existing one keeps
    its mode.  Errors are UserErrors.
    """
    path = Path(path)
    target = Path(os.path.realpath(path))
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise _write_error(path, exc) from None
    if mode is not None and not os.access(target, os.W_OK):  # made read-only on purpose
        raise UserError(f"{path}: not writable")
    with signals_deferred():
        tmp, fd = _create_temp(target.parent, path)
        try:
            try:
                if mode is not None:
                    os.fchmod(fd, mode)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise _write_error(path, exc) from None
            raise
    _fsync_dir(target.parent)  # the rename itself survives a crash


def _create_temp(folder: Path, path: Path) -> tuple[Path, int]:
    """A new hidden temp file in `folder` with a short name, whatever the length of the target's
    (a valid target name must never make an invalid temp name)."""
    while True:
        tmp = folder / f".pybench-{secrets.token_hex(6)}.tmp"
        try:  # mode 0666 with O_CREAT: the kernel applies the umask, no process-wide umask dance
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise _write_error(path, exc) from None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the data itself is synced
    finally:
        os.close(fd)


def read_regular_file(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; anything else (a FIFO, a device, a
    folder, a huge file) is a UserError, found without blocking or reading it."""
    path = Path(path)
    try:  # O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{path}: not a regular file")
        if st.st_size > limit:
            raise UserError(f"{path}: {st.st_size:,} bytes, more than the {limit:,} this reads")
        chunks, size = [], 0
        while size <= limit:  # it may grow while we read
            chunk = os.read(fd, min(limit + 1 - size, 2**20))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise UserError(f"{path}: grew beyond {limit:,} bytes while being read")
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def ensure_writable(directory: Path) -> Path:
    """Create the results folder and prove we can write there, before any cell runs: real bytes,
    synced, so that a full disk or quota shows now and not after the first cell."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory) as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
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
        self._saved = 0  # records in the file as last written

    @classmethod
    def create(cls, directory: Path, environment: dict, command: list[str]) -> "ResultsFile":
        """Claim a new file now, under a name no other run can take (O_EXCL, even within the same
        second), holding the run's environment and no records yet."""
        directory = ensure_writable(directory)
        stem = f"{safe_file_stem(environment.get('label') or 'run')}-{time.strftime('%Y%m%d-%H%M%S')}"
        with signals_deferred():  # a signal must not leave the claimed name empty
            for n in itertools.count(1):
                path = directory / (f"{stem}.json" if n == 1 else f"{stem}-{n}.json")
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
                    break
                except FileExistsError:
                    continue
                except OSError as exc:
                    raise _write_error(path, exc) from None
            store = cls(path, environment, command)
            try:
                store.save()
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        return store

    def add(self, record: CellRecord) -> None:
        with signals_deferred():  # kept in memory means kept on disk
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
        count = len(self.records)
        atomic_write(self.path, json.dumps(self.to_json(), indent=1) + "\n")
        self._saved = count

    def kept(self) -> str:
        """What the file holds as last written, as a sentence: after a failed save, or with the file
        deleted, what is true rather than what is in memory."""
        if not self.path.is_file():
            return f"nothing kept: {self.path} no longer exists"
        return f"{self._saved} cell(s) kept in {self.path}"


@dataclass
class ResultsDoc:
    """A results file as read back: oldest-first order across files comes from `created`."""

    path: Path
    created: str
    environment: dict
    records: list[CellRecord]
    command: list[str] = field(default_factory=list)  # the command line that produced it


def load(path: Path) -> ResultsDoc:
    """Load and validate a results file; anything corrupt or foreign is a UserError, never a traceback."""
    path = Path(path)
    try:
        data = json.loads(read_regular_file(path).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}): corrupt results file") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise UserError(f"{path}: cannot read a number: {exc}"[:300]) from None
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
    command = data.get("command")
    return ResultsDoc(path=path, created=str(data.get("created", "")), environment=data["environment"],
                      records=parsed, command=[str(c) for c in command] if isinstance(command, list) else [])


def collect(paths: list[Path]) -> list[ResultsDoc]:
    """Expand folders to their regular *.json files (a FIFO or device so named is passed over) and
    load each."""
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend([f for f in sorted(p.glob("*.json")) if f.is_file()] if p.is_dir() else [p])
    if not files:
        raise UserError(f"no results files found in {', '.join(map(str, paths))}")
    return [load(f) for f in files]
