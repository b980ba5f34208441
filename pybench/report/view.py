"""The view model every report renders: complete rows, each number computed here once.

A `Row` carries its identity, per phase an estimate with its interval, quality mark, the raw round
values, the ratio to its cell's baseline (the first framework) with interval and verdict and whether
it is the faster framework; then details per phase group (throughput, FLOP/s, % of peak, memory, first
run, energy) and notes.  Markdown, terminal, plot, HTML and CSV only format these rows: none of them
computes a statistic or imports another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pybench.backends import FRAMEWORKS
from pybench.errors import UserError
from pybench.protocol.phases import GROUP_WEIGHTS, HEADLINE, PHASES
from pybench.records.record import CellRecord
from pybench.records.ratios import Ratio
from pybench.records.statistics import DEFAULT_STAT, STATS, Verdict, round_values
from pybench.protocol.workloads import ALL

MODEL_ORDER = {name: i for i, name in enumerate(ALL)}
FRAMEWORK_ORDER = list(FRAMEWORKS)  # the seed lists PyTorch first; ratios are against the first
# Below this the NVML counter (updated every 20-100 ms) cannot give a per-batch figure worth showing.
MIN_ENERGY_WINDOW_S = 1.0


def with_variant(label: str, variant: str) -> str:
    """A row's label with what makes it not the plain row: 'PyTorch 2.14.1 (bf16)'."""
    return f"{label} ({variant})" if variant else label


def check_stat(stat: str) -> None:
    if stat not in STATS:
        raise UserError(f"unknown statistic {stat!r}; valid: {', '.join(STATS)}")


def headline(phases: list[str] | tuple[str, ...]) -> str:
    """The phase a one-number summary of a cell leads with: total, else step, else inference."""
    return next((HEADLINE[g] for g in GROUP_WEIGHTS if HEADLINE[g] in phases), phases[0])


@dataclass
class Cell:
    value: float | None = None  # seconds; None: empty or failed
    text: str = ""  # published text kept verbatim (e.g. "0.097551" without unit)
    quality: str = "precise"  # or "noisy", "too_few_samples" (records.CellRecord.quality)
    failed: bool = False
    ci_low: float | None = None
    ci_high: float | None = None
    half_width: float | None = None  # seconds: the interval's larger distance from the value
    rounds: list[float] = field(default_factory=list)  # each round's number (median or min)
    samples: list[list[float]] = field(default_factory=list)  # raw, per round
    ratio: Ratio | None = None  # to the baseline row of the same cell
    faster: bool = False  # faster than every other framework's row of its model, beyond precision


@dataclass
class GroupDetails:
    group: str
    phase: str  # its headline
    images_per_s: float
    gflops: float | None = None
    peak_percent: float | None = None
    peak_kind: str = "peak"  # what peak_percent is of (`Peak.kind`)
    memory: dict[str, int] = field(default_factory=dict)
    first_run: float = 0.0
    energy_j: float | None = None  # per batch
    energy_source: str = ""  # "NVML" or "RAPL (whole package)"; "" with `energy_missing` saying why
    energy_missing: str = ""
    cpu_seconds: float | None = None  # per batch, this worker's user + system time
    gc_share: float | None = None  # of the sampled time, the runtime's garbage collection; None: not reported


@dataclass
class Row:
    model: str
    framework: str  # bold compares different frameworks
    label: str  # the Framework column: "PyTorch 2.14.1 (bf16)"
    cells: dict[str, Cell]
    params: int | None = None
    error: str | None = None
    record: CellRecord | None = None  # None for published rows
    baseline: str | None = None  # the label of the row its ratios are against
    details: list[GroupDetails] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def identity(self) -> dict[str, Any]:
        """The full cell key as flat columns; published rows give what they have."""
        if self.record is None:
            return {"model": self.model, "framework": self.framework, "label": self.label}
        return {**self.record.key.to_json(), "title": self.label, "status": self.record.status}


def _energy(record: CellRecord, group: str, phase: str, detail: GroupDetails) -> None:
    totals, iterations = record.energy(group, phase)
    if not iterations:
        detail.energy_missing = "not measured"
        return
    if "cpu_ns" in totals:
        detail.cpu_seconds = totals["cpu_ns"] * 1e-9 / iterations
    window = totals.get("window_ns", 0) * 1e-9
    joules, source = ((totals["gpu_mj"] * 1e-3, "NVML") if "gpu_mj" in totals else
                      (totals["rapl_uj"] * 1e-6, "RAPL (whole package)") if "rapl_uj" in totals else (None, ""))
    if joules is None:
        detail.energy_missing = "no NVML counter" if record.key.device_kind == "cuda" else "no RAPL"
    elif window < MIN_ENERGY_WINDOW_S:
        detail.energy_missing = f"window {window:.2g} s too short for the counter"
    else:
        detail.energy_j, detail.energy_source = joules / iterations, source


