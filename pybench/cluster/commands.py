"""`run`/`compare --executor slurm`, `collect` and `env --executor slurm`: submit, watch, gather.

The submitter polls Slurm (one scontrol call per array) and collects each job as it ends, with a
progress bar over jobs.  Ctrl-C or SIGTERM cancels what is still queued or running and keeps every
job already gathered; `collect` later turns the cancelled ones into failed records.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from pybench.machine import environment
from pybench.cluster import slurm
from pybench.cluster.node import CellJob, run_cell_job, write_node_facts
from pybench.cluster.options import SlurmConfig
from pybench.cluster.submission import (JobEntry, Submission, collect_job, collected,
                                        mark_cancelled)
from pybench.errors import UserError
from pybench.records.record import CellRecord
from pybench.records.results import read_regular_file
from pybench.records.spec import CellSpec
from pybench.text import terminal_text
from pybench.request.request import Request, SlurmOptions
from pybench.rounds.cells import build_specs
from pybench.protocol.workloads import resolve_models

POLL_S = 1.0


def executor(folder: Path, config: SlurmConfig, partition: str | None):  # -> submitit.SlurmExecutor
    import submitit

    try:
        ex = submitit.SlurmExecutor(folder=folder / "%j", python=config.python)
    except RuntimeError as exc:  # submitit found no srun
        raise UserError(f"--executor slurm needs Slurm's commands here ({exc})") from None
    ex.update_parameters(**config.parameters(partition))
    return ex


def _submit_error(exc: Exception) -> UserError:
    return UserError("sbatch refused the job: " + " ".join(str(exc).split())[:500])


def submit(request: Request, config: SlurmConfig) -> Submission:
    """Validate every cell as a local run would, then one job array per partition."""
    import submitit

    # Validated here with this machine's CPU; each node builds its own specs for its own device.
    check = replace(request, cell=replace(request.cell, device="cpu", threads=None))
    env = environment.capture(request.cell.label)
    sub = Submission.new(request.results, list(request.argv))
    frameworks = request.framework_names()
    try:
        for partition in config.partitions:
            jobs = []
            for w in resolve_models(list(request.models)):
                index = len(sub.jobs) + len(jobs)
                specs = build_specs(check.for_model(w.name), frameworks, env)
                where = f"partition {partition}" if partition else "the default partition"
                specs = [_unrun(s, config, where) for s in specs]
                sub.cell_folder(index).mkdir(parents=True)
                jobs.append((CellJob(index, request.for_model(w.name), str(sub.cell_folder(index))), partition, specs))
            try:
                submitted = executor(sub.executor_folder, config, partition).map_array(
                    run_cell_job, [j for j, _, _ in jobs])
            except (submitit.core.utils.FailedJobError, OSError) as exc:
                raise _submit_error(exc) from None
            sub.jobs += [JobEntry(j, s.job_id, p, specs) for (j, p, specs), s in zip(jobs, submitted)]
            sub.save()
    except BaseException:  # all or nothing: no orphans of a half submission, no folder of nothing
        slurm.cancel([e.job_id for e in sub.jobs])
        shutil.rmtree(sub.folder, ignore_errors=True)
        raise
    return sub


def _unrun(spec: CellSpec, config: SlurmConfig, where: str) -> CellSpec:
    """The spec a job that never reached its node is recorded under: no machine's name."""
    return replace(spec, device="cuda:0" if config.gpus else "cpu", gpu=None, device_name=f"not run ({where})")


def execute(request: Request, console: Console) -> list[CellRecord] | None:
    """Submit the matrix; unless detached, watch it and return every record (None when detached)."""
    sub = submit(request, SlurmConfig.of(request.slurm, request.cell.device, request.cell.threads))
    console.print(f"submitted {len(sub.jobs)} Slurm job(s); submission folder {sub.folder}")
    if request.slurm.detach:
        console.print(f"gather the results with: pybench collect {sub.folder}")
        return None
    try:
        records = watch(sub, console)
    except BaseException as exc:
        left = [e for e in sub.jobs if collected(sub, e) is None]
        mark_cancelled(sub, left, f"cancelled by pybench when the submitter got {type(exc).__name__}")
        slurm.cancel([e.job_id for e in left])
        try:
            console.print(f"pybench: cancelled {len(left)} Slurm job(s); {len(sub.jobs) - len(left)} "
                          f"collected into {sub.results}; `pybench collect {sub.folder}` records the rest")
        except OSError:
            pass
        raise
    console.print(f"results saved to {sub.results}")
    return records


