"""The options of `--executor slurm` on run, compare and env, and their validation."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

from pybench.errors import UserError
from pybench.limits import MAX_COUNT, SLURM_MAX_PARALLEL, SLURM_TIME
from pybench.records.statistics import DEFAULT_STAT, STATS
from pybench.request.request import EXECUTORS, SlurmOptions

TIME_FORMAT = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")  # minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[a-z][a-z0-9-]*", key.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not an sbatch option as key=value (e.g. account=lab)")
    return key.strip(), value


def positive_int(text: str) -> int:
    if not text.isdigit() or len(text) > 6 or not 0 < int(text) <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} must be a whole number from 1 to {MAX_COUNT}")
    return int(text)


def slurm_time(text: str) -> str:
    if not TIME_FORMAT.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a Slurm time limit (minutes, H:MM:SS or D-HH:MM)")
    return text


def add_executor_options(p: argparse.ArgumentParser, matrix: bool = True) -> None:
    """`matrix`: the options of run and compare; without it, those that `env` needs."""
    g = p.add_argument_group("cluster (--executor slurm)")
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local (default) or slurm: one Slurm job per cell, through submitit")
    g.add_argument("--partition", action="append", default=[],
                   help="Slurm partition; repeat to run the matrix on each (default: the cluster's)")
    g.add_argument("--slurm-time", type=slurm_time, default=SLURM_TIME,
                   help=f"time limit of each job, in Slurm's format (default {SLURM_TIME})")
    g.add_argument("--slurm-opt", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. account=lab, qos=high, constraint=v100")
    g.add_argument("--python", help="the interpreter on the nodes (default: this one; a shared filesystem)")
    g.add_argument("--slurm-gpus-per-cell", type=positive_int,
                   help="GPUs per job (default: 1 with --device cuda*, else none)")
    if matrix:
        g.add_argument("--max-parallel", type=positive_int, default=SLURM_MAX_PARALLEL,
                       help=f"jobs of an array running at once (default {SLURM_MAX_PARALLEL})")
        g.add_argument("--detach", action="store_true",
                       help="submit and return; gather later with `pybench collect FOLDER`")


@dataclass(frozen=True)
class SlurmConfig:
    partitions: tuple[str | None, ...]
    time: str = SLURM_TIME
    extra: dict[str, str] = field(default_factory=dict)
    python: str | None = None
    gpus: int = 0
    cpus: int | None = None  # None: the whole node (--exclusive)
    max_parallel: int = SLURM_MAX_PARALLEL

    @classmethod
    def of(cls, slurm: SlurmOptions, device: str = "auto", threads: int | None = None) -> "SlurmConfig":
        """The jobs' resources: `device` and `threads` are the request's (env has neither)."""
        gpus = slurm.gpus_per_cell
        if gpus is None:
            gpus = 1 if device.startswith("cuda") else 0
        elif device == "cpu":
            raise UserError("--slurm-gpus-per-cell asks for GPUs for a --device cpu run; drop one of them")
        extra = dict(slurm.extra)
        for key in ("partition", "time", "array", "output", "error", "cpus-per-task", "gpus-per-node"):
            if key in extra:
                raise UserError(f"--slurm-opt {key}=... is set by pybench; use its own option")
        return cls(partitions=tuple(dict.fromkeys(slurm.partitions)) or (None,), time=slurm.time, extra=extra,
                   python=slurm.python, gpus=gpus, cpus=threads, max_parallel=slurm.max_parallel)

    def parameters(self, partition: str | None) -> dict:
        """submitit's SlurmExecutor parameters for one partition's array."""
        params: dict = {"job_name": "pybench", "array_parallelism": self.max_parallel, "use_srun": False,
                        "additional_parameters": {**self.extra, "time": self.time}}
        # No srun: the job's own step runs the cell with every core and GPU of its allocation.
        if partition:
            params["partition"] = partition
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if self.cpus:
            params["cpus_per_task"] = self.cpus
        else:  # no --threads: the cell uses every core of the node, as a local run would
            params["exclusive"] = True
        return params


def slurm_options(args: argparse.Namespace) -> SlurmOptions:
    """The parsed cluster options as the request holds them (env has no --max-parallel or --detach)."""
    return SlurmOptions(partitions=tuple(args.partition), time=args.slurm_time, extra=tuple(args.slurm_opt),
                        python=args.python, gpus_per_cell=args.slurm_gpus_per_cell,
                        max_parallel=getattr(args, "max_parallel", SLURM_MAX_PARALLEL),
                        detach=getattr(args, "detach", False))


def add_collect_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="gather the results of a Slurm submission (idempotent)")
    p.add_argument("folder", type=Path, help="the submission folder that run/compare --executor slurm printed")
    p.add_argument("--wait", action="store_true", help="wait for the jobs still queued or running")
    p.add_argument("--stat", choices=STATS, default=DEFAULT_STAT)
