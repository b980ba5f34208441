"""What one cell is: the unit the runner hands to a worker process as JSON."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields

from pybench.errors import UserError
from pybench.workloads import PHASES, get_workload


def available_cores() -> int:
    """Cores this process may run on (affinity-aware, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity API
        return os.cpu_count() or 1


DTYPES = ("fp32", "bf16", "fp16")


def cuda_index(device: str) -> int:
    """The N of a resolved 'cuda:N' device; -1 for the CPU."""
    return int(device.split(":")[1]) if device.startswith("cuda:") else -1


@dataclass(frozen=True)
class StopRule:
    """When the protocol stops sampling a phase."""

    precision: float = 0.02  # CI half-width of the median, relative
    min_samples: int = 5
    max_samples: int = 1000
    max_time: float = 60.0  # seconds of sampling per cell, warm-up included
    confidence: float = 0.95


@dataclass(frozen=True)
class CellSpec:
    framework: str
    model: str
    device: str  # "cpu" or "cuda:N", already resolved
    batch_size: int
    image_size: int
    dtype: str = "fp32"  # fp32, or bf16/fp16 (PyTorch: autocast; Flux: Float16 where supported)
    channels_last: bool = False  # PyTorch only
    compile: bool = False  # PyTorch only: torch.compile
    threads: int = field(default_factory=available_cores)
    tf32: bool = False
    seed: int = 0
    stop: StopRule = field(default_factory=StopRule)
    phases: tuple[str, ...] = PHASES

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise UserError(f"batch size must be positive, got {self.batch_size}")
        if self.image_size <= 0:
            raise UserError(f"image size must be positive, got {self.image_size}")
        smallest = get_workload(self.model).min_image_size
        if self.image_size < smallest:
            raise UserError(
                f"image size {self.image_size} is too small for {self.model}: "
                f"its five stride-2 stages need at least {smallest}"
            )
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")
        if self.threads <= 0:
            raise UserError(f"threads must be positive, got {self.threads}")

    @property
    def variant(self) -> str:
        """Everything that makes this row not a plain fp32 row; '' for the plain one."""
        tags = [] if self.dtype == "fp32" else [self.dtype]
        tags += ["channels-last"] * self.channels_last + ["compiled"] * self.compile
        return ", ".join(tags)

    @property
    def cell_id(self) -> str:
        """Key that matches the same cell across frameworks and runs."""
        base = f"{self.model}/{self.device_kind}/b{self.batch_size}/{self.image_size}px"
        return f"{base}/{self.variant.replace(', ', '+')}" if self.variant else base

    @property
    def device_kind(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "cpu"

    def to_json(self) -> dict:
        return {**asdict(self), "variant": self.variant}

    @classmethod
    def from_json(cls, data: dict) -> "CellSpec":
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["stop"] = StopRule(**kwargs.get("stop", {}))
        kwargs["phases"] = tuple(kwargs.get("phases", cls.phases))
        return cls(**kwargs)
