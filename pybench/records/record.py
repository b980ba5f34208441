"""The typed record of one cell: what a worker sends back, what a results file stores, what reports,
diff and plots read.  Each type owns its JSON; nothing else in pybench reads a record as a dict.

Raw samples are the source of truth: statistics are computed from them on demand (`estimate`), and
the summary written beside them in a file is for human readers only.  Schema version 2; version-1
documents (one process per cell, statistics stored per phase) load through `migrate.migrate_v1`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pybench.protocol.group import PhaseSamples
from pybench.records.numerics import Numerics, Parity
from pybench.records.round import (STATUSES, VARYING_ENV, Peak, Round, WorkloadFacts,
                                   parse)
from pybench.records.shape import MAX_SECONDS, Malformed, count, field_of, list_of, number_in, text
from pybench.records.spec import CellKey, CellSpec
from pybench.records.ratios import Ratio, Screen, paired_ratios, ratio_confidence, slow_rounds
from pybench.records.statistics import DEFAULT_STAT, Estimate, block_value, estimate


@dataclass(frozen=True)
class CutShort:
    """A cell stopped before it got what was asked (a Slurm time limit, a cancelled job): the rounds
    it finished are kept and count, and the command that gathers it exits 1."""

    reason: str
    rounds_done: int
    rounds_asked: int | None  # None: --rounds auto, until decided

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "rounds_done": self.rounds_done, "rounds_asked": self.rounds_asked}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "CutShort":
        asked = field_of(data, "rounds_asked", int, where, optional=True)
        return cls(field_of(data, "reason", str, where),
                   count(field_of(data, "rounds_done", int, where), f"{where}.rounds_done"),
                   None if asked is None else count(asked, f"{where}.rounds_asked"))


def _slow(paired: dict[tuple[str, int], PhaseSamples], stat: str) -> dict[tuple[str, int], float]:
    # by the number the ratio reads: a mean is also moved by one disturbed iteration (another
    # process, a page-cache flush) that a median would not see
    return slow_rounds({k: block_value(p.samples, stat) for k, p in paired.items()})


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
    numerics: Numerics | None = None  # what the framework computed with, read from it in the worker
    parity: Parity | None = None  # its outputs against PyTorch's on the same weights (compare)
    cut_short: CutShort | None = None  # stopped before the rounds asked for; None: ran its course

    @property
    def key(self) -> CellKey:
        return self.spec.key

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def phase_names(self) -> list[str]:
        """The phases measured: those of the first round (later rounds may leave out decided groups
        after the last undecided one)."""
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
        """The phase in every round that counts for it (later rounds may leave it out once decided)."""
        return [r.phases[phase] for r in self.counted(phase)]

    def samples(self, phase: str) -> list[list[float]]:
        """Raw samples per round that measured the phase."""
        return [run.samples for run in self.runs(phase)]

    def _paired(self, phase: str) -> dict[tuple[str, int], PhaseSamples]:
        """The phase in every numbered quiet round: the rounds that may pair."""
        return {r.pair_key: r.phases[phase] for r in self.rounds
                if r.pair_key and phase in r.phases and not r.disturbed}

    def slow(self, phase: str, stat: str = DEFAULT_STAT) -> dict[tuple[str, int], float]:
        """The numbered quiet rounds whose process was slow in this phase, each with its factor over
        the median round (`ratios.slow_rounds`): kept in the file, in no ratio."""
        return _slow(self._paired(phase), stat)

    def screen(self, stat: str = DEFAULT_STAT) -> Screen | None:
        """What the slow-process screen left out of this record's ratios, over its phases."""
        factors: dict[tuple[str, int], float] = {}
        for phase in self.phase_names:
            for k, f in self.slow(phase, stat).items():
                factors[k] = max(f, factors.get(k, 0.0))
        rounds = {r.pair_key for r in self.rounds if r.pair_key and not r.disturbed}
        return Screen(len(factors), len(rounds), max(factors.values())) if factors else None

    def blocks(self, phase: str, stat: str = DEFAULT_STAT) -> dict[tuple[str, int], list[list[float]]]:
        """Per numbered quiet round whose process was not slow, the phase's samples in blocks: what
        ratios pair."""
        paired = self._paired(phase)
        slow = _slow(paired, stat)
        return {k: p.block_samples() for k, p in paired.items() if k not in slow}

    def ratios_to(self, base: "CellRecord", stat: str = DEFAULT_STAT) -> dict[str, Ratio | None]:
        """This record's time over `base`'s per phase both measured, from the rounds they ran side by
        side (None where none), with the pair's verdicts called as one family."""
        stop = self.spec.stop
        phases = [p for p in self.phase_names if p in base.phase_names]
        return paired_ratios({p: self.blocks(p, stat) for p in phases}, {p: base.blocks(p, stat) for p in phases},
                             ratio_confidence(stop.confidence, stop.sequential), stat)

    def ratio_to(self, base: "CellRecord", phase: str, stat: str = DEFAULT_STAT) -> Ratio | None:
        """One phase of `ratios_to`."""
        return self.ratios_to(base, stat).get(phase)

    def estimate(self, phase: str, stat: str = DEFAULT_STAT) -> Estimate:
        return estimate(self.samples(phase), self.spec.stop.confidence, stat)

    def quality(self, phase: str, stat: str = DEFAULT_STAT) -> str:
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
        self.numerics = self.numerics or other.numerics
        self.wall_time += other.wall_time
        self.warnings.extend(w for w in other.warnings if w not in self.warnings)

    def to_json(self, summary: bool = True) -> dict:
        """The record as stored; `summary` adds each phase's estimate for readers of the file (a worker's
        reply goes without: it is never read back, and its statistics need scipy, which a worker's
        interpreter may lack)."""
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
        if self.numerics:
            data["numerics"] = self.numerics.to_json()
        if self.parity:
            data["parity"] = self.parity.to_json()
        if self.cut_short:
            data["cut_short"] = self.cut_short.to_json()
        if summary and self.ok and self.rounds:  # for readers of the file; never read back
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
        numerics = field_of(data, "numerics", dict, where, optional=True)
        parity = field_of(data, "parity", dict, where, optional=True)
        cut_short = field_of(data, "cut_short", dict, where, optional=True)
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
            numerics=Numerics.from_json(numerics, f"{where}.numerics") if numerics else None,
            parity=Parity.from_json(parity, f"{where}.parity") if parity else None,
            cut_short=CutShort.from_json(cut_short, f"{where}.cut_short") if cut_short else None,
        )
        if status == "ok" and not rounds:
            raise Malformed(f"{where}: an ok record without rounds")
        if status != "ok" and not record.error:
            raise Malformed(f"{where}: a {status} record without an error")
        return record
