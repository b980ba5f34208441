"""The parts of a cell record: one round (one worker process) with its phases' samples, the
workload's facts and the device's peak; each type owns its JSON and checks every field it reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from pybench.errors import UserError
from pybench.machine.noise import OTHER_BUSY_LIMIT
from pybench.protocol.phases import GROUP_WEIGHTS, PHASES
from pybench.protocol.group import STOP_REASONS, Measurement, PhaseSamples
from pybench.records.shape import MAX_COUNT, MAX_SECONDS, Malformed, count, field_of, list_of, number_in, seconds, text

SCHEMA = "pybench.results"
SCHEMA_VERSION = 2
STATUSES = ("ok", "failed", "skipped")  # skipped: never attempted (framework unavailable, option unsupported)

T = TypeVar("T")
# A round's timeline: its worker's steps in order, each group's first run, warm-up and sampling.
TIMELINE_MARKS = ("started", "imported", "prepared",
                  *(f"{g}.{step}" for g in GROUP_WEIGHTS for step in ("first_run", "warmup", "sampling")),
                  "finished", "exited")
# framework_env facts that legitimately change from one worker process to the next
VARYING_ENV = frozenset({"cores", "gpu_identity", "traces"})


def _positive_seconds(values: Any, where: str) -> list[float]:
    if not isinstance(values, list):
        raise Malformed(f"{where}: expected a list, got {type(values).__name__}")
    return [seconds(v, f"{where}[{i}]") for i, v in enumerate(values)]


def _per_group(data: Any, key: str, where: str, optional: bool = False) -> dict[str, dict[str, int]]:
    """data[key] as group -> kind -> a count (bytes of memory, energy totals), each checked."""
    out = {}
    for group, values in (field_of(data, key, dict, where, optional=optional) or {}).items():
        at = f"{where}.{key}.{group}"
        if not isinstance(values, dict):
            raise Malformed(f"{at}: expected an object, got {type(values).__name__}")
        out[group] = {text(k, at): count(v, f"{at}.{k}") for k, v in values.items()}
    return out


def _gc_seconds(phase: Any, samples: list[float], where: str) -> list[float] | None:
    """A phase's optional GC time per sample: as many as samples, each within its sample."""
    gc = field_of(phase, "gc", list, where, optional=True)
    if gc is None:
        return None
    if len(gc) != len(samples):
        raise Malformed(f"{where}.gc: {len(gc)} values for {len(samples)} samples")
    out = []
    for g, s in zip(gc, samples):
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g <= s:
            raise Malformed(f"{where}.gc: every GC time must lie between 0 and its sample's, got {g!r}")
        out.append(float(g))
    return out


def parse(where: str, build: Callable[[], T]) -> T:
    """Turn the TypeErrors and KeyErrors of a constructor into a Malformed naming `where`."""
    try:
        return build()
    except Malformed:
        raise
    except (UserError, TypeError, KeyError, ValueError, AttributeError) as exc:
        raise Malformed(f"{where}: {exc}") from None


@dataclass
class Round:
    """One worker process's measurement of a cell (pyperf's 'run').

    `run` names the matrix run (one results file) and `number` the round within it: the frameworks of
    a cell measured in the same run and round ran side by side, so only they are paired.  A round
    during which other work used more than OTHER_BUSY_LIMIT of the CPUs is `disturbed`: kept in the
    file, left out of every ratio, and of the time estimates while the cell has quiet rounds (a
    competing process slows PyTorch's thread pool far more than XLA's, so pairing cannot cancel it)."""

    phases: dict[str, PhaseSamples]
    memory: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> kind -> peak bytes
    number: int = 0  # 0: unnumbered (a version-1 file, a lone worker): never paired
    run: str = ""
    energy: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> pybench.machine.energy kind -> total
    # group -> "start"/"end" of sampling -> {"sm_mhz", "reasons"} (gpu_probe.clock_state); GPU only
    clocks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    other_busy: float | None = None  # share of all CPUs' time other work used in the round; None: unknown
    # Seconds from the worker's spawn to the end of each step (TIMELINE_MARKS), `anatomy` reads it.
    timeline: dict[str, float] = field(default_factory=dict)

    @property
    def disturbed(self) -> bool:
        return self.other_busy is not None and self.other_busy > OTHER_BUSY_LIMIT

    @classmethod
    def of(cls, m: Measurement, clocks: dict | None = None, timeline: dict[str, float] | None = None) -> "Round":
        return cls(phases=dict(m.phases), memory=dict(m.memory), energy=dict(m.energy), clocks=dict(clocks or {}),
                   timeline=dict(timeline or {}))

    def anatomy(self) -> "Anatomy | None":
        """Where the round's wall time went; None for a round recorded without a timeline."""
        return Anatomy.of(self) if "prepared" in self.timeline else None

    @property
    def pair_key(self) -> tuple[str, int] | None:
        return (self.run, self.number) if self.number and self.run else None

    def to_json(self) -> dict:
        data = {"phases": {p: r.to_json() for p, r in self.phases.items()}, "memory": self.memory,
                "number": self.number, "run": self.run}
        data = {**data, "energy": self.energy} if self.energy else data
        data = {**data, "other_busy": self.other_busy} if self.other_busy is not None else data
        data = {**data, "timeline": self.timeline} if self.timeline else data
        return {**data, "clocks": self.clocks} if self.clocks else data

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Round":
        raw = field_of(data, "phases", dict, where)
        phases = {}
        for name, p in raw.items():
            at = f"{where}.phases.{name}"
            if name not in PHASES:
                raise Malformed(f"{at}: unknown phase")
            samples = _positive_seconds(field_of(p, "samples", list, at), f"{at}.samples")
            if not samples:
                raise Malformed(f"{at}.samples is empty")
            reason = field_of(p, "stop_reason", str, at)
            if reason not in STOP_REASONS:
                raise Malformed(f"{at}.stop_reason: unknown reason {reason!r}")
            blocks = field_of(p, "blocks", list, at, optional=True) or []
            if any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in blocks) or (
                    blocks and sum(blocks) != len(samples)):
                raise Malformed(f"{at}.blocks: positive sample counts that add up to the samples")
            phases[name] = PhaseSamples(
                first_run=seconds(field_of(p, "first_run", (int, float), at), f"{at}.first_run"),
                warmup=_positive_seconds(field_of(p, "warmup", list, at), f"{at}.warmup"),
                samples=samples, stop_reason=reason, blocks=blocks, gc=_gc_seconds(p, samples, at))
        number = field_of(data, "number", int, where, optional=True) or 0
        run = field_of(data, "run", str, where, optional=True) or ""
        busy = field_of(data, "other_busy", (int, float), where, optional=True)
        return cls(phases=phases, memory=_per_group(data, "memory", where),
                   other_busy=None if busy is None else float(number_in(busy, 0, 1, f"{where}.other_busy")),
                   energy=_per_group(data, "energy", where, optional=True),
                   number=int(number_in(number, 0, MAX_COUNT, f"{where}.number", integer=True)), run=run,
                   clocks=field_of(data, "clocks", dict, where, optional=True) or {},
                   timeline=_timeline(data, where))


