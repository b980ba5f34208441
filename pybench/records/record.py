"""The typed record of one cell: what a worker sends back, what a results file stores, what reports,
diff and plots read.  Each type owns its JSON; nothing else in pybench reads a record as a dict.

Raw samples are the source of truth: statistics are computed from them on demand (`estimate`), and
the summary written beside them in a file is for human readers only.  Schema version 2; version-1
documents (one process per cell, statistics stored per phase) load through `migrate.migrate_v1`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from pybench.errors import UserError
from pybench.machine.noise import OTHER_BUSY_LIMIT
from pybench.protocol.phases import PHASES
from pybench.protocol.group import STOP_REASONS, Measurement, PhaseSamples
from pybench.records.shape import MAX_COUNT, MAX_SECONDS, Malformed, count, field_of, list_of, number_in, seconds, text
from pybench.records.spec import CellKey, CellSpec
from pybench.records.statistics import Estimate, Ratio, estimate, paired_ratio, ratio_confidence

SCHEMA = "pybench.results"
SCHEMA_VERSION = 2
STATUSES = ("ok", "failed", "skipped")  # skipped: never attempted (framework unavailable, option unsupported)

T = TypeVar("T")
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

    @property
    def disturbed(self) -> bool:
        return self.other_busy is not None and self.other_busy > OTHER_BUSY_LIMIT

    @classmethod
    def of(cls, m: Measurement, clocks: dict | None = None) -> "Round":
        return cls(phases=dict(m.phases), memory=dict(m.memory), energy=dict(m.energy), clocks=dict(clocks or {}))

    @property
    def pair_key(self) -> tuple[str, int] | None:
        return (self.run, self.number) if self.number and self.run else None

    def to_json(self) -> dict:
        data = {"phases": {p: r.to_json() for p, r in self.phases.items()}, "memory": self.memory,
                "number": self.number, "run": self.run}
        data = {**data, "energy": self.energy} if self.energy else data
        data = {**data, "other_busy": self.other_busy} if self.other_busy is not None else data
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
                   clocks=field_of(data, "clocks", dict, where, optional=True) or {})


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


@dataclass(frozen=True)
class Peak:
    gflops: float | None  # None: not known for this device
    source: str

    def to_json(self) -> dict:
        return {"gflops": self.gflops, "source": self.source}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Peak":
        gflops = field_of(data, "gflops", (int, float), where, optional=True)
        return cls(gflops=None if gflops is None else float(number_in(gflops, 1e-6, 1e12, f"{where}.gflops")),
                   source=field_of(data, "source", str, where))


@dataclass
class CellRecord:
    spec: CellSpec
    status: str
    title: str  # the framework as tables show it: "PyTorch 2.14.1"
    error: str | None = None  # one line, for failed and skipped cells
    workload: WorkloadFacts | None = None
    framework_env: dict[str, Any] = field(default_factory=dict)  # the framework's facts, as it ran
    rounds: list[Round] = field(default_factory=list)
    peak: Peak | None = None
    warnings: list[str] = field(default_factory=list)  # derived figures that could not be computed
    stderr_tail: list[str] = field(default_factory=list)
    wall_time: float = 0.0
    timed_share: float | None = None  # of its cell's wall time, the share in timed iterations
    undecided: list[str] = field(default_factory=list)  # phases whose ratio (or estimate) stayed open

    @property
    def key(self) -> CellKey:
        return self.spec.key

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def phase_names(self) -> list[str]:
        """The phases measured: those of the first round (later rounds may measure only the groups
        still undecided)."""
        return [p for p in self.spec.phases if self.rounds and p in self.rounds[0].phases]

    def counted(self, phase: str) -> list[Round]:
        """The rounds that measured the phase and count for its time: the quiet ones
        (`Round.disturbed`), or every one when none was quiet (their interval then says how little
        they agree).  Ratios, and so verdicts, come from quiet rounds only (`blocks`)."""
        measured = [r for r in self.rounds if phase in r.phases]
        return [r for r in measured if not r.disturbed] or measured

    @property
    def set_aside(self) -> list[Round]:
        """The disturbed rounds: in no ratio, and in no estimate while a quiet round exists."""
        return [r for r in self.rounds if r.disturbed]

    def runs(self, phase: str) -> list[PhaseSamples]:
        """The phase in every round that counts for it (later rounds may measure only the groups
        still undecided)."""
        return [r.phases[phase] for r in self.counted(phase)]

    def samples(self, phase: str) -> list[list[float]]:
        """Raw samples per round that measured the phase."""
        return [run.samples for run in self.runs(phase)]

    def blocks(self, phase: str) -> dict[tuple[str, int], list[list[float]]]:
        """Per numbered quiet round, the phase's samples in blocks: what ratios pair."""
        return {r.pair_key: r.phases[phase].block_samples() for r in self.rounds
                if r.pair_key and phase in r.phases and not r.disturbed}

    def ratio_to(self, base: "CellRecord", phase: str, stat: str = "median") -> Ratio | None:
        """This record's time over `base`'s, from the rounds they ran side by side; None if none."""
        stop = self.spec.stop
        return paired_ratio(self.blocks(phase), base.blocks(phase),
                            ratio_confidence(stop.confidence, stop.sequential), stat, stop.precision)

    def estimate(self, phase: str, stat: str = "median") -> Estimate:
        return estimate(self.samples(phase), self.spec.stop.confidence, stat)

    def quality(self, phase: str, stat: str = "median") -> str:
        """"precise": the interval is within the asked precision; "too_few_samples": the budget
        allowed fewer samples than an interval needs (no interval, or one round that stopped short);
        "noisy": an interval, still wider than asked (with rounds: the processes disagree)."""
        e = self.estimate(phase, stat)
        if e.half_width_rel is None:
            return "too_few_samples"
        if e.half_width_rel <= self.spec.stop.precision:
            return "precise"
        if not e.between_rounds and "too_few_samples" in self.stop_reasons(phase):
            return "too_few_samples"
        return "noisy"

    def first_run(self, phase: str) -> float:
        """The first round's first run (later rounds' include warm caches of the compiler)."""
        return self.rounds[0].phases[phase].first_run

    def stop_reasons(self, phase: str) -> list[str]:
        return [run.stop_reason for run in self.runs(phase)]

    def memory(self, group: str) -> dict[str, int]:
        """Largest peak of each kind over the rounds, for one phase group."""
        out: dict[str, int] = {}
        for r in self.rounds:
            for kind, value in r.memory.get(group, {}).items():
                out[kind] = max(out.get(kind, 0), value)
        return out

    def energy(self, group: str, headline: str) -> tuple[dict[str, int], int]:
        """Each energy kind summed over the rounds that measured it, with the iterations its windows
        held (the window is the sampling loop: one iteration per sample of the group's `headline`)."""
        out: dict[str, int] = {}
        iterations = 0
        for r in self.rounds:
            totals = r.energy.get(group)
            if totals and headline in r.phases:
                iterations += len(r.phases[headline].samples)
                for kind, value in totals.items():
                    out[kind] = out.get(kind, 0) + value
        return out, iterations

    def add_round(self, other: "CellRecord") -> None:
        """Fold another worker's measurement of the same cell into this record; a round from another
        framework version or environment is refused, as pyperf's Benchmark.add_run checks metadata."""
        if other.ok and self.ok:
            if other.title != self.title:
                raise ValueError(f"round of {other.title} cannot join a record of {self.title}")
            differs = sorted(k for k in (set(self.framework_env) | set(other.framework_env)) - VARYING_ENV
                             if self.framework_env.get(k) != other.framework_env.get(k))
            if differs:
                raise ValueError(f"round ran in another environment ({', '.join(differs)} differ)")
        self.rounds.extend(other.rounds)
        self.wall_time += other.wall_time
        self.warnings.extend(w for w in other.warnings if w not in self.warnings)

    def to_json(self) -> dict:
        data: dict[str, Any] = {
            "key": self.key.to_json(),
            "spec": self.spec.to_json(),
            "status": self.status,
            "title": self.title,
            "error": self.error,
            "workload": self.workload.to_json() if self.workload else None,
            "framework_env": self.framework_env,
            "rounds": [r.to_json() for r in self.rounds],
            "peak": self.peak.to_json() if self.peak else None,
            "warnings": self.warnings,
            "stderr_tail": self.stderr_tail,
            "wall_time": self.wall_time,
            "timed_share": self.timed_share,
            "undecided": self.undecided,
        }
        if self.ok and self.rounds:  # for readers of the file; never read back
            data["summary"] = {p: self.estimate(p).to_json() for p in self.phase_names}
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "record") -> "CellRecord":
        status = field_of(data, "status", str, where)
        if status not in STATUSES:
            raise Malformed(f"{where}.status: unknown status {status!r}")
        spec = parse(f"{where}.spec", lambda: CellSpec.from_json(field_of(data, "spec", dict, where),
                                                                  f"{where}.spec"))
        workload = field_of(data, "workload", dict, where, optional=True)
        peak = field_of(data, "peak", dict, where, optional=True)
        share = field_of(data, "timed_share", (int, float), where, optional=True)
        rounds = [Round.from_json(r, f"{where}.rounds[{i}]")
                  for i, r in enumerate(field_of(data, "rounds", list, where))]
        record = cls(
            spec=spec,
            status=status,
            title=field_of(data, "title", str, where),
            error=field_of(data, "error", str, where, optional=True),
            workload=WorkloadFacts.from_json(workload, f"{where}.workload") if workload else None,
            framework_env=field_of(data, "framework_env", dict, where),
            rounds=rounds,
            peak=Peak.from_json(peak, f"{where}.peak") if peak else None,
            warnings=list_of(data, "warnings", where, text),
            stderr_tail=list_of(data, "stderr_tail", where, text),
            wall_time=float(number_in(field_of(data, "wall_time", (int, float), where), 0, MAX_SECONDS,
                                      f"{where}.wall_time")),
            timed_share=None if share is None else float(number_in(share, 0, MAX_SECONDS, f"{where}.timed_share")),
            undecided=list_of(data, "undecided", where, text) if data.get("undecided") is not None else [],
        )
        if status == "ok" and not rounds:
            raise Malformed(f"{where}: an ok record without rounds")
        if status != "ok" and not record.error:
            raise Malformed(f"{where}: a {status} record without an error")
        for name in record.phase_names:
            if name not in spec.phases:
                raise Malformed(f"{where}: phase {name!r} was not asked for")
        return record
