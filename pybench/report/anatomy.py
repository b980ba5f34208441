"""Where a round's time goes, per framework: the median round's anatomy (`records.round.Anatomy`),
computed here once and formatted by the terminal and the exports alike."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from rich import box
from rich.table import Table
from rich.text import Text

from pybench.records.record import CellRecord
from pybench.records.round import Anatomy
from pybench.report.format import model_title
from pybench.report.view import with_variant

STEPS = ("start", "imports", "model", "first_runs", "warmup", "teardown")  # what is not sampling
HEADINGS = {"start": "interpreter start", "imports": "framework imports", "model": "model and inputs",
            "first_runs": "first runs (compile)", "warmup": "warm-up", "teardown": "record and exit"}


@dataclass(frozen=True)
class AnatomyRow:
    model: str
    label: str  # the framework (or variant) as tables name it
    rounds: int  # rounds with a timeline
    median: Anatomy  # each step's median over those rounds

    @property
    def outside(self) -> float:
        """Seconds per round that are not timed iterations."""
        return self.median.outside_samples


def anatomy_rows(records: list[CellRecord]) -> list[AnatomyRow]:
    """One row per measured record whose rounds carry a timeline (lockstep rounds and older files have
    none: they get no row)."""
    rows = []
    for r in records:
        parts = [a for rnd in r.rounds if (a := rnd.anatomy())]
        if not r.ok or not parts:
            continue
        median = Anatomy(**{f.name: float(np.median([getattr(a, f.name) for a in parts])) for f in fields(Anatomy)})
        rows.append(AnatomyRow(r.spec.model, with_variant(r.title, r.key.variant), len(parts), median))
    return rows


def anatomy_tables(rows: list[AnatomyRow]) -> list[Table]:
    """Per model, seconds of the median round step by step, one column per framework (narrow enough
    for an 80-column terminal with three or four frameworks)."""
    tables = []
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        table = Table(title=f"{model_title(model)}: where a round's time goes (seconds, median round)",
                      title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("step", no_wrap=True)
        for r in mine:
            table.add_column(r.label, justify="right")
        for step in STEPS:
            table.add_row(HEADINGS[step], *(f"{getattr(r.median, step):.1f}" for r in mine))
        table.add_row("samples (timed)", *(f"{r.median.samples:.1f}" for r in mine))
        table.add_row(Text("outside samples", style="bold"), *(Text(f"{r.outside:.1f}", style="bold") for r in mine))
        tables.append(table)
    return tables
