"""Terminal tables (rich): the summary after a run, and for `compare` the ratios to the first
framework with their intervals and the throughput/memory/first-run details."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from pybench.backends import FRAMEWORKS
from pybench.protocol import MODEL_PHASES
from pybench.records import CellRecord
from pybench.report.format import fmt_duration, model_title, with_variant
from pybench.report.markdown import DETAILS, FAILED, FEW, NOISY, detail_values
from pybench.report.selection import check_stat, row_of, row_order
from pybench.spec import CellKey
from pybench.workloads import ALL
from pybench.statistics import paired_ratio

MARKS = {"noisy": NOISY, "too_few_samples": FEW}


def _ordered(records: list[CellRecord]) -> list[CellRecord]:
    return sorted(records, key=lambda r: row_order(row_of(r, "median")))


def _label(record: CellRecord) -> Text:
    return Text(with_variant(record.title, record.key.variant))  # Text: '[x]' in a label is not markup


def _phase_cell(record: CellRecord, phase: str, stat: str) -> Text:
    if phase not in record.phase_names:
        return Text("")
    e = record.estimate(phase, stat)
    half = None
    if e.ci_low is not None and e.ci_high is not None:
        half = (e.ci_high - e.ci_low) / 2
    text = fmt_duration(e.value, half)
    mark = MARKS.get(record.quality(phase, stat))
    return Text(f"{text} {mark}", style="yellow") if mark else Text(text)


def _baselines(records: list[CellRecord]) -> dict[CellKey, CellRecord]:
    """Per cell, the record ratios are taken against: the first framework's (PyTorch)."""
    out: dict[CellKey, CellRecord] = {}
    for r in _ordered(records):
        if r.ok:
            out.setdefault(r.key.cell, r)
    return out


def _ratio_text(record: CellRecord, base: CellRecord, phase: str, stat: str) -> Text:
    if phase not in record.phase_names or phase not in base.phase_names:
        return Text("")
    ratio = paired_ratio(record.samples(phase), base.samples(phase), record.spec.stop.confidence, stat)
    text = f"{ratio.value:.2f}×"
    if ratio.ci_low is not None and ratio.ci_high is not None:
        text += f" [{ratio.ci_low:.2f}, {ratio.ci_high:.2f}]"
    verdict = ratio.verdict()
    style = {"faster": "bold green", "slower": "bold red"}.get(verdict, "dim")
    return Text(f"{text} {verdict}", style=style)


def _notes(records: list[CellRecord], stat: str) -> list[str]:
    notes = []
    qualities = {r.quality(p, stat) for r in records if r.ok for p in r.phase_names}
    if "noisy" in qualities:
        notes.append(f"{NOISY} noisy: the interval is wider than the target precision")
    if "too_few_samples" in qualities:
        notes.append(f"{FEW} too few samples: no interval, or a lone round that stopped short")
    for r in records:
        if not r.ok:
            notes.append(f"{FAILED} {model_title(r.spec.model)} {r.spec.framework}: {' '.join(r.error.split())}")
        notes += [f"! {model_title(r.spec.model)} {r.spec.framework}: {w}" for w in r.warnings]
        if r.workload:
            notes += [f"note: {model_title(r.spec.model)} {r.spec.framework}: {n}" for n in r.workload.notes]
    return notes


def summary_table(records: list[CellRecord], stat: str = "median") -> Table:
    """One row per record: each phase's estimate ± interval half-width, rounds x samples, first run,
    and the headline ratio to the first framework of the same cell."""
    check_stat(stat)
    ordered = _ordered(records)
    bases = _baselines(ordered)
    devices = ", ".join(dict.fromkeys(r.spec.device for r in ordered))
    table = Table(title=f"{stat} per batch" + (" ± 95% interval half-width" if stat == "median" else "")
                  + f" on {devices}")
    for col in ("model", "framework", *MODEL_PHASES, "rounds x n", "first run", "total vs first"):
        table.add_column(col, justify="left" if col in ("model", "framework") else "right")
    previous = None
    for r in ordered:
        model = "" if r.spec.model == previous else model_title(r.spec.model)
        previous = r.spec.model
        if not r.ok:
            word = "skipped" if r.status == "skipped" else "failed"
            table.add_row(model, _label(r), *[Text(f"{word} {FAILED}", style="red")] * len(MODEL_PHASES),
                          "", "", "")
            continue
        phases = r.phase_names
        lead = next((p for p in ("total", "step", "inference") if p in phases), phases[0])
        counts = "/".join(dict.fromkeys(str(len(s)) for s in r.samples(lead)))
        base = bases.get(r.key.cell)
        ratio = _ratio_text(r, base, lead, stat) if base is not None and base is not r else Text("")
        table.add_row(model, _label(r), *[_phase_cell(r, p, stat) for p in MODEL_PHASES],
                      f"{len(r.rounds)} x {counts}", fmt_duration(r.first_run(lead)), ratio)
    notes = _notes(ordered, stat)
    if notes:
        table.caption = Text("\n".join(notes), justify="left")
    return table


def ratio_table(records: list[CellRecord], stat: str = "median") -> Table:
    """Every framework's time relative to the first framework of its cell, per phase, with the 95%
    interval from rounds paired back to back: 'faster'/'slower' only when it excludes 1."""
    bases = _baselines(records)
    table = Table(title="time relative to the first framework (95% interval; drift cancels in paired rounds)")
    for col in ("model", "framework", "vs", *MODEL_PHASES):
        table.add_column(col, justify="left" if col in ("model", "framework", "vs") else "right")
    for r in _ordered(records):
        base = bases.get(r.key.cell)
        if not r.ok or base is None or base is r:
            continue
        table.add_row(model_title(r.spec.model), _label(r), _label(base),
                      *[_ratio_text(r, base, p, stat) for p in MODEL_PHASES])
    return table


def details_table(records: list[CellRecord], stat: str = "median") -> Table:
    """Terminal form of the details, for `compare`."""
    table = Table(title="throughput, memory and first run (first run includes compilation)")
    for col in ("model", "framework", *DETAILS.values()):
        table.add_column(col, justify="left" if col in ("model", "framework") else "right")
    for r in _ordered(records):
        table.add_row(model_title(r.spec.model), _label(r), *detail_values(r, stat).values())
    return table



def frameworks_table(facts: dict[str, dict] | None = None) -> Table:
    """Availability, versions and devices; `facts` (name -> Framework.describe()) when the caller
    already has them, since describing JAX starts it in a child process."""
    t = Table(title="frameworks")
    for col in ("framework", "available", "versions", "devices", "why not / fix"):
        t.add_column(col)
    for fw in FRAMEWORKS.values():
        a = fw.availability()
        known = facts[fw.name] if facts is not None else fw.describe() if a.ok else {}
        versions = ", ".join(f"{k} {v}" for k, v in known.get("versions", fw.versions()).items() if v)
        devices = ", ".join(map(str, known.get("devices") or []))
        t.add_row(fw.name, "yes" if a.ok else "no", versions, devices,
                  Text(a.reason))  # Text: '[flux]' is not markup
    return t


def workloads_table() -> Table:
    from pybench.backends.pytorch.backend import count_params

    t = Table(title="workloads")
    for col in ("model", "title", "parameters (torchvision)", "phases", "batch (cpu)", "batch (gpu)"):
        t.add_column(col)
    for w in ALL.values():
        t.add_row(w.name, w.title, f"{count_params(w.name):,}", ", ".join(w.phases),
                  str(w.default_batch("cpu")), str(w.default_batch("cuda:0")))
    return t
