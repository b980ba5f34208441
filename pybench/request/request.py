"""One typed request: what `run` or `compare` was asked, parsed once from the command line and the only
thing read after it (the cells it makes, the local and the Slurm executor; a Slurm job gets it as
JSON).  Its limits and defaults sit beside it: the parser bounds every number by them, and the
request checks what depends on several options at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pybench.backends import get_framework, resolve_frameworks
from pybench.errors import UserError
from pybench.limits import CELL_BUDGET_S, DEFAULT_RESULTS, SLURM_MAX_PARALLEL, SLURM_TIME
from pybench.machine.malloc import DEFAULT_MALLOC
from pybench.protocol.group import StopRule
from pybench.records.statistics import DEFAULT_STAT, STATS
from pybench.request.variants import PRESETS, Variant, parse_variant

COMMANDS = ("run", "compare")
EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class CellOptions:
    """What every cell of the request is measured with (each `CellSpec` is built from these)."""

    device: str = "auto"  # auto, cpu, cuda or cuda:N, resolved when cells are built
    batch_size: int | None = None  # None: the workload's default for the device
    image_size: int = 224
    threads: int | None = None  # None: every available core
    tf32: bool = False
    seed: int = 0
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    label: str | None = None  # the machine's name; None: its host name
    malloc: str = DEFAULT_MALLOC  # how workers' allocators treat freed memory (pybench.machine.malloc)


@dataclass(frozen=True)
class SlurmOptions:
    """`--executor slurm`'s options, as given."""

    partitions: tuple[str, ...] = ()  # () the cluster's default partition
    time: str = SLURM_TIME
    extra: tuple[tuple[str, str], ...] = ()  # other sbatch options as (key, value)
    python: str | None = None  # the interpreter on the nodes
    gpus_per_cell: int | None = None  # None: 1 with a CUDA device, else none
    max_parallel: int = SLURM_MAX_PARALLEL
    detach: bool = False

    @property
    def given(self) -> list[str]:
        """The options set away from their defaults, as the command line names them."""
        names = {"partitions": "partition", "time": "slurm-time", "extra": "slurm-opt", "python": "python",
                 "gpus_per_cell": "slurm-gpus-per-cell", "max_parallel": "max-parallel", "detach": "detach"}
        default = SlurmOptions()
        return [f"--{names[f.name]}" for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)]

    def check(self, executor: str) -> None:
        """Cluster options with the local executor are a mistake the user should hear about."""
        if executor == "local" and self.given:
            raise UserError(f"{self.given[0]} needs --executor slurm")


@dataclass(frozen=True)
class Request:
    """A matrix to measure: models x frameworks (or variants), the cell options, when rounds stop and
    how they run.  Built once; everything after the parser reads it, never the command line."""

    command: str  # run or compare
    models: tuple[str, ...]
    frameworks: tuple[str, ...] = ("all",)  # as named: compare keeps a repeated one (the A/A control)
    variants: tuple[Variant, ...] = ()
    presets: tuple[str, ...] = ()
    cell: CellOptions = field(default_factory=CellOptions)
    stop: StopRule = field(default_factory=StopRule)  # within one round; `sequential` follows `rounds`
    rounds: int | None = None  # None: auto, until every ratio is decided or the budget is spent
    budget: float = CELL_BUDGET_S  # seconds per cell, for auto rounds
    lockstep: bool = False
    parity: bool = True  # compare: each framework's outputs checked against PyTorch's (rounds/parity.py)
    timeout: float | None = None  # per worker; None: generous, from the workload
    stat: str = DEFAULT_STAT
    results: Path = DEFAULT_RESULTS
    peak_gflops: float | None = None
    executor: str = "local"
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    argv: tuple[str, ...] = ()  # the command line, recorded in the results file

    def __post_init__(self) -> None:
        if self.command not in COMMANDS:
            raise UserError(f"a request is one of {', '.join(COMMANDS)}, got {self.command!r}")
        if self.executor not in EXECUTORS:
            raise UserError(f"unknown executor {self.executor!r}; valid: {', '.join(EXECUTORS)}")
        if self.stat not in STATS:
            raise UserError(f"unknown statistic {self.stat!r}; valid: {', '.join(STATS)}")
        if self.stop.min_samples > self.stop.max_samples:
            raise UserError(f"--min-samples {self.stop.min_samples} is above --max-samples {self.stop.max_samples}")
        if self.stop.sequential != self.auto:  # ratios of auto rounds use the stricter level
            object.__setattr__(self, "stop", replace(self.stop, sequential=self.auto))
        if (self.variants or self.presets) and self.executor != "local":
            raise UserError("--variant and --variants run on this machine only, not with --executor "
                            f"{self.executor}")
        if self.variants and self.frameworks != ("all",):
            raise UserError("--framework and --variant both choose frameworks: name the framework in each variant")
        unknown = [p for p in self.presets if p not in PRESETS]
        if unknown:
            raise UserError(f"unknown preset {unknown[0]!r}; valid: {', '.join(PRESETS)}")
        self.slurm.check(self.executor)
        for name in self.frameworks:
            if name != "all":
                get_framework(name)

    @property
    def auto(self) -> bool:
        return self.rounds is None

    def framework_names(self) -> list[str]:
        """The frameworks side by side: all of them, or those named (compare keeps a repeated one)."""
        if "all" in self.frameworks:
            return [fw.name for fw in resolve_frameworks(["all"])]
        names = list(self.frameworks)
        return names if self.command == "compare" else list(dict.fromkeys(names))

    def for_model(self, model: str) -> "Request":
        return replace(self, models=(model,))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["results"] = str(self.results)
        data["variants"] = [str(v) for v in self.variants]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Request":
        """The request a Slurm job was given (written by this same code on the submitting side)."""
        slurm = dict(data["slurm"])
        slurm["partitions"] = tuple(slurm["partitions"])
        slurm["extra"] = tuple(tuple(kv) for kv in slurm["extra"])
        return cls(**{
            **data, "models": tuple(data["models"]), "frameworks": tuple(data["frameworks"]),
            "variants": tuple(parse_variant(v) for v in data["variants"]), "presets": tuple(data["presets"]),
            "cell": CellOptions(**data["cell"]), "stop": StopRule(**data["stop"]), "results": Path(data["results"]),
            "slurm": SlurmOptions(**slurm), "argv": tuple(data["argv"]),
        })
