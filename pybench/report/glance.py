"""`compare`'s printed answer, a pure formatter of the view model (`view` rows, `answer` answers):
the verdict lines first, then per model the times and ratios with phases as rows and frameworks as
columns, then the details, sized to the terminal.

Every table is tried in the widest form first and narrowed until it fits `width`: intervals as
[low, high], then as ±%; frameworks split over several tables as a last resort.  Columns never wrap
(no_wrap), so a cell is never cut or broken over lines; a cell without a number says why.
"""

from __future__ import annotations

from typing import Callable, Sequence

from rich import box
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from pybench.protocol.phases import PHASES
from pybench.records.record import CellRecord
from pybench.records.ratios import ratio_confidence
from pybench.records.statistics import DEFAULT_STAT, Verdict
from pybench.report.answer import (REASONS, Answer, RatioText, TimeText, answers, percent, ratio_reading,
                                   time_text)
from pybench.report.format import detail_texts, fmt_duration, fmt_memory, model_title
from pybench.text import terminal_text
from pybench.report.view import Row, rows_of

INTERVALS = ("bracket", "percent")  # the forms an interval takes, widest first
STYLE = {Verdict.FASTER: "bold green", Verdict.SLOWER: "bold red", Verdict.UNDECIDED: "yellow", Verdict.TIE: ""}


def _text(value: object, style: str = "") -> Text:
    return Text(terminal_text(value), style=style)  # Text: '[x]' in a label is not markup


def _width(table: Table) -> int:
    console = Console(width=100_000)
    return Measurement.get(console, console.options, table).maximum


