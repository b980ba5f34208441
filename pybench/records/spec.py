"""What one cell is: the unit the runner hands to a worker process as JSON, and the one identity
(`CellKey`) that reports, diff and plots use to decide which measurements are the same cell."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from pybench.machine.devices import Device
from pybench.machine.environment import available_cores
from pybench.machine.malloc import DEFAULT_MALLOC, OLD_RECORDS_MALLOC, check_malloc
from pybench.errors import UserError
from pybench.limits import MAX_BATCH, MAX_IMAGE, MAX_SAMPLES, MAX_SEED, MAX_THREADS, MAX_TIME_S
from pybench.protocol.group import StopRule
from pybench.protocol.phases import check_phases
from pybench.records.shape import Malformed, field_of, finite_within, shown, text
from pybench.protocol.workloads import get_workload

DTYPES = ("fp32", "bf16", "fp16")
DEVICE = re.compile(r"cpu|cuda:[0-9]{1,3}")
def _within(name: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    if not finite_within(value, low, high) or (low_open and value == low):
        side = f"above {shown(low)}" if low_open else f"at least {shown(low)}"
        raise UserError(f"{name} must be {side} and at most {shown(high)}, got {shown(value)}")


def check_stop(stop: StopRule) -> None:
    """Sampling limits the protocol can honour (a precision of 1e308 or 10**30 samples cannot be)."""
    _within("precision", stop.precision, 0, 1, low_open=True)
    _within("min samples", stop.min_samples, 1, MAX_SAMPLES)
    _within("max samples", stop.max_samples, 1, MAX_SAMPLES)
    _within("max time", stop.max_time, 0, MAX_TIME_S, low_open=True)
    _within("confidence", stop.confidence, 0.5, 1, low_open=True)
    if stop.confidence == 1:
        raise UserError("confidence must be below 1")
    if stop.min_samples > stop.max_samples:
        raise UserError(f"min samples {stop.min_samples} is above max samples {stop.max_samples}")


def cuda_index(device: str) -> int:
    """The CUDA device number of 'cpu' (-1), 'cuda' (0) or 'cuda:N' (N)."""
    if not device.startswith("cuda"):
        return -1
    return int(device.split(":")[1]) if ":" in device else 0


@dataclass(frozen=True, order=True)
class CellKey:
    """Everything that changes a measurement.  Records that differ in any field are never merged or
    paired; `cell` drops the framework and its framework-specific options, giving the rows that a
    table puts side by side."""

    model: str
    device_kind: str  # "cpu" or "cuda"
    device_name: str  # CPU model or GPU name: runs on different machines never mix
    label: str  # the machine's name (--label)
    batch_size: int
    image_size: int
    dtype: str
    threads: int
    tf32: bool
    framework: str = ""
    channels_last: bool = False
    compile: bool = False
    variant_name: str = ""  # a row's own name in its cell: the second of an A/A pair, a named variant
    compile_mode: str = ""  # the framework's compiler mode; '' its default
    interpreter: str = ""  # another Python a variant runs under; '' the one pybench runs in
    named_variant: bool = False  # one of `--variant`'s setups: they may differ in dtype, threads, TF32
    # How the worker's allocator treats freed memory (pybench.machine.malloc); records from before the
    # setting existed lack it and read as what they measured (`from_json`).
    malloc: str = DEFAULT_MALLOC

    @property
    def cell(self) -> "CellKey":
        out = replace(self, framework="", channels_last=False, compile=False, compile_mode="", interpreter="",
                      variant_name="")
        if self.named_variant:  # the variants of a model are measured side by side whatever they set
            out = replace(out, dtype="", threads=0, tf32=False, malloc="")
        return out

    @property
    def variant(self) -> str:
        """What makes this row not a plain fp32 row; '' for the plain one.  A named variant also
        shows what else varies between the variants of its cell (TF32, threads)."""
        tags = [self.variant_name] if self.variant_name else []
        tags += [] if self.dtype == "fp32" else [self.dtype]
        compiled = f"compiled {self.compile_mode}" if self.compile_mode else "compiled"
        tags += ["channels-last"] * self.channels_last + [compiled] * self.compile
        if self.named_variant:
            tags += ["TF32"] * self.tf32 + [f"{self.threads} thread{'s' * (self.threads != 1)}"]
        tags += [f"malloc={self.malloc}"] * (self.malloc != DEFAULT_MALLOC)
        return ", ".join(tags)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "CellKey":
        return cls(**{"malloc": OLD_RECORDS_MALLOC, **{f.name: data[f.name] for f in fields(cls) if f.name in data}})


@dataclass(frozen=True)
class CellSpec:
    framework: str
    model: str
    device: str  # "cpu" or "cuda:N", already resolved
    batch_size: int
    image_size: int
    device_name: str = "CPU"  # what the device is, for the cell's identity
    label: str = "local"  # the machine's name
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    threads: int = field(default_factory=available_cores)
    tf32: bool = False
    seed: int = 0
    stop: StopRule = field(default_factory=StopRule)
    phases: tuple[str, ...] = ()  # default: the workload's phases
    gpu: Device | None = None  # the GPU, by UUID, that the worker is pinned to
    variant_name: str = ""  # see CellKey.variant_name
    compile_mode: str = ""  # the framework's compiler mode (torch.compile's mode); '' its default
    interpreter: str = ""  # absolute path of another Python to run the worker under; '' pybench's own
    named_variant: bool = False  # see CellKey.named_variant
    malloc: str = DEFAULT_MALLOC  # see CellKey.malloc

    def __post_init__(self) -> None:
        workload = get_workload(self.model)
        if not self.phases:
            object.__setattr__(self, "phases", workload.phases)
        try:
            check_phases(self.phases)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if not DEVICE.fullmatch(self.device):
            raise UserError(f"device {self.device[:40]!r} is neither cpu nor cuda:N")
        _within("batch size", self.batch_size, 1, MAX_BATCH)
        _within("image size", self.image_size, 1, MAX_IMAGE)
        if self.image_size < workload.min_image_size:
            raise UserError(
                f"image size {self.image_size} is too small for {self.model}: "
                f"its five stride-2 stages need at least {workload.min_image_size}"
            )
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")
        _within("threads", self.threads, 1, MAX_THREADS)
        _within("seed", self.seed, 0, MAX_SEED)
        check_stop(self.stop)
        if self.compile_mode and not self.compile:
            raise UserError(f"compile mode {self.compile_mode!r} without compile")
        if self.interpreter and not os.path.isabs(self.interpreter):
            raise UserError(f"the interpreter must be an absolute path, got {self.interpreter!r}")
        check_malloc(self.malloc)

    @property
    def device_kind(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "cpu"

    @property
    def cuda_index(self) -> int:
        """The N of 'cuda:N' (a bare 'cuda' is 0); -1 for the CPU."""
        return cuda_index(self.device)

    @property
    def key(self) -> CellKey:
        return CellKey(**{f.name: getattr(self, f.name) for f in fields(CellKey)})

    def to_json(self) -> dict:
        data = asdict(self)
        data["phases"] = list(self.phases)
        data["gpu"] = self.gpu.to_json() if self.gpu else None
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "spec") -> "CellSpec":
        """Types checked here with the path of a bad field; values by the constructor (UserError)."""
        kwargs = {name: field_of(data, name, kind, where) for name, kind in _KINDS.items()
                  if name in data or name in ("framework", "model", "device")}
        kwargs.setdefault("malloc", OLD_RECORDS_MALLOC)
        stop = field_of(data, "stop", dict, where)
        unknown = sorted(set(stop) - set(_STOP_KINDS))
        if unknown:
            raise Malformed(f"{where}.stop.{unknown[0]}: unknown setting")
        kwargs["stop"] = StopRule(**{k: field_of(stop, k, kind, f"{where}.stop")
                                     for k, kind in _STOP_KINDS.items() if k in stop})
        kwargs["phases"] = tuple(text(p, f"{where}.phases[{i}]")
                                 for i, p in enumerate(field_of(data, "phases", list, where)))
        gpu = field_of(data, "gpu", dict, where, optional=True)
        kwargs["gpu"] = Device.from_json(gpu) if gpu else None
        return cls(**kwargs)


# The JSON types of the plain fields, read off the dataclasses themselves: a field added to the spec
# or the stop rule is checked on reading without a second list to keep in step.
_JSON_KINDS: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "bool": bool, "float": (int, float)}
_KINDS = {f.name: _JSON_KINDS[f.type] for f in fields(CellSpec) if f.type in _JSON_KINDS}
_STOP_KINDS = {f.name: _JSON_KINDS[f.type] for f in fields(StopRule) if f.type in _JSON_KINDS}
