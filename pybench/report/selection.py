"""Which records a report shows and how they group: the intermediate form (Section -> Row -> Cell)
that markdown, terminal tables and plots all render, so they share one selection, order and identity.

Identity is `CellKey`: the newest record of each key wins (a rerun replaces a row), records that
differ in any field of the key are never merged, and a section holds the rows of one device, machine
label and setting, so nothing that would look the same is silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from pybench.backends import FRAMEWORKS
from pybench.errors import UserError
from pybench.protocol import LAYER_PHASES, PHASES, SEED_PHASES
from pybench.records import CellRecord
from pybench.report.format import with_variant
from pybench.results import ResultsDoc
from pybench.spec import CellKey
from pybench.statistics import paired_ratio
from pybench.workloads import ALL, DEFAULT_IMAGE_SIZE

STATS = ("median", "min")
MODEL_ORDER = {name: i for i, name in enumerate(ALL)}
FRAMEWORK_ORDER = list(FRAMEWORKS)  # the seed lists PyTorch first; ratios are against the first


def check_stat(stat: str) -> None:
    if stat not in STATS:
        raise UserError(f"unknown statistic {stat!r}; valid: {', '.join(STATS)}")


def _created(doc: ResultsDoc) -> datetime:
    try:
        return datetime.strptime(doc.created, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:  # undated files count as oldest; sort is stable so input order breaks ties
        return datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Entry:
    record: CellRecord
    default_threads: int | None  # the cores its machine had: other thread counts are a setting


def latest(docs: list[ResultsDoc]) -> list[Entry]:
    """The newest record of every cell key, files taken oldest first so a rerun replaces a row."""
    out: dict[CellKey, Entry] = {}
    for doc in sorted(docs, key=_created):
        cores = doc.environment.get("cores_available")
        for record in doc.records:
            out[record.key] = Entry(record, cores if isinstance(cores, int) else None)
    return list(out.values())


@dataclass
class Cell:
    value: float | None = None  # seconds; None: empty or failed
    text: str = ""  # published text kept verbatim (e.g. "0.097551" without unit)
    quality: str = "precise"  # or "noisy", "too_few_samples" (records.CellRecord.quality)
    failed: bool = False


@dataclass
class Row:
    model: str
    framework: str  # bold compares different frameworks
    label: str  # the Framework column: "PyTorch 2.14.1 (bf16)"
    cells: dict[str, Cell]
    params: int | None = None
    error: str | None = None
    record: CellRecord | None = None  # None for published rows


@dataclass
class Section:
    heading: str
    device: str
    settings: str = ""  # the line under the heading; '' when everything is default
    rows: list[Row] = field(default_factory=list)
    layers: bool = False  # the per-layer suite: its own table, in milliseconds, no inference column

    @property
    def phases(self) -> tuple[str, ...]:
        return LAYER_PHASES if self.layers else SEED_PHASES


def row_of(record: CellRecord, stat: str) -> Row:
    cells = {}
    for p in record.spec.phases:
        if not record.ok:
            cells[p] = Cell(failed=record.status == "failed")
        elif p in record.phase_names:
            cells[p] = Cell(value=record.estimate(p, stat).value, quality=record.quality(p))
    return Row(
        model=record.spec.model,
        framework=record.spec.framework,
        label=with_variant(record.title, record.key.variant),
        cells=cells,
        params=record.workload.params if record.workload else None,
        error=" ".join(record.error.split()) if record.error else None,
        record=record,
    )


def row_order(row: Row) -> tuple:
    if row.record is not None and row.record.key.variant_name:  # variants keep the order given: the
        return (MODEL_ORDER.get(row.model, len(MODEL_ORDER)), row.model)  # first is every ratio's base
    fw = FRAMEWORK_ORDER.index(row.framework) if row.framework in FRAMEWORK_ORDER else len(FRAMEWORK_ORDER)
    return (MODEL_ORDER.get(row.model, len(MODEL_ORDER)), row.model, fw, row.framework, row.label)


def _settings_line(key: CellKey, default_batch: bool, default_threads: int | None, layers: bool) -> str:
    parts = [] if default_batch else [f"batch size {key.batch_size}"]
    if not layers and key.image_size != DEFAULT_IMAGE_SIZE:
        parts.append(f"image 3 x {key.image_size} x {key.image_size}")
    varies = bool(key.variant_name)  # variants of one model differ in these: each row's label names its own
    if key.threads != default_threads and not varies:
        parts.append(f"{key.threads} thread{'s' * (key.threads != 1)}")
    if key.tf32 and not varies:
        parts.append("TF32 allowed")
    if key.dtype != "fp32" and not varies:
        parts.append(f"dtype {key.dtype}")
    return f"Non-default settings: {', '.join(parts)}." if parts else ""


def measured_sections(docs: list[ResultsDoc], stat: str = "median") -> list[Section]:
    """One section per device, machine label and non-default setting."""
    check_stat(stat)
    groups: dict[tuple, list[Entry]] = {}
    for entry in latest(docs):
        k = entry.record.key
        w = ALL.get(k.model)
        layers = bool(w and w.is_layer)
        default_batch = w is not None and k.batch_size == w.default_batch(entry.record.spec.device)
        settings = _settings_line(k, default_batch, entry.default_threads, layers)
        groups.setdefault((layers, k.device_kind != "cuda", k.device_name, k.label, settings), []).append(entry)

    names: dict[tuple[bool, str], set[str]] = {}  # which labels share a device name
    for layers, cpu, name, label, _ in groups:
        names.setdefault((layers, name), set()).add(label)
    out = []
    for key in sorted(groups):
        layers, cpu, name, label, settings = key
        device = name if len(names[(layers, name)]) == 1 else f"{name} ({label})"
        rows = sorted((row_of(e.record, stat) for e in groups[key]), key=row_order)
        prefix = "Per-layer benchmarks --- " if layers else ""
        out.append(Section(heading=f"{prefix}{'CPU' if cpu else 'GPU'} USED --- {device}", device=device,
                           settings=settings, rows=rows, layers=layers))
    return out


def reference_sections(reference: list[dict]) -> list[Section]:
    """Published rows in their own sections, labelled so nobody reads them as this machine's."""
    sections: dict[tuple, Section] = {}
    for ref in reference:
        key = (ref["year"], ref["device"])
        if key not in sections:
            sections[key] = Section(
                heading=f"Published {ref['year']} reference --- {ref['device']} (not measured on this machine)",
                device=ref["device"],
            )
        text = ref.get("text", {})
        sections[key].rows.append(Row(
            model=ref["model"],
            framework=ref["framework"].split()[0].lower(),
            label=with_variant(ref["framework"], f"published {ref['year']}"),
            cells={p: Cell(value=ref.get(p), text=text.get(p) or "") for p in SEED_PHASES},
        ))
    return list(sections.values())


