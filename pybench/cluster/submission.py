"""A submission's folder and manifest, and gathering finished jobs into the results folder.

Layout, under the results folder: `slurm/<name>/submission.json` (the manifest: where results go,
the jobs and their Slurm ids), `slurm/<name>/cells/<index>/` (what each job writes on its node,
`pybench.cluster.node`) and `slurm/<name>/submitit/` (submitit's pickles and the jobs' logs).
Reports read only the results folder's own `*.json`, so nothing in here is mistaken for a result.

Collecting a job writes one results file, `<results>/<name>-cell<index>.json`, once the job has
ended: its records as measured on the node, plus a failed record, with Slurm's reason and the job's
stderr tail, for every framework it did not finish.  A file already there means already collected,
so collecting again changes nothing.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from pybench.records import results
from pybench.cluster.node import RECORDS, CellJob, read_plan
from pybench.cluster.slurm import NOT_FOUND, JobState
from pybench.errors import UserError
from pybench.records.record import CellRecord
from pybench.records.results import ResultsFile, atomic_write
from pybench.records.spec import CellSpec

MANIFEST = "submission.json"
CANCELLED = "cancelled"  # in a job's folder: why pybench cancelled it
SCHEMA = "pybench.slurm-submission"
STDERR_TAIL_LINES = 20
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
    def from_json(cls, data: dict) -> "JobEntry":
        return cls(job=CellJob.from_json(data["job"]), job_id=str(data["job_id"]),
                   partition=data.get("partition"), specs=[CellSpec.from_json(s) for s in data["specs"]])


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
            "schema": SCHEMA, "results": str(self.results), "command": self.command,
            "jobs": [e.to_json() for e in self.jobs]}, indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "Submission":
        path = Path(folder) / MANIFEST
        try:
            data = json.loads(results.read_regular_file(path))
            if data.get("schema") != SCHEMA:
                raise ValueError(f"no {SCHEMA!r} schema tag")
            return cls(folder=Path(folder).resolve(), results=Path(data["results"]), command=data["command"],
                       jobs=[JobEntry.from_json(e) for e in data["jobs"]])
        except UserError as exc:
            raise UserError(f"{folder} is not a pybench Slurm submission ({exc})") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{path}: malformed submission manifest: {exc}") from None


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
    if error:  # a worker killed by Slurm's SIGTERM failed because of the time limit: say so first
        for r in records:
            if r.status == "failed":
                r.error = f"{error}: {r.error}"
            elif r.ok:  # the rounds it finished are good measurements: kept, with the reason it stopped
                r.warnings.append(f"{error}; the cell stopped after {len(r.rounds)} round(s)")
    have = {r.key for r in records}
    specs = read_plan(folder) or entry.specs
    missing = [s for s in specs if s.key not in have]
    if missing:
        from pybench.rounds.runner import failed_record

        why = error or f"Slurm job {entry.job_id} returned without measuring this cell"
        records += [failed_record(s, why, _tail(job_paths(sub, entry).stderr)) for s in missing]
    env = dict(doc.environment) if doc else {"label": specs[0].label if specs else "slurm"}
    env["slurm"] = {"job_id": entry.job_id, "partition": entry.partition, "state": state.state}
    store = ResultsFile(sub.destination(entry), env, sub.command)
    if doc:
        store.created = doc.created
    store.records = records
    store.save()
    return records


def _job_error(sub: Submission, entry: JobEntry, state: JobState) -> str | None:
    """Why the job did not finish its cell, or None: Slurm's end state first, then what it raised."""
    import submitit

    reasons = []
    pickle = job_paths(sub, entry).result_pickle.exists()
    if state.state != "COMPLETED" and not (state.state == NOT_FOUND and pickle):
        reasons.append(state.describe(entry.job_id))
        marker = sub.cell_folder(entry.job.index) / CANCELLED
        if marker.exists():
            reasons.insert(0, marker.read_text().strip())
    if pickle:
        try:
            submitit.SlurmJob(folder=sub.executor_folder / "%j", job_id=entry.job_id).result()
        except Exception as exc:  # noqa: BLE001 - whatever the job raised becomes its failed records
            reasons.append(_last_error_line(str(exc)))
    elif not reasons:
        reasons.append(f"Slurm job {entry.job_id} ended without a result")
    return ": ".join(reasons) or None


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


def _tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-STDERR_TAIL_LINES:])
    except OSError:
        return ""


def _last_error_line(text: str) -> str:
    """The exception line of a traceback submitit passes on ('ValueError: ...'), else its first line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ERROR_LINE.match(ln)]
    return f"the job failed on its node: {(errors or lines or ['no message'])[-1]}"
