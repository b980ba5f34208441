"""A submission's folder and manifest, and gathering finished jobs into the results folder.

Layout, under the results folder: `slurm/<name>/submission.json` (the manifest: the jobs and their
Slurm ids), `slurm/<name>/cells/<index>/` (what each job writes on its node, `pybench.cluster.node`)
and `slurm/<name>/submitit/` (submitit's pickles and the jobs' logs).  Reports read only the results
folder's own `*.json`, so nothing in here is mistaken for a result.

Collecting a job writes one results file, `<results>/<name>-cell<index>.json`, once the job has
ended: its records as measured on the node, plus a failed record, with Slurm's reason and the job's
stderr tail, for every framework it did not finish.  A file already there means already collected,
so collecting again changes nothing.

The folder sits on a filesystem every node writes to, so what is in it is data, never code: collect
reads only JSON (the manifest, each job's plan and records), small text files and Slurm's state, and
never loads submitit's pickles.  Job ids are checked before they reach a path or a Slurm command, and
the results folder is the one that holds the submission, whatever the manifest says.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from pybench.records import results
from pybench.cluster.node import FINISHED, RECORDS, CellJob, read_plan
from pybench.cluster.slurm import NOT_FOUND, JobState, check_job_id
from pybench.errors import UserError
from pybench.records.record import CellRecord, CutShort
from pybench.records.results import ResultsFile, atomic_write
from pybench.records.spec import CellSpec

MANIFEST = "submission.json"
CANCELLED = "cancelled"  # in a job's folder: why pybench cancelled it
SCHEMA = "pybench.slurm-submission"
STDERR_TAIL_LINES = 20
TAIL_BYTES = 2**16  # of a job's log: enough for its last lines, however large the log grew
MAX_JOBS = 10**6
ERROR_LINE = re.compile(r"^\w[\w.]*(Error|Exception|Interrupt|Exit|Terminated)\b.*")


@dataclass
class JobEntry:
    job: CellJob
    job_id: str  # submitit's id: ARRAY_TASK
    partition: str | None  # None: the cluster's default partition
    specs: list[CellSpec]  # as validated at submission, for the records of a job that never ran

    def to_json(self) -> dict:
        return {"job": self.job.to_json(), "job_id": self.job_id, "partition": self.partition,
                "specs": [s.to_json() for s in self.specs]}

    @classmethod
    def from_json(cls, data: dict, where: str) -> "JobEntry":
        """One job of a manifest, every field checked (a ValueError or UserError says which)."""
        job_id = check_job_id(data["job_id"])
        partition = data.get("partition")
        if partition is not None and not isinstance(partition, str):
            raise ValueError(f"{where}.partition: expected a name, got {type(partition).__name__}")
        if not isinstance(data["specs"], list) or not data["specs"]:
            raise ValueError(f"{where}.specs: a job measures at least one cell")
        job = CellJob.from_json(data["job"])
        if type(job.index) is not int or not 0 <= job.index < MAX_JOBS:
            raise ValueError(f"{where}.job.index: expected a job number, got {job.index!r}")
        rounds = job.request.rounds  # compared with the rounds a record holds
        if rounds is not None and (type(rounds) is not int or rounds < 1):
            raise ValueError(f"{where}.job.request.rounds: expected a count of rounds or null, got {rounds!r}")
        return cls(job=job, job_id=job_id, partition=partition,
                   specs=[CellSpec.from_json(s, f"{where}.specs[{i}]") for i, s in enumerate(data["specs"])])


@dataclass
class Submission:
    folder: Path
    results: Path
    command: list[str]
    jobs: list[JobEntry] = field(default_factory=list)

    @classmethod
    def new(cls, results_dir: Path, command: list[str]) -> "Submission":
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        folder = results.ensure_writable(results_dir).resolve() / "slurm" / name
        folder.mkdir(parents=True)
        return cls(folder=folder, results=results_dir.resolve(), command=command)

    @property
    def executor_folder(self) -> Path:
        return self.folder / "submitit"

    def cell_folder(self, index: int) -> Path:
        return self.folder / "cells" / str(index)

    def destination(self, entry: JobEntry) -> Path:
        return self.results / f"{self.folder.name}-cell{entry.job.index:04d}.json"

    def save(self) -> None:
        atomic_write(self.folder / MANIFEST, json.dumps({
            "schema": SCHEMA, "command": self.command, "jobs": [e.to_json() for e in self.jobs]}, indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "Submission":
        """The submission in `folder`; its results go to the folder that holds it (`<results>/slurm/`)."""
        folder = Path(folder).resolve()
        path = folder / MANIFEST
        try:
            if folder.parent.name != "slurm":
                raise UserError(f"a submission lies in a results folder's slurm/ folder, {folder} does not")
            data = json.loads(results.read_regular_file(path))
            if not isinstance(data, dict) or data.get("schema") != SCHEMA:
                raise ValueError(f"no {SCHEMA!r} schema tag")
            command = data["command"]
            if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
                raise ValueError("command: expected a list of arguments")
            jobs = [JobEntry.from_json(e, f"jobs[{i}]") for i, e in enumerate(data["jobs"])]
            if not jobs:
                raise ValueError("jobs: no job")
            for what, values in (("job number", [e.job.index for e in jobs]), ("job id", [e.job_id for e in jobs])):
                if len(set(values)) < len(values):
                    raise ValueError(f"jobs: two jobs have the same {what}")
            return cls(folder=folder, results=folder.parent.parent, command=command, jobs=jobs)
        except UserError as exc:
            raise UserError(f"{folder} is not a pybench Slurm submission ({exc})") from None
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
            what = "nested too deeply" if isinstance(exc, RecursionError) else exc
            raise UserError(f"{path}: malformed submission manifest: {what}"[:500]) from None


def collected(sub: Submission, entry: JobEntry) -> list[CellRecord] | None:
    """The records already gathered for this job, or None if it has not been collected."""
    dest = sub.destination(entry)
    return results.load(dest).records if dest.exists() else None


def collect_job(sub: Submission, entry: JobEntry, state: JobState) -> list[CellRecord]:
    """Write the job's results file (once) and return its records; Slurm must say it has ended."""
    done = collected(sub, entry)
    if done is not None:
        return done
    folder = sub.cell_folder(entry.job.index)
    error = _job_error(sub, entry, state)
    doc = _staged(folder)
    records = list(doc.records) if doc else []
    asked = entry.job.request.rounds
    if error:  # a worker killed by Slurm's SIGTERM failed because of the time limit: say so first
        for r in records:
            if r.status == "failed":
                r.error = f"{error}: {r.error}"
            elif r.ok and (asked is None or len(r.rounds) < asked):  # its rounds are kept, and say so
                r.cut_short = CutShort(error, len(r.rounds), asked)
                r.warnings.append(f"{error}; the cell stopped after {len(r.rounds)} round(s)")
    have = {r.key for r in records}
    specs = read_plan(folder) or entry.specs
    missing = [s for s in specs if s.key not in have]
    if missing:
        from pybench.rounds.runner import failed_record

        why = error or f"Slurm job {entry.job_id} returned without measuring this cell"
        records += [failed_record(s, why, _tail(job_paths(sub, entry).stderr)) for s in missing]
    env = dict(doc.environment) if doc else {"label": specs[0].label}
    node = env.get("slurm") if isinstance(env.get("slurm"), dict) else {}
    env["slurm"] = {"job_id": entry.job_id, "partition": node.get("partition") or entry.partition,
                    "node": node.get("node") or state.node or None, "state": state.state}
    store = ResultsFile(sub.destination(entry), env, sub.command)
    if doc:
        store.created = doc.created
    store.records = records
    store.save()
    return records


