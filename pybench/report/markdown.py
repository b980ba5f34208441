"""Markdown, a pure formatter of `view` rows: the seed's tables, the details table, and the README
block between markers.

Text that comes from results files (model names, labels, framework titles, errors) is escaped, so
no file can inject markup or the table markers into a README.
"""

from __future__ import annotations

from pathlib import Path

from pybench.errors import UserError
from pybench.protocol.phases import PHASES
from pybench.report.format import (
    DETAILS, FAILED, FEW, MARKS, NOISY, detail_texts, fmt_seconds, md_text, model_title,
)
from pybench.report.selection import Section, measured_sections, reference_sections
from pybench.report.view import Cell, Row, check_stat
from pybench.records.results import ResultsDoc, atomic_write, read_regular_file
from pybench.records.statistics import DEFAULT_STAT, STAT_WORDS
from pybench.protocol.workloads import DEFAULT_BATCH, DEFAULT_IMAGE_SIZE

BEGIN_MARKER = "<!-- pybench:tables:begin -->"
END_MARKER = "<!-- pybench:tables:end -->"
PARAMS, NOTE = "§", "Note:"

def _cell_md(cell: Cell | None, unit: str) -> str:
    if cell is None:
        return ""
    if cell.failed:
        return f"failed {FAILED}"
    if cell.value is None and not cell.text:
        return ""
    text = md_text(cell.text) if cell.text else fmt_seconds(cell.value, unit)
    text = f"**{text}**" if cell.faster else text
    mark = MARKS.get(cell.quality)
    return f"{text} {mark}" if mark else text


def _param_notes(rows: list[Row]) -> dict[str, str]:
    """Models whose frameworks count parameters differently (e.g. Metalhead's VGG-BN convs have no bias)."""
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        if row.params is not None:
            counts.setdefault(row.model, {}).setdefault(row.label, row.params)
    return {
        model: f"{PARAMS} {md_text(model_title(model))}: parameter counts differ: "
        + "; ".join(f"{md_text(label)} {n:,}" for label, n in by_label.items()) + "."
        for model, by_label in counts.items()
        if len(set(by_label.values())) > 1
    }


def render_section(section: Section) -> str:
    lines = [f"## {md_text(section.heading)}"]
    if section.settings:
        lines += [section.settings, ""]  # a table cannot interrupt a paragraph in GFM
    if section.layers:
        lines += ["Milliseconds per call; input 1 x 3 x 224 x 224 (Dense: 1 x 1024).", ""]
    phases = section.phases
    lines.append(f"|{'Layer' if section.layers else 'Model'}|Framework|"
                 + "|".join(PHASES[p].column for p in phases) + "|")
    lines.append("|" + ":---:|" * (2 + len(phases)))
    params = _param_notes(section.rows)
    unit = "ms" if section.layers else "s"
    previous = None
    for row in section.rows:
        title = "" if row.model == previous else md_text(model_title(row.model))
        if title and row.model in params:
            title += f" {PARAMS}"
        previous = row.model
        cells = [_cell_md(row.cells.get(p), unit) for p in phases]
        lines.append(f"|{title}|{md_text(row.label)}|" + "|".join(cells) + "|")

    qualities = {c.quality for r in section.rows for p, c in r.cells.items() if p in phases}
    notes = []
    if "noisy" in qualities:
        notes.append(f"{NOISY} noisy: the 95% interval (between rounds, where there are several) is wider "
                     "than the target precision; treat as approximate.")
    if "too_few_samples" in qualities:
        notes.append(f"{FEW} too few samples: the time budget allowed fewer samples than a 95% interval "
                     "needs; treat as approximate.")
    notes += [f"{FAILED} failed: {md_text(model_title(r.model))}, {md_text(r.label)}: {md_text(r.error)}"
              for r in section.rows if r.error is not None and r.cells and all(c.failed for c in r.cells.values())]
    notes += params.values()
    notes += [f"{NOTE} {md_text(model_title(r.model))}, {md_text(r.label)}: {md_text(n)}"
              for r in section.rows if r.record and r.record.workload for n in r.record.workload.notes]
    return "\n".join(lines + [n for note in notes for n in ("", note)])


# --- throughput, memory, first run and energy ------------------------------------------------------

def render_details(section: Section) -> str:
    lines = [f"### Throughput, memory, first run and energy --- {md_text(section.device)}", "",
             "|Model|Framework|" + "|".join(DETAILS.values()) + "|",
             "|" + ":---:|" * (2 + len(DETAILS))]
    rows = [row for row in section.rows if row.record is not None]
    for row in rows:
        for i, d in enumerate(row.details):
            names = f"{md_text(model_title(row.model))}|{md_text(row.label)}" if i == 0 else "|"
            lines.append(f"|{names}|" + "|".join(md_text(v) for v in detail_texts(d).values()) + "|")
    from pybench.report.answer import answers

    facts = [f"- {md_text(model_title(a.model))}, {md_text(a.title)} vs {md_text(a.baseline)}: "
             + "; ".join(md_text(f) for f in a.facts()) for a in answers(rows)]
    lines += [""] + facts if facts else []
    records = [row.record for row in rows]
    sources = list(dict.fromkeys(r.peak.source for r in records if r.peak))
    if sources:
        lines += ["", f"Peak FLOP/s from: {md_text('; '.join(sources))}. Backward counted as 2x forward "
                  "FLOPs; the step adds the optimizer's 4 FLOPs per parameter."]
    return "\n".join(lines)


def render_tables(docs: list[ResultsDoc], stat: str = DEFAULT_STAT, reference: list[dict] | None = None,
                  details: bool = False) -> str:
    """The seed's tables from any set of results files (several machines merged), plus published rows;
    with `details`, each measured section is followed by its throughput/memory/first-run table."""
    check_stat(stat)
    measured = measured_sections(docs, stat)
    parts = [render_section(s) + ("\n\n" + render_details(s) if details else "") for s in measured]
    parts += [render_section(s) for s in reference_sections(reference or [])]
    intro = (f"Seconds per batch, {STAT_WORDS[stat]} of the timed iterations (first run and warm-up excluded). "
             f"Batch {DEFAULT_BATCH}, image 3 x {DEFAULT_IMAGE_SIZE} x {DEFAULT_IMAGE_SIZE} "
             "(batch 4 for Resnet101/152 on GPUs) unless a section says otherwise; "
             "the faster framework is in bold when the ratio's verdict says faster: its interval excludes 1 "
             "and the pair's test over its phases calls it.")
    return "\n\n".join([intro] + parts) + "\n"


# --- README --------------------------------------------------------------------------------------

def replace_between_markers(text: str, block: str) -> str:
    """Swap what lies between the markers for `block`; every byte outside them stays as it was."""
    for marker in (BEGIN_MARKER, END_MARKER):
        if text.count(marker) != 1:
            found = "no" if marker not in text else "more than one"
            raise UserError(f"{found} {marker!r} marker; add exactly one begin and one end marker")
    start = text.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = text.index(END_MARKER)
    if end < start:
        raise UserError(f"{END_MARKER!r} comes before {BEGIN_MARKER!r}")
    newline = "\r\n" if text[start:start + 2] == "\r\n" else "\n"  # keep the file's line endings
    body = newline.join(block.strip("\r\n").splitlines())
    return text[:start] + newline + body + newline + text[end:]


def update_readme(path: Path, block: str) -> None:
    """Rewrite the tables in a README in place: through a symlink, keeping the file's mode."""
    path = Path(path)
    try:  # bytes decoded as they are: no CRLF translation
        text = read_regular_file(path).decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    try:
        new = replace_between_markers(text, block)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    atomic_write(path, new)
