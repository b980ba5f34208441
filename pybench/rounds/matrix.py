"""Schedules the rounds of a whole matrix: which cells run in round r, how long each round is, and when a
cell is done.

Every round of a cell is a fresh worker per framework (pyperf's model: between-process variation is
part of what a number means).  Rounds go round-robin over the matrix; the frameworks of a cell run side
by side (`pybench.rounds.lockstep`) or back to back, in an order that alternates between rounds (A B, B A,
...), so drift hits every framework alike and largely cancels in their ratio.  Rounds carry their
number and the run's id, which is what ratios pair.  Later rounds take the samples per group that
`planning.plan_round` finds best for the noise measured so far (`Matrix._plan` for the first).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from pybench.backends import efficiency
from pybench.machine import noise
from pybench.rounds import planning
from pybench.machine.lifetime import scratch_dir, signals_deferred
from pybench.rounds.lockstep import lockstep_round
from pybench.limits import CELL_BUDGET_S
from pybench.protocol.phases import HEADLINE, PHASES, groups_of
from pybench.protocol.group import INITIAL_GROUP_S, MIN_PLANNED
from pybench.records.record import CellRecord
from pybench.records.results import ResultsFile
from pybench.records.statistics import DEFAULT_STAT
from pybench.rounds.runner import MatrixEvents, default_timeout, failed_record, run_cell, skip_reason
from pybench.records.spec import CellKey, CellSpec
from pybench.request.request import Request

AUTO_MIN_ROUNDS = planning.MIN_ROUNDS  # rounds a cell runs whatever the budget
CACHE_PREFIX = "pybench-cache"  # compile caches of one matrix, in the temp folder, named with our pid


@dataclass(frozen=True)
class Schedule:
    """How many rounds, and how they run.  `rounds` None: adaptive (`--rounds auto`): at least
    AUTO_MIN_ROUNDS, then rounds for the cells and phase groups still open (`planning.open_phases`:
    undecided, with fewer than planning.MAX_ROUNDS paired quiet rounds) and the groups before them,
    until none is, planning.MAX_ATTEMPTS rounds have run or `budget` seconds per cell are spent."""

    rounds: int | None = 1
    lockstep: bool = False  # back to back measured better per second on the reference VM (docs)
    budget: float = CELL_BUDGET_S  # seconds per cell (auto rounds only)
    min_rounds: int = 2  # fixed rounds: a cell stops early after this many once every phase is precise
    timeout: float | None = None
    stat: str = DEFAULT_STAT

    @classmethod
    def of(cls, request: Request) -> "Schedule":
        """How the request's rounds run (a Slurm job's too)."""
        return cls(rounds=request.rounds, lockstep=request.lockstep, timeout=request.timeout,
                   budget=request.budget, stat=request.stat)

    @property
    def max_rounds(self) -> int:
        return planning.MAX_ATTEMPTS if self.rounds is None else self.rounds


@dataclass
class Cell:
    """A cell's members (frameworks or variants) and what its rounds cost so far."""

    specs: list[CellSpec]
    rounds: int = 0
    wall: float = 0.0  # seconds its rounds took
    timed: float = 0.0  # seconds of timed iterations in them, every member
    undecided: list[str] = field(default_factory=list)  # phases, in the last look
    last_wall: float = 0.0


def timed_seconds(record: CellRecord) -> float:
    """Seconds of timed iterations in a record's last round (each group's headline phase)."""
    if not record.ok or not record.rounds:
        return 0.0
    phases = record.rounds[-1].phases
    return sum(sum(phases[p].samples) for g in groups_of(list(phases))
               if (p := HEADLINE[g]) in phases)