def _gc_share(record: CellRecord, phase: str) -> float | None:
    """The share of every round's sampled time that the framework's garbage collector took; None
    where it reports none (Python's collector is off while PyTorch and JAX sample)."""
    runs = record.runs(phase)
    if not runs or any(p.gc is None for p in runs):
        return None
    return sum(sum(p.gc) for p in runs) / sum(sum(p.samples) for p in runs)


def details_of(record: CellRecord, stat: str) -> list[GroupDetails]:
    """Images/s, achieved GFLOP/s with % of the device's peak, peak memory, first run and energy per
    group, from its headline phase."""
    from pybench.backends.efficiency import phase_flops

    out = []
    if not record.ok:
        return out
    for group, phase in HEADLINE.items():
        if phase not in record.phase_names:
            continue
        seconds = record.estimate(phase, stat).value
        d = GroupDetails(group, phase, record.spec.batch_size / seconds, memory=record.memory(group),
                         first_run=record.first_run(phase), gc_share=_gc_share(record, phase))
        flops = phase_flops(record, phase)
        if flops:
            d.gflops = flops / seconds / 1e9
            if record.peak and record.peak.gflops:
                d.peak_percent, d.peak_kind = 100 * d.gflops / record.peak.gflops, record.peak.kind
        _energy(record, group, phase, d)
        out.append(d)
    return out


def _notes(record: CellRecord, stat: str) -> list[str]:
    screen = record.screen(stat) if record.ok else None
    return [*record.warnings, *(record.workload.notes if record.workload else []), *([screen.note()] if screen else [])]


def row_of(record: CellRecord, stat: str) -> Row:
    cells = {}
    for p in record.spec.phases:
        if not record.ok:
            cells[p] = Cell(failed=record.status == "failed")
        elif p in record.phase_names:
            e = record.estimate(p, stat)
            rel = e.half_width_rel
            cells[p] = Cell(value=e.value, quality=record.quality(p, stat), ci_low=e.ci_low, ci_high=e.ci_high,
                            half_width=None if rel is None else rel * e.value,
                            rounds=round_values(record.samples(p), stat), samples=record.samples(p))
    return Row(
        model=record.spec.model,
        framework=record.spec.framework,
        label=with_variant(record.title, record.key.variant),
        cells=cells,
        params=record.workload.params if record.workload else None,
        error=" ".join(record.error.split()) if record.error else None,
        record=record,
        details=details_of(record, stat),
        notes=_notes(record, stat),
    )


def row_order(row: Row) -> tuple:
    if row.record is not None and row.record.key.named_variant:  # variants keep the order given: the
        return (MODEL_ORDER.get(row.model, len(MODEL_ORDER)), row.model)  # first is every ratio's base
    fw = FRAMEWORK_ORDER.index(row.framework) if row.framework in FRAMEWORK_ORDER else len(FRAMEWORK_ORDER)
    return (MODEL_ORDER.get(row.model, len(MODEL_ORDER)), row.model, fw, row.framework, row.label)


def ratio(a: Row, b: Row, phase: str, stat: str) -> Ratio | None:
    """a's time over b's, from the rounds of one run they measured side by side (drift cancels); None
    when they have none in common."""
    if a.record is None or b.record is None or phase not in a.record.phase_names \
            or phase not in b.record.phase_names:
        return None
    return a.record.ratio_to(b.record, phase, stat)


def faster(a: Row, b: Row, phase: str, stat: str) -> bool:
    """Whether row a is faster than row b in `phase`, beyond the measured precision: the ratio's
    verdict (`ratios.paired_ratios`).  Published rows have no samples: the smaller number wins, as the seed did."""
    if a.record is None or b.record is None:
        va, vb = a.cells[phase].value, b.cells[phase].value
        return va is not None and vb is not None and va < vb
    r = ratio(a, b, phase, stat)
    return r is not None and r.verdict() == Verdict.FASTER


def compare_rows(rows: list[Row], stat: str) -> None:
    """Fill each row's ratios to its cell's baseline and the faster-framework marks, in place.  Rows
    are compared only within one model and cell identity (never across machines or settings)."""
    groups: dict[Any, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.record.key.cell if row.record else row.model, []).append(row)
    for members in groups.values():
        base = next((r for r in members if r.record is not None and r.record.ok), None)
        for row in members:
            if base is not None and row is not base and row.record is not None and row.record.ok:
                row.baseline = base.label
                for p, cell in row.cells.items():
                    cell.ratio = ratio(row, base, p, stat)
        for p in PHASES:
            valued = [r for r in members if p in r.cells and r.cells[p].value is not None]
            if len({r.framework for r in valued}) < 2:
                continue
            for r in valued:
                others = [o for o in valued if o.framework != r.framework]
                r.cells[p].faster = all(faster(r, o, p, stat) for o in others)


def rows_of(records: list[CellRecord], stat: str = DEFAULT_STAT) -> list[Row]:
    """Complete rows of a set of records (one run's), in table order."""
    check_stat(stat)
    rows = sorted((row_of(r, stat) for r in records), key=row_order)
    compare_rows(rows, stat)
    return rows