def _table(title: str, first: str, columns: Sequence[str]) -> Table:
    table = Table(title=_text(title), box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    table.add_column(_text(first), no_wrap=True)
    for col in columns:
        table.add_column(_text(col), justify="right", no_wrap=True)
    return table


Build = Callable[[Sequence[Row], str], list[Table]]


def _fit(forms: Sequence[Build], rows: Sequence[Row], width: int) -> list[Table]:
    """The first of `forms` (widest first), each with bracket then ±% intervals, whose tables all fit;
    else the rows split over tables."""
    for build in forms:
        for interval in INTERVALS:
            tables = build(rows, interval)
            if all(_width(t) <= width for t in tables):
                return tables
    if len(rows) == 1:
        return tables  # one column in its narrowest form: nothing narrower exists
    half = (len(rows) + 1) // 2
    return _fit(forms, rows[:half], width) + _fit(forms, rows[half:], width)


def time_cell(t: TimeText, interval: str) -> Text:
    """'21.9 ms [21.2 ms, 22.8 ms]', '21.9 ms ±3.4%', '21.9 ms, too noisy' or why there is no number."""
    if t.value is None:
        return _text(t.reason, "red" if t.reason in ("failed", "skipped") else "dim")
    text = fmt_duration(t.value)
    if t.reason:
        return _text(f"{text}, {t.reason}", "yellow")
    if interval == "bracket":
        return _text(f"{text} [{fmt_duration(t.low)}, {fmt_duration(t.high)}]")
    return _text(f"{text} ±{percent(t.half_percent)}")


def ratio_cell(r: RatioText, interval: str) -> Text:
    return _text(r.text(interval), STYLE.get(r.word, "yellow"))


def _phase_table(model_rows: Sequence[Row], interval: str, times: bool, ratios: bool) -> Table:
    """Phases as rows; each row's time and/or each row's ratio to its baseline as columns."""
    phases = [p for p in PHASES if any(p in r.cells for r in model_rows)]
    ratio_rows = [r for r in model_rows if r.baseline is not None] if ratios else []
    heads = [r.label for r in model_rows] * times + [f"{r.label} vs {r.baseline}" for r in ratio_rows]
    table = _table("", "phase", heads)
    for p in phases:
        cells = [time_cell(time_text(r, p), interval) for r in model_rows] if times else []
        cells += [ratio_cell(ratio_reading(r, p), interval) for r in ratio_rows]
        table.add_row(_text(PHASES[p].column), *cells)
    return table


def _together(rows: Sequence[Row], interval: str) -> list[Table]:
    return [_phase_table(rows, interval, times=True, ratios=True)]


def _apart(rows: Sequence[Row], interval: str) -> list[Table]:
    tables = [_phase_table(rows, interval, times=True, ratios=False)]
    return tables + ([_phase_table(rows, interval, times=False, ratios=True)]
                     if any(r.baseline for r in rows) else [])


def _details(model_rows: Sequence[Row], interval: str) -> list[Table]:
    """Per phase group: images/s, GFLOP/s (% of peak), first run (compilation included), each peak
    memory, energy, and the garbage collector's share where a runtime reports one."""
    table = _table("", "detail", [r.label for r in model_rows])
    groups = list(dict.fromkeys(d.group for r in model_rows for d in r.details))
    for group in groups:
        per = [next((d for d in r.details if d.group == group), None) for r in model_rows]
        texts = [detail_texts(d) if d else None for d in per]
        kinds = list(dict.fromkeys(k for d in per if d for k, v in d.memory.items() if v))
        for name, key in (("images/s", "ips"), ("GFLOP/s", "gflops"), ("first run", "first_run")):
            table.add_row(_text(f"{group}: {name}"), *[_text(
                "not measured" if t is None else "no FLOP count" if t[key] == "-" else t[key]) for t in texts])
        for kind in kinds:  # one line per kind: rss, allocated, reserved, ...
            table.add_row(_text(f"{group}: peak memory"), *[_text(fmt_memory({kind: d.memory[kind]})
                                                                  if d and d.memory.get(kind) else "not reported")
                                                            for d in per])
        table.add_row(_text(f"{group}: energy"), *[_text(t["energy"] if t else "not measured") for t in texts])
        if any(d and d.gc_share is not None for d in per):
            table.add_row(_text(f"{group}: GC share"), *[_text(t["gc"] if t else "not measured") for t in texts])
    return [table]


def _verdicts(found: list[Answer], rows: list[Row]) -> list[RenderableType]:
    out: list[RenderableType] = []
    for a in found:
        flagged = a.disagrees or bool(a.numerics)
        out.append(_text(a.sentence(), "bold red" if flagged else "bold"))
        out += [Text("  ") + _text(fact, "red" if fact.startswith(("parity: outputs DIFFER", "numerics differ"))
                                   else "") for fact in a.facts()]
    for r in rows:
        if r.record is not None and not r.record.ok:
            out.append(_text(f"{r.model}: {r.label} {r.record.status}: {r.error}", "red"))
    return out


def compare_answer(records: list[CellRecord], width: int, stat: str = DEFAULT_STAT) -> list[RenderableType]:
    """Everything `compare` prints after measuring, each renderable at most `width` columns wide
    (the verdict lines wrap as prose; tables never wrap a cell)."""
    rows = rows_of(records, stat)
    out = _verdicts(answers(rows), rows)
    reasons: set[str] = set()
    for model in dict.fromkeys(r.model for r in rows):
        model_rows = [r for r in rows if r.model == model and r.record is not None and r.record.ok]
        if not model_rows:
            continue
        spec = model_rows[0].record.spec
        level = ratio_confidence(spec.stop.confidence, spec.stop.sequential)  # the level the ratios used
        levels = f"{spec.stop.confidence:.0%} interval" + (f"; ratios {level:.1%}" if level != spec.stop.confidence else "")
        out.append(_text(f"{model_title(model)}: {stat} per batch of {spec.batch_size} at {spec.image_size} px "
                         f"on {spec.device} [{levels}]", "bold"))
        out += _fit((_together, _apart), model_rows, width)
        out += _fit((_details,), model_rows, width)
        reasons |= {time_text(r, p).reason for r in model_rows for p in r.cells}
        reasons |= {ratio_reading(r, p).reason for r in model_rows if r.baseline for p in r.cells}
    out += [_text(f"{reason}: {REASONS[reason]}", "dim") for reason in sorted(reasons) if reason in REASONS]
    return out