class Matrix:
    def __init__(self, specs: list[CellSpec], store: ResultsFile, schedule: Schedule,
                 peak_gflops: float | None, events: MatrixEvents, cache: Path,
                 run_one: Callable[..., CellRecord], run_lockstep: Callable[..., list[CellRecord]],
                 meter: Callable[[], noise.StealMeter] = noise.StealMeter,
                 prime: Callable[[CellSpec, float, Path], str | None] | None = None) -> None:
        self.specs, self.store, self.schedule = specs, store, schedule
        self.peak_gflops, self.events, self.cache = peak_gflops, events, cache
        self.run_one, self.run_lockstep, self.meter, self.prime = run_one, run_lockstep, meter, prime
        self.run_id = uuid.uuid4().hex[:12]
        self.records: dict[CellSpec, CellRecord] = {}
        self.cells: dict[CellKey, Cell] = {}
        self.started = time.monotonic()
        self.primed = 0.0  # seconds the priming workers took
        self.unprimed: dict[CellSpec, str] = {}  # per setup that could not prime, why

    def run(self) -> list[CellRecord]:
        gpus = sorted({s.gpu.uuid for s in self.specs if s.gpu})
        meter = noise.StealMeter()
        audit = noise.capture_start(gpus)  # what else ran on the machine: shown when it matters
        self.store.environment["noise"] = audit.to_json()
        self.store.environment["run_id"] = self.run_id
        for spec in self.specs:
            reason = skip_reason(spec)
            if reason:
                self.records[spec] = failed_record(spec, reason, status="skipped")
                self.store.add(self.records[spec])
            else:
                self.cells.setdefault(spec.key.cell, Cell([])).specs.append(spec)
        self._prime()
        for round_no in range(1, self.schedule.max_rounds + 1):
            active = [c for c in self.cells.values() if self._wants_round(c, round_no)]
            if not active:
                break
            for cell in active:
                self._round(cell, round_no)
        self._account()
        self.store.environment["noise"] = noise.capture_end(audit, meter, gpus).to_json()
        self.store.save()
        return [self.records[s] for s in self.specs]

    def _prime(self) -> None:
        """One priming worker per distinct setup (an A/A pair's twins are one) fills the compile cache,
        so that round 1 loads compiled code as every later round does.  Its seconds count against the
        budget and are reported; a setup that cannot prime says why on its record (`_keep`), as its
        round 1 then compiles what later rounds load."""
        if self.prime is None:
            return
        started = time.monotonic()
        setups = {_setup(s): s for c in self.cells.values() for s in c.specs}
        for setup, spec in setups.items():
            self.events.started(spec, 0)
            reason = self.prime(spec, self._timeout(spec), self.cache)
            if reason is not None:
                self.unprimed[setup] = reason
        self.primed = time.monotonic() - started

    def live(self, cell: Cell) -> list[CellRecord]:
        return [self.records[s] for s in cell.specs if s in self.records and self.records[s].ok]

    def _wants_round(self, cell: Cell, round_no: int) -> bool:
        members = self.live(cell)
        if round_no > 1 and not members:
            return False  # every member failed: their errors stand
        if self.schedule.rounds is not None:  # fixed rounds; stop early once every phase is precise
            return not (members and min(len(r.rounds) for r in members) >= self.schedule.min_rounds and all(
                r.quality(p, self.schedule.stat) == "precise" for r in members for p in r.phase_names))
        if cell.rounds < AUTO_MIN_ROUNDS:
            return True
        cell.undecided = planning.open_phases(members, self.schedule.stat)
        spent = time.monotonic() - self.started
        return bool(cell.undecided) and spent + cell.last_wall <= self.schedule.budget * len(self.cells)

    def _round(self, cell: Cell, round_no: int) -> None:
        members = [s for s in cell.specs if s not in self.records or self.records[s].ok]
        order = members if round_no % 2 else members[::-1]  # who goes first alternates (A B, B A, ...)
        phases = self._phases(cell)
        plan = self._plan(cell, phases)
        asked = [replace(s, phases=phases) for s in order]
        started = time.monotonic()
        got: list[CellRecord] = []
        # From a worker's exit until its round is in the file a signal waits (a round in hand is never
        # lost); waiting on a running worker stays interruptible (lifetime.interruptible).
        with signals_deferred():
            if self.schedule.lockstep and len(asked) > 1:
                for spec in order:
                    self.events.started(spec, round_no)
                meter = self.meter()
                got = self.run_lockstep(asked, plan, self._timeout(asked[0]), self.cache, failed_record)
                busy = noise.other_busy(meter)
                firsts = [self._keep(spec, record, round_no, busy) for spec, record in zip(order, got)]
            else:
                firsts = []
                for spec, ask in zip(order, asked):  # each kept as it comes: a later one may be cut short
                    self.events.started(spec, round_no)
                    meter = self.meter()
                    got.append(self.run_one(ask, self._timeout(ask), cache_dir=self.cache, plan=plan,
                                            initial=None if plan else INITIAL_GROUP_S))
                    firsts.append(self._keep(spec, got[-1], round_no, noise.other_busy(meter)))
        for record, first in zip(got, firsts):
            if first and record.ok:  # derived figures, after the save: best effort
                efficiency.annotate(record, self.peak_gflops)
        if any(firsts):
            self.store.save()
        cell.last_wall = time.monotonic() - started
        cell.wall += cell.last_wall
        cell.timed += sum(timed_seconds(r) for r in got)
        cell.rounds += 1
        for spec in order:
            self.events.finished(self.records[spec], round_no)

    def _phases(self, cell: Cell) -> tuple[str, ...]:
        """All phases until the first look; then the groups up to the last one still undecided, in
        the same order: a group's times depend on what ran before it in the process (PyTorch's
        inference alone ran far slower than after training, docs/protocol.md), so each measured group
        keeps the groups before it, and only decided groups after the last open one are left out."""
        spec = cell.specs[0]
        if not cell.undecided:
            return spec.phases
        order = groups_of(list(spec.phases))
        kept = order[:max(order.index(g) for g in groups_of(cell.undecided)) + 1]
        return tuple(p for p in spec.phases if PHASES[p].group in kept)

    def _plan(self, cell: Cell, phases: tuple[str, ...]) -> dict[str, int] | None:
        """The samples per group of the cell's next round.  A first round has no noise to plan by: with
        --rounds auto it takes the fewest samples a planned round takes, so it costs what the later ones
        do (the rounds' noise is measured across rounds); with fixed rounds (None) it samples each group
        for INITIAL_GROUP_S."""
        members = self.live(cell)
        if not cell.rounds or not members:
            return {g: MIN_PLANNED for g in groups_of(phases)} if self.schedule.rounds is None else None
        fixed = max(0.0, cell.wall - cell.timed) / cell.rounds
        # What the priming workers left of the cell's budget is what its rounds share.
        budget = self.schedule.budget - self.primed / len(self.cells) if self.schedule.rounds is None else None
        return planning.plan_round(members, groups_of(phases), fixed, self.schedule.stat, budget, cell.undecided)

    def _timeout(self, spec: CellSpec) -> float:
        return self.schedule.timeout or default_timeout(spec)

    def _keep(self, spec: CellSpec, record: CellRecord, round_no: int, busy: float | None) -> bool:
        """Save a round into its cell's record (the caller defers signals); True for a cell's first.
        `busy`: the share of the CPUs other work used while it ran."""
        record.spec = spec  # the cell's own spec, whichever phases this round measured
        for r in record.rounds:
            r.number, r.run, r.other_busy = round_no, self.run_id, busy
            if r.disturbed:
                record.warnings.append(f"round {round_no} set aside: other work used {busy:.0%} of the "
                                       "CPUs while it ran")
        first = self.records.get(spec)
        if first is None:
            if _setup(spec) in self.unprimed:
                record.warnings.append(f"not primed ({self.unprimed[_setup(spec)]}): round {round_no} "
                                       "compiled what later rounds loaded, so it is unlike them")
            self.records[spec] = record
            self.store.add(record)
            return True
        if record.ok:
            try:
                first.add_round(record)
            except ValueError as exc:  # another version or environment: never pooled, said why
                first.warnings.append(f"round {round_no} not pooled: {exc}")
        else:
            first.warnings.append(f"round {round_no} failed: {record.error}")
        self.store.save()
        return False

    def _account(self) -> None:
        """Where the wall time went, per cell and for the run: the share in timed iterations."""
        wall = sum(c.wall for c in self.cells.values())
        timed = sum(c.timed for c in self.cells.values())
        for cell in self.cells.values():
            members = self.live(cell)
            looks = planning.looks(members, self.schedule.stat) if members else {}
            undecided = [p for p, look in looks.items() if not look.decided]
            for r in members:
                r.timed_share = cell.timed / cell.wall if cell.wall else None
                r.undecided = undecided
        self.store.environment["time"] = {"wall_s": wall, "timed_s": timed, "priming_s": self.primed,
                                          "timed_share": timed / wall if wall else None}


