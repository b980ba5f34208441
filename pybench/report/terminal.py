"""Terminal tables (rich), a pure formatter of `view` rows: the summary after a run or a collection,
frameworks and workloads (`compare`'s answer is `glance.py`)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from pybench.backends import FRAMEWORKS
from pybench.protocol.phases import MODEL_PHASES
from pybench.records.record import CellRecord
from pybench.report.format import FAILED, FEW, MARKS, NOISY, fmt_duration, model_title
from pybench.text import terminal_text
from pybench.report.view import Cell, Row, headline, rows_of
from pybench.records.ratios import Ratio
from pybench.records.statistics import DEFAULT_STAT, Verdict
from pybench.protocol.workloads import ALL



def _label(row: Row) -> Text:
    return Text(terminal_text(row.label))  # Text: '[x]' in a label is not markup


def _phase_cell(cell: Cell | None) -> Text:
    if cell is None or cell.value is None:
        return Text("")
    text = fmt_duration(cell.value)
    if cell.ci_low is not None and cell.ci_high is not None:  # log intervals are asymmetric: no linear +-
        text += f" [{fmt_duration(cell.ci_low)}, {fmt_duration(cell.ci_high)}]"
    mark = MARKS.get(cell.quality)
    return Text(f"{text} {mark}", style="yellow") if mark else Text(text)


def _ratio_text(ratio: Ratio | None) -> Text:
    if ratio is None:
        return Text("")
    text = f"{ratio.value:.2f}×"
    if ratio.ci_low is not None and ratio.ci_high is not None:
        text += f" [{ratio.ci_low:.2f}, {ratio.ci_high:.2f}]"
    verdict = ratio.verdict()
    style = {Verdict.FASTER: "bold green", Verdict.SLOWER: "bold red",
             Verdict.UNDECIDED: "yellow"}.get(verdict, "dim")
    return Text(f"{text} {verdict}", style=style)


def _notes(rows: list[Row]) -> list[str]:
    notes = []
    qualities = {c.quality for r in rows for c in r.cells.values() if c.value is not None}
    if "noisy" in qualities:
        notes.append(f"{NOISY} noisy: the interval is wider than the target precision")
    if "too_few_samples" in qualities:
        notes.append(f"{FEW} too few samples: no interval, or a lone round that stopped short")
    for r in rows:
        name = f"{model_title(r.model)} {r.framework}"
        if r.error is not None:
            notes.append(f"{FAILED} {name}: {r.error}")
        notes += [f"note: {name}: {n}" for n in r.notes]
    return notes


def summary_table(records: list[CellRecord], stat: str = DEFAULT_STAT) -> Table:
    """One row per record: each phase's estimate ± interval half-width, rounds x samples, first run,
    and the headline ratio to the first framework of the same cell."""
    rows = rows_of(records, stat)
    devices = ", ".join(dict.fromkeys(r.record.spec.device for r in rows))
    table = Table(title=f"{stat} per batch" + (" [95% interval]" if stat != "min" else "")
                  + f" on {devices}")
    for col in ("model", "framework", *MODEL_PHASES, "rounds x n", "first run", "total vs first"):
        table.add_column(col, justify="left" if col in ("model", "framework") else "right")
    previous = None
    for r in rows:
        model = "" if r.model == previous else model_title(r.model)
        previous = r.model
        if not r.record.ok:
            word = "skipped" if r.record.status == "skipped" else "failed"
            table.add_row(model, _label(r), *[Text(f"{word} {FAILED}", style="red")] * len(MODEL_PHASES),
                          "", "", "")
            continue
        lead = headline(r.record.phase_names)
        cell = r.cells[lead]
        counts = "/".join(dict.fromkeys(str(len(s)) for s in cell.samples))
        table.add_row(model, _label(r), *[_phase_cell(r.cells.get(p)) for p in MODEL_PHASES],
                      f"{len(cell.samples)} x {counts}", fmt_duration(r.record.first_run(lead)),
                      _ratio_text(cell.ratio))
    notes = _notes(rows)
    if notes:
        table.caption = Text("\n".join(map(terminal_text, notes)), justify="left")  # errors come from files
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