def _job_error(sub: Submission, entry: JobEntry, state: JobState) -> str | None:
    """Why the job did not finish its cell, or None.  Slurm's end state decides (a job that raised
    exits non-zero: FAILED), then what the job's log says it raised; a job Slurm no longer knows
    finished if its node said so (`node.FINISHED`)."""
    folder = sub.cell_folder(entry.job.index)
    if state.state == "COMPLETED" or (state.state == NOT_FOUND and _small_text(folder / FINISHED) is not None):
        return None
    reasons = [state.describe(entry.job_id)]
    cancelled = _small_text(folder / CANCELLED)
    if cancelled:
        reasons.insert(0, cancelled)
    if state.state in ("FAILED", NOT_FOUND):
        raised = _last_error_line(_tail(job_paths(sub, entry).stderr))
        if raised:
            reasons.append(f"the job failed on its node: {raised}")
    return ": ".join(reasons)


def mark_cancelled(sub: Submission, entries: list[JobEntry], why: str) -> None:
    """Say in each job's folder why pybench cancelled it, for the failed records collect writes."""
    for e in entries:
        atomic_write(sub.cell_folder(e.job.index) / CANCELLED, why + "\n")


def job_paths(sub: Submission, entry: JobEntry):  # -> submitit.core.utils.JobPaths
    """Where submitit keeps the job's pickles and logs."""
    from submitit.core.utils import JobPaths

    return JobPaths(sub.executor_folder / "%j", job_id=entry.job_id)


def _staged(folder: Path) -> results.ResultsDoc | None:
    files = sorted((folder / RECORDS).glob("*.json"))
    try:
        return results.load(files[-1]) if files else None
    except UserError:  # cut short mid-write cannot happen (atomic); anything else is no record
        return None


def _small_text(path: Path) -> str | None:
    """A marker file's text (a regular file of a few KiB), or None: anything else is no marker."""
    try:
        return results.read_regular_file(path, limit=4096).decode(errors="replace").strip()
    except UserError:
        return None


def _tail(path: Path) -> str:
    """The last lines of a job's log; '' where there is no regular file (a FIFO would block)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return ""
        data = os.pread(fd, TAIL_BYTES, max(0, st.st_size - TAIL_BYTES))
    except OSError:
        return ""
    finally:
        os.close(fd)
    return "\n".join(data.decode(errors="replace").splitlines()[-STDERR_TAIL_LINES:])


def _last_error_line(text: str) -> str:
    """The exception line of the traceback in a job's log ('ValueError: ...'), or ''."""
    errors = [ln.strip() for ln in text.splitlines() if ERROR_LINE.match(ln.strip())]
    return errors[-1] if errors else ""