def _setup(spec: CellSpec) -> CellSpec:
    """What a priming worker primes: the spec without its variant's name (an A/A pair's twins are one)."""
    return replace(spec, variant_name="")


def run_matrix(
    specs: list[CellSpec],
    store: ResultsFile,
    schedule: Schedule = Schedule(),
    peak_gflops: float | None = None,
    events: MatrixEvents | None = None,
    run_one: Callable[..., CellRecord] = run_cell,
    run_lockstep: Callable[..., list[CellRecord]] = lockstep_round,
    meter: Callable[[], noise.StealMeter] = noise.StealMeter,
    prime: Callable[[CellSpec, float, Path], str | None] | None = None,
) -> list[CellRecord]:
    """Measure every cell in rounds, saving after every round, and return the records.

    Cells a framework cannot run (unavailable, option unsupported) become skipped records, never
    attempted.  A cell whose round fails keeps the rounds it has and a warning.  `run_one` measures
    one back-to-back round and `run_lockstep` one lockstep round of a cell (tests script them);
    `meter` measures the other work on the machine during each round.  Rounds of one matrix share a
    folder where frameworks may cache compiled code; `prime` (`runner.prime_cell`) fills it before
    round 1, once per setup.
    """
    with scratch_dir(CACHE_PREFIX) as cache:
        return Matrix(specs, store, schedule, peak_gflops, events or MatrixEvents(), cache,
                      run_one, run_lockstep, meter, prime).run()