def _timeline(data: Any, where: str) -> dict[str, float]:
    """A round's optional timeline: known marks only, each a time since the spawn."""
    out = {}
    for mark, value in (field_of(data, "timeline", dict, where, optional=True) or {}).items():
        if mark not in TIMELINE_MARKS:
            raise Malformed(f"{where}.timeline.{text(mark, where)[:40]}: unknown mark")
        out[mark] = float(number_in(value, 0, MAX_SECONDS, f"{where}.timeline.{mark}"))
    return out


@dataclass(frozen=True)
class Anatomy:
    """Where one round's wall time went, in seconds, from its worker's spawn to its exit."""

    start: float  # the interpreter and pybench's own imports
    imports: float  # the framework's imports
    model: float  # model built, weights initialised, inputs on the device
    first_runs: float  # each group's first iteration: tracing, compiling or loading compiled code
    warmup: float
    sampling: float  # the groups' sampling windows: samples and the loop around them
    samples: float  # of which timed iterations (the measured phases, derived ones not counted twice)
    teardown: float  # the record built, the process gone

    @property
    def total(self) -> float:
        return self.start + self.imports + self.model + self.first_runs + self.warmup + self.sampling + self.teardown

    @property
    def outside_samples(self) -> float:
        return self.total - self.samples

    @classmethod
    def of(cls, r: "Round") -> "Anatomy":
        t = r.timeline
        at = t["prepared"]
        first = warm = sampling = 0.0
        for group in GROUP_WEIGHTS:  # measurement order
            if f"{group}.sampling" not in t:
                continue
            first += t[f"{group}.first_run"] - at
            warm += t[f"{group}.warmup"] - t[f"{group}.first_run"]
            sampling += t[f"{group}.sampling"] - t[f"{group}.warmup"]
            at = t[f"{group}.sampling"]
        samples = sum(sum(p.samples) for name, p in r.phases.items() if not PHASES[name].parts)
        end = t.get("exited", t.get("finished", at))
        return cls(start=t["started"], imports=t["imported"] - t["started"], model=t["prepared"] - t["imported"],
                   first_runs=first, warmup=warm, sampling=sampling, samples=samples, teardown=end - at)


@dataclass
class WorkloadFacts:
    params: int  # the framework's own parameter count
    flops_forward: int | None = None  # per batch, convolutions and matrix products
    notes: list[str] = field(default_factory=list)  # e.g. how this framework's architecture differs

    def to_json(self) -> dict:
        return {"params": self.params, "flops_forward": self.flops_forward, "notes": self.notes}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "WorkloadFacts":
        flops = field_of(data, "flops_forward", int, where, optional=True)
        return cls(params=count(field_of(data, "params", int, where), f"{where}.params"),
                   flops_forward=None if flops is None else count(flops, f"{where}.flops_forward"),
                   notes=list_of(data, "notes", where, text))


CALIBRATED = "calibrated sgemm"  # how a measured CPU peak's source begins


@dataclass(frozen=True)
class Peak:
    gflops: float | None  # None: not known for this device
    source: str

    @property
    def kind(self) -> str:
        """What a percentage of it is a percentage of: "sgemm" for a calibrated CPU rate (convolutions
        can beat a library's matrix multiply, so over 100% is possible there), else "peak"."""
        return "sgemm" if self.source.startswith(CALIBRATED) else "peak"

    def to_json(self) -> dict:
        return {"gflops": self.gflops, "source": self.source}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Peak":
        gflops = field_of(data, "gflops", (int, float), where, optional=True)
        return cls(gflops=None if gflops is None else float(number_in(gflops, 1e-6, 1e12, f"{where}.gflops")),
                   source=field_of(data, "source", str, where))