def watch(sub: Submission, console: Console, wait: bool = True) -> list[CellRecord]:
    """Collect every job as it ends (all of them, or with `wait` off, those ended now)."""
    out: dict[int, list[CellRecord]] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("jobs", total=len(sub.jobs))
        while True:
            pending = [e for e in sub.jobs if e.job.index not in out]
            for e in pending:  # gathered by an earlier run of collect: no Slurm call
                records = collected(sub, e)
                if records is not None:
                    out[e.job.index] = records
            pending = [e for e in pending if e.job.index not in out]
            states = slurm.states([e.job_id for e in pending]) if pending else {}
            for e in pending:
                state = states[e.job_id]
                if state.active:  # a job that left its result may still end TIMEOUT: wait for Slurm's word
                    continue
                out[e.job.index] = collect_job(sub, e, state)
                for r in out[e.job.index]:
                    if r.status == "failed":
                        progress.console.print(Text.assemble(  # the error quotes the job's log
                            ("failed ", "red"), terminal_text(f"{r.spec.model} {r.spec.framework}: {r.error}")))
            failed = sum(any(r.status == "failed" for r in rs) for rs in out.values())
            live = [states[e.job_id] for e in pending if e.job.index not in out]
            queued = sum(s.queued for s in live)
            progress.update(task, completed=len(out), description=(
                f"queued {queued}, running {len(live) - queued}, done {len(out) - failed}, failed {failed}"))
            if not live or not wait:
                break
            time.sleep(POLL_S)
    return [r for i in sorted(out) for r in out[i]]


def cmd_collect(args: argparse.Namespace, console: Console) -> list[CellRecord]:
    sub = Submission.load(args.folder)
    records = watch(sub, console, wait=args.wait)
    left = sum(collected(sub, e) is None for e in sub.jobs)
    console.print(f"{len(sub.jobs) - left} of {len(sub.jobs)} job(s) collected into {sub.results}"
                  + (f"; {left} still queued or running: collect again later" if left else ""))
    return records


def node_env(options: SlurmOptions, label: str | None, console: Console) -> dict:
    """`pybench env` run as a Slurm job on a node of the partition; waits for it."""
    config = SlurmConfig.of(options)  # not named `slurm`: that is the module this function polls with
    if len(config.partitions) > 1:
        raise UserError("env --executor slurm takes one --partition")
    import submitit

    # The job's logs and its JSON answer, on a path the node sees too (the home folder is shared on
    # clusters); only the JSON is read back, never submitit's result pickle.
    cache = environment.user_cache() / "slurm-env"
    folder = Submission.new(cache, sys.argv).folder
    answer = folder / "facts.json"
    try:
        job = executor(folder, config, config.partitions[0]).submit(write_node_facts, label, str(answer))
    except submitit.core.utils.FailedJobError as exc:
        raise _submit_error(exc) from None
    console.print(f"Slurm job {job.job_id} submitted; waiting for a node")
    try:
        while True:
            state = slurm.states([job.job_id])[job.job_id]
            if not state.active:
                break
            time.sleep(POLL_S)
        try:
            facts = json.loads(read_regular_file(answer))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, UserError):
            raise UserError(f"pybench env found no answer from the node ({terminal_text(state.describe(job.job_id))}); "
                            f"its log: {job.paths.stderr}") from None
        if not isinstance(facts, dict) or not isinstance(facts.get("frameworks"), dict):
            raise UserError(f"pybench env: the node's answer in {answer} is not what its job writes")
        shutil.rmtree(folder, ignore_errors=True)  # kept only when something went wrong
        return facts
    except BaseException:
        slurm.cancel([job.job_id])
        raise
