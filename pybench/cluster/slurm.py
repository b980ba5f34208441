"""Job states as Slurm reports them.

submitit reads states with `sacct`, which needs Slurm's accounting database; many small clusters
(and the local test cluster) have none.  `scontrol` knows every job that is queued, running or ended
within the cluster's MinJobAge, so it comes first; `sacct` answers for older jobs where it works.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from pybench.errors import UserError

# A job in none of these states has ended for good (COMPLETED, FAILED, TIMEOUT, CANCELLED, ...).
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
          "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "PREEMPTED"}
UNKNOWN = "UNKNOWN"  # Slurm could not be asked: the job may well be alive
NOT_FOUND = "NOT_FOUND"  # Slurm answered and no longer knows the job: it has ended
TIMEOUT_S = 30.0
JOB_ID = re.compile(r"[0-9]{1,18}(_[0-9]{1,9})?")  # a job, or submitit's ARRAY_TASK


def check_job_id(job_id: object) -> str:
    """A job id as Slurm and submitit write it, or a UserError: it becomes an argument of scontrol and
    scancel and a folder's name, so '--help' or '../..' must never get that far."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise UserError(f"not a Slurm job id: {str(job_id)[:40]!r} (digits, or digits_digits for an array task)")
    return job_id


@dataclass(frozen=True)
class JobState:
    state: str  # Slurm's JobState: PENDING, RUNNING, COMPLETED, TIMEOUT, CANCELLED, ...
    reason: str = ""  # Slurm's Reason (why pending, or why it ended), '' when None
    node: str = ""
    exit_code: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE or self.state == UNKNOWN

    @property
    def queued(self) -> bool:
        return self.state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "CONFIGURING")

    def describe(self, job_id: str) -> str:
        """'Slurm job 12_3 TIMEOUT (TimeLimit) on node7, exit code 0:15'."""
        if self.state == NOT_FOUND:  # e.g. an array task cancelled while queued never had a record
            return (f"Slurm job {job_id} is no longer known to Slurm (cancelled while queued, or ended "
                    "longer ago than the cluster keeps jobs) and left no result")
        extra = f" ({self.reason})" if self.reason and self.reason != "None" else ""
        where = f" on {self.node}" if self.node and self.node != "(null)" else ""
        code = f", exit code {self.exit_code}" if self.exit_code not in ("", "0:0") else ""
        return f"Slurm job {job_id} {self.state}{extra}{where}{code}"


def _run(cmd: list[str]) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _task_ids(array_task: str) -> list[str]:
    """'3' -> ['3']; a pending remainder '2-5%2' or '1,4-5' -> every index it stands for."""
    out = []
    for part in array_task.split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        out += [str(i) for i in range(int(lo), int(hi or lo) + 1)]
    return out


def parse_scontrol(text: str) -> dict[str, JobState]:
    """`scontrol -o show job` lines as {job id: state}, array tasks as 'ARRAY_TASK' (submitit's ids)."""
    out = {}
    for line in text.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobState" not in fields:
            continue
        state = JobState(fields["JobState"], fields.get("Reason", ""), fields.get("NodeList", ""),
                         fields.get("ExitCode", ""))
        if fields.get("ArrayJobId") and fields.get("ArrayTaskId"):
            for task in _task_ids(fields["ArrayTaskId"]):
                out[f"{fields['ArrayJobId']}_{task}"] = state
        else:
            out[fields["JobId"]] = state
    return out


def parse_sacct(text: str) -> dict[str, JobState]:
    """`sacct --parsable2 -n -o JobID,State,NodeList,ExitCode,Reason` lines (steps skipped)."""
    out = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 5 or "." in parts[0]:
            continue
        job, state, node, code, reason = parts[:5]
        out[job] = JobState(state.split()[0] if state else UNKNOWN, reason, node, code)
    return out


def states(job_ids: list[str]) -> dict[str, JobState]:
    """The state of every job id (submitit's 'ARRAY_TASK' or plain ids); UNKNOWN where Slurm has
    forgotten a job or cannot be asked.  One scontrol call per array, one sacct call for the rest."""
    for j in job_ids:
        check_job_id(j)
    found: dict[str, JobState] = {}
    answered = set()  # arrays that scontrol answered for, listed or not
    for array in dict.fromkeys(j.split("_")[0] for j in job_ids):
        text = _run(["scontrol", "-o", "show", "job", array])
        if text is None:
            text = _run(["scontrol", "-o", "show", "job"])  # an array it has forgotten is an error
        if text is not None:
            answered.add(array)
            found.update(parse_scontrol(text))
    missing = [j for j in job_ids if j not in found]
    if missing:
        text = _run(["sacct", "--parsable2", "-n", "-X", "-o", "JobID,State,NodeList,ExitCode,Reason",
                     *(a for j in missing for a in ("-j", j))])
        found.update(parse_sacct(text or ""))
    return {j: found.get(j, JobState(NOT_FOUND if j.split("_")[0] in answered else UNKNOWN)) for j in job_ids}


def cancel(job_ids: list[str]) -> None:
    """scancel, best effort: a job that has just ended is no error."""
    if job_ids:
        _run(["scancel", *map(check_job_id, job_ids)])