def _faster(a: Row, b: Row, phase: str, stat: str) -> bool:
    """Whether row a is faster than row b in `phase`, beyond the measured precision.

    Measured rows: the ratio's 95% interval (rounds paired, drift cancels) must exclude 1.  Published
    rows have no samples: the smaller number wins, as the seed marked it.
    """
    if a.record is None or b.record is None:
        va, vb = a.cells[phase].value, b.cells[phase].value
        return va is not None and vb is not None and va < vb
    ratio = paired_ratio(a.record.samples(phase), b.record.samples(phase),
                         a.record.spec.stop.confidence, stat)
    return ratio.ci_high is not None and ratio.ci_high < 1


def winners(rows: list[Row], stat: str = "median") -> set[tuple[int, str]]:
    """(row index, phase) of the faster framework, per model and variant: the row faster than every
    other framework's row beyond the measured precision (a tie marks nothing)."""
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row.model, []).append(i)
    out = set()
    for members in groups.values():
        for p in PHASES:
            valued = [i for i in members if p in rows[i].cells and rows[i].cells[p].value is not None]
            if len({rows[i].framework for i in valued}) < 2:
                continue
            for i in valued:
                others = [j for j in valued if rows[j].framework != rows[i].framework]
                if all(_faster(rows[i], rows[j], p, stat) for j in others):
                    out.add((i, p))
    return out
