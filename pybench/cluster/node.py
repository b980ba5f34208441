"""What a Slurm job runs on its node: one cell, all its frameworks and rounds, through pybench's own
runner, exactly as a local run does (the node's cores and GPU, the same worker processes).

A job leaves, in its own folder of the submission: `plan.json`, the cell's specs as built on the
node (so a job that dies later still names the machine it ran on), and a results file under
`records/` that the runner rewrites after every worker, so a job killed half-way keeps what it
measured.  A compare's job then checks parity on the node, as a local compare does on its machine.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from pybench.machine import environment
from pybench.backends import FRAMEWORKS
from pybench.errors import UserError
from pybench.machine.lifetime import install_signal_handlers
from pybench.records import results
from pybench.records.results import ResultsFile, atomic_write
from pybench.records.spec import CellSpec
from pybench.request.request import Request
from pybench.rounds.cells import build_specs
from pybench.rounds.matrix import Schedule, run_matrix
from pybench.rounds.parity import after_compare
from pybench.rounds.runner import prime_cell

PLAN = "plan.json"
RECORDS = "records"
FINISHED = "finished"  # written after the last round and parity: the job ran its course (when Slurm has forgotten it)


@dataclass(frozen=True)
class CellJob:
    """One job: a cell (one model) of the matrix, all the request's frameworks."""

    index: int
    request: Request  # the submitted request, narrowed to this job's model
    folder: str  # this job's folder in the submission (a shared filesystem)

    @property
    def model(self) -> str:
        return self.request.models[0]

    def to_json(self) -> dict:
        return {"index": self.index, "request": self.request.to_json(), "folder": self.folder}

    @classmethod
    def from_json(cls, data: dict) -> "CellJob":
        return cls(index=int(data["index"]), request=Request.from_json(data["request"]), folder=str(data["folder"]))


def run_cell_job(job: CellJob) -> str:
    """Measure the job's cell on this node; returns the path of its results file."""
    # submitit turns its early time-out signal into an error that ends the job before Slurm's limit;
    # a cell has no checkpoint to resume from, so let Slurm's own limit end it (state TIMEOUT).
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    # Slurm's SIGTERM (time limit, scancel, preemption) stops the matrix as it stops a local run: the
    # worker is killed, what finished stays in the file, and the job ends at once.
    install_signal_handlers()
    request = job.request
    env = {**environment.capture(request.cell.label, request.cell.threads, request.cell.tf32), "slurm": slurm_facts()}
    specs = build_specs(request, request.framework_names(), env)
    folder = Path(job.folder)
    atomic_write(folder / PLAN, json.dumps([s.to_json() for s in specs]))
    store = ResultsFile.create(folder / RECORDS, env, list(request.argv))
    records = run_matrix(specs, store, Schedule.of(request), peak_gflops=request.peak_gflops, prime=prime_cell)
    after_compare(request, records, store)
    atomic_write(folder / FINISHED, "")
    return str(store.path)


def slurm_facts() -> dict[str, str | None]:
    """Where this job runs, as Slurm tells it: submitit's job id (ARRAY_TASK), the partition, the node."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return {"job_id": f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID"),
            "partition": os.environ.get("SLURM_JOB_PARTITION"), "node": os.environ.get("SLURMD_NODENAME")}


def read_plan(folder: Path) -> list[CellSpec] | None:
    """The specs a job built on its node, or None when it never got that far."""
    try:  # data on a shared filesystem: a regular file of bounded size, any shape
        return [CellSpec.from_json(s) for s in json.loads(results.read_regular_file(folder / PLAN))]
    except (UserError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def node_facts(label: str | None) -> dict:
    """What `pybench env` shows, captured on the node."""
    return {**environment.capture(label), "frameworks": {fw.name: fw.describe() for fw in FRAMEWORKS.values()}}


def write_node_facts(label: str | None, path: str) -> None:
    """`env --executor slurm`'s job: the node's facts as JSON at `path`, which the submitter reads
    (never submitit's result pickle: the folder is on a filesystem other users may write to)."""
    atomic_write(Path(path), json.dumps(node_facts(label), default=str))
