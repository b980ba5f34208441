"""CSV and JSON-lines, pure formatters of `view` rows: long tables with stable column names.

`stat_table`: one row per cell, phase and statistic (mean, median and min), the full identity in columns,
the estimate, interval, quality, ratio to the baseline and, on a group's headline phase, the group's
details.  `raw_table`: one row per timed value (first run, warm-up, sample) of every round.  The
column lists below are the documented contract (docs/reports.md): add at the end, never rename.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import fields
from typing import Any, Iterable

from pybench.records.spec import CellKey
from pybench.text import terminal_text
from pybench.report.selection import Section

IDENTITY = ("machine", "device_kind", "device_name", "model", "framework", "title", "batch_size",
            "image_size", "dtype", "threads", "tf32", "channels_last", "compile", "status")
# The rest of the cell identity (`CellKey`, whose `label` is the machine column), in its order: the
# fields added with variants, and any added later, come after the columns above.
VARIANT = tuple(f.name for f in fields(CellKey) if f.name not in IDENTITY and f.name != "label")
STAT_COLUMNS = (*IDENTITY, "phase", "statistic", "seconds", "ci_low", "ci_high", "half_width", "quality",
                "n_rounds", "n_samples", "round_values", "baseline", "ratio", "ratio_ci_low",
                "ratio_ci_high", "verdict", "faster", "images_per_s", "gflops", "peak_percent",
                "first_run", "peak_rss_bytes", "cuda_max_allocated_bytes", "energy_j", "energy_source",
                "cpu_seconds", *VARIANT, "break_even_steps", "break_even")
RAW_COLUMNS = (*IDENTITY, "phase", "round", "kind", "index", "seconds", *VARIANT)


def _identity(row) -> dict[str, Any]:
    key = row.identity
    return {"machine": key.get("label"), **{c: key.get(c) for c in (*IDENTITY, *VARIANT) if c != "machine"},
            "title": row.label}


def stat_rows(by_stat: dict[str, list[Section]]) -> Iterable[dict[str, Any]]:
    """`by_stat`: the measured sections computed with each statistic."""
    from pybench.report.answer import answers

    for stat, sections in by_stat.items():
        for section in sections:
            evens = {id(a.row): a.break_even for a in answers(section.rows) if a.break_even}
            for row in section.rows:
                ident = _identity(row)
                even = evens.get(id(row))
                details = {d.phase: d for d in row.details}
                for phase, cell in row.cells.items():
                    if cell.value is None:
                        continue
                    r, d = cell.ratio, details.get(phase)
                    yield {**ident, "phase": phase, "statistic": stat, "seconds": cell.value,
                           "ci_low": cell.ci_low, "ci_high": cell.ci_high, "half_width": cell.half_width,
                           "quality": cell.quality, "n_rounds": len(cell.rounds),
                           "n_samples": sum(map(len, cell.samples)), "round_values": cell.rounds,
                           "baseline": row.baseline, "ratio": r and r.value, "ratio_ci_low": r and r.ci_low,
                           "ratio_ci_high": r and r.ci_high, "verdict": r and r.verdict(),
                           "faster": cell.faster,
                           "images_per_s": d and d.images_per_s, "gflops": d and d.gflops,
                           "peak_percent": d and d.peak_percent, "first_run": d and d.first_run,
                           "peak_rss_bytes": d and d.memory.get("cpu_peak_rss"),
                           "cuda_max_allocated_bytes": d and d.memory.get("cuda_max_allocated"),
                           "energy_j": d and d.energy_j, "energy_source": d and d.energy_source,
                           "cpu_seconds": d and d.cpu_seconds,
                           **({"break_even_steps": even.steps, "break_even": even.text}
                              if even and even.phase == phase else {})}


def raw_rows(sections: list[Section]) -> Iterable[dict[str, Any]]:
    for section in sections:
        for row in section.rows:
            if row.record is None or not row.record.ok:
                continue
            ident = _identity(row)
            for i, rnd in enumerate(row.record.rounds, start=1):
                number = rnd.number or i  # the run's own round number (unnumbered: its position)
                for phase, ps in rnd.phases.items():
                    values = [("first_run", [ps.first_run]), ("warmup", ps.warmup), ("sample", ps.samples)]
                    for kind, seconds in values:
                        for i, s in enumerate(seconds):
                            yield {**ident, "phase": phase, "round": number, "kind": kind, "index": i,
                                   "seconds": s}


# What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection"); the text of such a
# cell gets a leading single quote, numbers stay numbers.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return " ".join(f"{v:.6g}" for v in value)
    if isinstance(value, str):
        return _neutral(terminal_text(value))
    return "" if value is None else value


def _neutral(text: str) -> str:
    """`text` as a spreadsheet shows it, never evaluates it: '-1.5' is still a number."""
    if not text.startswith(FORMULA_START):
        return text
    try:
        float(text)
        return text
    except ValueError:
        return "'" + text


def to_csv(rows: Iterable[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def to_jsonl(rows: Iterable[dict[str, Any]], columns: tuple[str, ...]) -> str:
    return "".join(json.dumps({c: r.get(c) for c in columns}) + "\n" for r in rows)
