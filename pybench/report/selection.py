"""Which records a report shows and how they group into sections of complete rows (`view.Row`), so
markdown, plots, HTML and exports share one selection, order and identity.

Identity is `CellKey`: the newest record of each key wins (a rerun replaces a row), records that
differ in any field of the key are never merged, and a section holds the rows of one device, machine
label and setting, so nothing that would look the same is silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from pybench.errors import UserError
from pybench.protocol.phases import LAYER_PHASES, SEED_PHASES
from pybench.records.record import CellRecord
from pybench.report.view import Cell, Row, check_stat, compare_rows, row_of, row_order, with_variant
from pybench.records.results import ResultsDoc
from pybench.records.spec import CellKey
from pybench.records.statistics import DEFAULT_STAT
from pybench.protocol.workloads import ALL, DEFAULT_IMAGE_SIZE


def _created(doc: ResultsDoc) -> datetime:
    try:
        return datetime.strptime(doc.created, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:  # undated files count as oldest
        return datetime.min.replace(tzinfo=timezone.utc)


def _oldest_first(docs: list[ResultsDoc]) -> list[ResultsDoc]:
    """Files by creation, ties broken by path: the order the files are named in never decides."""
    return sorted(docs, key=lambda d: (_created(d), str(d.path.resolve())))


@dataclass(frozen=True)
class Entry:
    record: CellRecord
    default_threads: int | None  # the cores its machine had: other thread counts are a setting


def latest(docs: list[ResultsDoc]) -> list[Entry]:
    """The newest record of every cell key, files taken oldest first so a rerun replaces a row.  A
    file holding one cell twice is refused: which of the two is the measurement cannot be told."""
    out: dict[CellKey, Entry] = {}
    for doc in _oldest_first(docs):
        cores = doc.environment.get("cores_available")
        keys = [record.key for record in doc.records]
        if len(set(keys)) < len(keys):
            twice = next(i for i, k in enumerate(keys) if k in keys[:i])
            raise UserError(f"{doc.path}: record #{twice + 1} measures the same cell as an earlier record: "
                            "a results file holds one record per cell")
        for record in doc.records:
            out[record.key] = Entry(record, cores if isinstance(cores, int) else None)
    return list(out.values())


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


def _settings_line(key: CellKey, default_batch: bool, default_threads: int | None, layers: bool) -> str:
    parts = [] if default_batch else [f"batch size {key.batch_size}"]
    if not layers and key.image_size != DEFAULT_IMAGE_SIZE:
        parts.append(f"image 3 x {key.image_size} x {key.image_size}")
    varies = key.named_variant  # variants of one model differ in these: each row's label names its own
    if key.threads != default_threads and not varies:
        parts.append(f"{key.threads} thread{'s' * (key.threads != 1)}")
    if key.tf32 and not varies:
        parts.append("TF32 allowed")
    if key.dtype != "fp32" and not varies:
        parts.append(f"dtype {key.dtype}")
    return f"Non-default settings: {', '.join(parts)}." if parts else ""


def measured_sections(docs: list[ResultsDoc], stat: str = DEFAULT_STAT) -> list[Section]:
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
        compare_rows(rows, stat)
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
    for section in sections.values():
        compare_rows(section.rows, DEFAULT_STAT)  # published rows: the smaller number wins
    return list(sections.values())


@dataclass(frozen=True)
class RunInfo:
    """What produced a results file: when, the command, the machine, and the noise audit's advice."""

    name: str
    created: str
    command: list[str]
    environment: dict
    noise_advice: list[str]


def run_infos(docs: list[ResultsDoc]) -> list[RunInfo]:
    from pybench.machine.noise import NoiseAudit, advice

    out = []
    for doc in _oldest_first(docs):
        noise = doc.environment.get("noise")
        try:
            tips = (advice(NoiseAudit.from_json(noise)) or ["nothing obvious: the machine looked quiet"]
                    if isinstance(noise, dict) else ["no noise audit in this file"])
        except UserError as exc:
            tips = [str(exc)]
        out.append(RunInfo(doc.path.name, doc.created, list(doc.command), doc.environment, tips))
    return out
