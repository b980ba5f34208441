"""Reports: the seed's markdown tables, the README block between markers, and the terminal summary.

Everything is built from one intermediate form (Section -> Row -> Cell) so the markdown, the plot and
the published reference rows all share the same selection, ordering and formatting rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from rich.table import Table
from rich.text import Text

from pybench.environment import device_name
from pybench.errors import UserError
from pybench.protocol import INFERENCE_PHASES, TRAIN_PHASES
from pybench.results import atomic_write_text
from pybench.workloads import ALL, DEFAULT_BATCH, DEFAULT_IMAGE_SIZE

BEGIN_MARKER = "<!-- pybench:tables:begin -->"
END_MARKER = "<!-- pybench:tables:end -->"

PHASES = TRAIN_PHASES + INFERENCE_PHASES
COLUMNS = {"forward": "Forward Pass", "backward": "Backward Pass", "total": "Total Time",
           "inference": "Inference"}
STATS = ("median", "min")
FRAMEWORK_NAMES = {"pytorch": "PyTorch", "flux": "Flux"}  # for records without framework_env
FRAMEWORK_ORDER = list(FRAMEWORK_NAMES)  # the seed lists PyTorch first
NOISY, FAILED, PARAMS = "†", "‡", "§"
MODEL_ORDER = {name: i for i, name in enumerate(ALL)}


# --- small shared helpers (diff and plot use them too) --------------------------------------------

def fmt_seconds(seconds: float) -> str:
    """Seconds to 4 significant digits, fixed notation (layer timings would otherwise read 1.2e-05) and
    no trailing zeros, as the seed writes them: '0.0259 s', '16.04 s'."""
    if seconds == 0 or not math.isfinite(seconds):
        return f"{seconds:g} s"
    decimals = max(0, 3 - math.floor(math.log10(abs(seconds))))
    text = f"{seconds:.{decimals}f}"
    return f"{text.rstrip('0').rstrip('.') if '.' in text else text} s"


def fmt_duration(seconds: float, plus_minus: float | None = None) -> str:
    """Terminal form: milliseconds below one second, seconds above; '21.9 ± 0.76 ms' with a spread."""
    scale, unit = (1e3, "ms") if seconds < 1 else (1, "s")
    spread = f" ± {plus_minus * scale:.2g}" if plus_minus is not None else ""
    return f"{seconds * scale:.3g}{spread} {unit}"


def variant_of(spec: dict) -> str:
    """What makes a row other than a plain fp32 row ('' for the plain one): dtype first, then tags."""
    tags = [] if spec.get("dtype", "fp32") == "fp32" else [spec["dtype"]]
    v = spec.get("variant")
    if v is None:  # older specs: derive from the flags
        v = ["channels-last"] * bool(spec.get("channels_last")) + ["compiled"] * bool(spec.get("compile"))
    tags += [t.strip() for t in (v.split(",") if isinstance(v, str) else v) if t.strip()]
    return ", ".join(dict.fromkeys(tags))


def cell_key(spec: dict) -> tuple:
    """What makes two records the same cell across frameworks and runs (the device by kind, not name)."""
    device = spec["device"]
    return (spec["model"], "cuda" if device.startswith("cuda") else "cpu",
            spec.get("batch_size", default_batch(spec["model"], device)),
            spec.get("image_size", DEFAULT_IMAGE_SIZE), variant_of(spec))


def framework_version(record: dict) -> str:
    """'PyTorch 2.14.1', 'Flux 0.16.3': name and version as the framework reported them."""
    env = record.get("framework_env") or {}
    fw = record.get("framework") or record["spec"]["framework"]
    name = env.get("framework") or FRAMEWORK_NAMES.get(fw, fw)
    return f"{name} {env['version']}" if env.get("version") else name


def with_variant(label: str, variant: str) -> str:
    return f"{label} ({variant})" if variant else label


def framework_label(record: dict) -> str:
    """The Framework cell: 'PyTorch 2.14.1', 'PyTorch 2.14.1 (bf16)'."""
    return with_variant(framework_version(record), variant_of(record["spec"]))


def model_title(model: str) -> str:
    w = ALL.get(model)
    return w.title if w else model


def default_batch(model: str, device: str) -> int:
    w = ALL.get(model)
    return w.default_batch(device) if w else DEFAULT_BATCH


def stat_value(phase: dict, stat: str) -> float:
    return float(phase["stats"][stat])


def check_stat(stat: str) -> None:
    if stat not in STATS:
        raise UserError(f"unknown statistic {stat!r}; valid: {', '.join(STATS)}")


def _created(data: dict) -> datetime:
    try:
        return datetime.strptime(str(data.get("created") or ""), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:  # undated files count as oldest; sort is stable so input order breaks ties
        return datetime.min.replace(tzinfo=timezone.utc)


def records_oldest_first(files: list[dict]) -> Iterator[tuple[dict, dict]]:
    """(environment, record) pairs, files by creation time, so a later pair overrides an earlier one."""
    for data in sorted(files, key=_created):
        for record in data["records"]:
            yield data["environment"], record


# --- the intermediate form -----------------------------------------------------------------------

@dataclass
class Cell:
    value: float | None = None  # seconds; None: empty or failed
    text: str = ""  # published text kept verbatim (e.g. "0.097551" without unit)
    noisy: bool = False
    failed: bool = False


@dataclass
class Row:
    model: str
    framework: str  # "pytorch", "flux": bold compares different frameworks
    version: str  # "PyTorch 2.14.1"
    variant: str  # "" or "bf16", "channels-last", "published 2018": the Framework cell's suffix
    cells: dict[str, Cell]
    params: int | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        return with_variant(self.version, self.variant)


@dataclass
class Section:
    heading: str
    device: str
    settings: str = ""  # the line under the heading; '' when everything is default
    rows: list[Row] = field(default_factory=list)


def _settings_line(batch: int | None, image: int, threads: int | None, tf32: bool, dtype: str) -> str:
    parts = [f"batch size {batch}"] if batch is not None else []
    if image != DEFAULT_IMAGE_SIZE:
        parts.append(f"image 3 x {image} x {image}")
    if threads is not None:
        parts.append(f"{threads} thread{'s' * (threads != 1)}")
    if tf32:
        parts.append("TF32 allowed")
    if dtype != "fp32":
        parts.append(f"dtype {dtype}")
    return f"Non-default settings: {', '.join(parts)}." if parts else ""


def _row_from_record(record: dict, stat: str) -> Row:
    spec = record["spec"]
    failed = record["status"] != "ok"
    phases = record.get("phases") or {}
    cells = {}
    for p in spec.get("phases") or PHASES:
        if failed:
            cells[p] = Cell(failed=True)
        elif p in phases:
            cells[p] = Cell(value=stat_value(phases[p], stat), noisy=bool(phases[p].get("noisy")))
    return Row(
        model=spec["model"],
        framework=record.get("framework") or spec["framework"],
        version=framework_version(record),
        variant=variant_of(spec),
        cells=cells,
        params=(record.get("workload") or {}).get("params"),
        error=" ".join(record["error"].split()) if failed else None,
    )


def _row_order(row: Row) -> tuple:
    fw = FRAMEWORK_ORDER.index(row.framework) if row.framework in FRAMEWORK_ORDER else len(FRAMEWORK_ORDER)
    return (MODEL_ORDER.get(row.model, len(MODEL_ORDER)), row.model, row.variant != "", row.variant,
            fw, row.framework)


def measured_sections(files: list[dict], stat: str = "median") -> list[Section]:
    """One section per device and non-default setting; the newest record of each row wins."""
    check_stat(stat)
    latest: dict[tuple, tuple[tuple, Row]] = {}
    for env, record in records_oldest_first(files):
        spec = record["spec"]
        device = spec["device"]
        kind = "cuda" if device.startswith("cuda") else "cpu"
        batch = spec.get("batch_size", default_batch(spec["model"], device))
        threads = spec.get("threads")
        section = (
            kind,
            device_name(device, env),
            None if batch == default_batch(spec["model"], device) else batch,
            spec.get("image_size", DEFAULT_IMAGE_SIZE),
            None if threads in (None, env.get("cores_available")) else threads,
            bool(spec.get("tf32")),
            spec.get("dtype", "fp32"),
        )
        row = _row_from_record(record, stat)
        latest[(section, row.model, row.framework, row.variant)] = (section, row)

    by_section: dict[tuple, list[Row]] = {}
    for section, row in latest.values():
        by_section.setdefault(section, []).append(row)

    def order(key: tuple) -> tuple:  # GPUs first as in the seed, defaults before overrides
        kind, name, batch, image, threads, tf32, dtype = key
        return (kind != "cuda", name, batch or 0, image != DEFAULT_IMAGE_SIZE, image, threads or 0,
                tf32, dtype != "fp32", dtype)

    out = []
    for key in sorted(by_section, key=order):
        kind, name, batch, image, threads, tf32, dtype = key
        out.append(Section(
            heading=f"{'GPU' if kind == 'cuda' else 'CPU'} USED --- {name}",
            device=name,
            settings=_settings_line(batch, image, threads, tf32, dtype),
            rows=sorted(by_section[key], key=_row_order),
        ))
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
            version=ref["framework"],
            variant=f"published {ref['year']}",
            cells={p: Cell(value=ref.get(p), text=text.get(p) or "") for p in PHASES},
        ))
    return list(sections.values())


# --- markdown ----------------------------------------------------------------------------------

def _winners(rows: list[Row]) -> set[tuple[int, str]]:
    """(row index, phase) of the faster framework, per model and variant, when two frameworks have a value."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault((row.model, row.variant), []).append(i)
    out = set()
    for members in groups.values():
        for p in PHASES:
            valued = [(rows[i].cells[p].value, i) for i in members
                      if p in rows[i].cells and rows[i].cells[p].value is not None]
            if len({rows[i].framework for _, i in valued}) >= 2:
                best = min(v for v, _ in valued)
                out.update((i, p) for v, i in valued if v == best)
    return out


def _cell_md(cell: Cell | None, bold: bool) -> str:
    if cell is None:
        return ""
    if cell.failed:
        return f"failed {FAILED}"
    if cell.value is None and not cell.text:
        return ""
    text = cell.text or fmt_seconds(cell.value)
    text = f"**{text}**" if bold else text
    return f"{text} {NOISY}" if cell.noisy else text


def _param_notes(rows: list[Row]) -> dict[str, str]:
    """Models whose frameworks count parameters differently (e.g. Metalhead's VGG-BN convs have no bias)."""
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        if row.params is not None:
            counts.setdefault(row.model, {}).setdefault(row.version, row.params)
    return {
        model: f"{PARAMS} {model_title(model)}: parameter counts differ: "
        + "; ".join(f"{label} {n:,}" for label, n in by_label.items()) + "."
        for model, by_label in counts.items()
        if len(set(by_label.values())) > 1
    }


def render_section(section: Section) -> str:
    lines = [f"## {section.heading}"]
    if section.settings:
        lines += [section.settings, ""]  # a table cannot interrupt a paragraph in GFM
    lines.append("|Model|Framework|" + "|".join(COLUMNS.values()) + "|")
    lines.append("|" + ":---:|" * (2 + len(COLUMNS)))
    winners = _winners(section.rows)
    params = _param_notes(section.rows)
    previous = None
    for i, row in enumerate(section.rows):
        title = "" if row.model == previous else model_title(row.model)
        if title and row.model in params:
            title += f" {PARAMS}"
        previous = row.model
        cells = [_cell_md(row.cells.get(p), (i, p) in winners) for p in COLUMNS]
        lines.append(f"|{title}|{row.label}|" + "|".join(cells) + "|")

    notes = []
    if any(c.noisy for r in section.rows for c in r.cells.values()):
        notes.append(f"{NOISY} noisy: sampling hit its time or sample limit before the 95% confidence "
                     "interval of the median reached the target precision; treat as approximate.")
    notes += [f"{FAILED} failed: {model_title(r.model)}, {r.label}: {r.error}" for r in section.rows
              if r.error is not None]
    notes += params.values()
    return "\n".join(lines + [n for note in notes for n in ("", note)])


def render_tables(files: list[dict], stat: str = "median", reference: list[dict] | None = None) -> str:
    """The seed's tables from any set of results files (several machines merged), plus published rows."""
    sections = measured_sections(files, stat) + reference_sections(reference or [])
    what = "median" if stat == "median" else "minimum"
    intro = (f"Seconds per batch, {what} of the timed iterations (first run and warm-up excluded). "
             f"Batch {DEFAULT_BATCH}, image 3 x {DEFAULT_IMAGE_SIZE} x {DEFAULT_IMAGE_SIZE} "
             "(batch 4 for Resnet101/152 on GPUs) unless a section says otherwise; "
             "the faster framework is in bold.")
    return "\n\n".join([intro] + [render_section(s) for s in sections]) + "\n"


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
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:  # newline="": no CRLF translation
            text = f.read()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        new = replace_between_markers(text, block)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    atomic_write_text(path, new)


# --- terminal summary ----------------------------------------------------------------------------

def _phase_cell(phase: dict | None, stat: str) -> Text:
    if phase is None:
        return Text("")
    s = phase["stats"]
    half = None
    if stat == "median" and s.get("ci_low") is not None and s.get("ci_high") is not None:
        half = (s["ci_high"] - s["ci_low"]) / 2
    text = fmt_duration(stat_value(phase, stat), half)
    if phase.get("noisy"):
        return Text(f"{text} {NOISY}", style="yellow")
    return Text(text)


def _headline(record: dict, stat: str) -> float | None:
    """The figure a ratio compares: total time, or inference for inference-only cells."""
    phases = record.get("phases") or {}
    for p in ("total", "inference"):
        if record["status"] == "ok" and p in phases:
            return stat_value(phases[p], stat)
    return None


def summary_table(records: list[dict], stat: str = "median") -> Table:
    """One row per record: each phase's statistic ± CI half-width, n, first run and a cross-framework ratio."""
    check_stat(stat)
    ordered = sorted(records, key=lambda r: _row_order(_row_from_record(r, stat)))
    baseline: dict[tuple, tuple[str, float]] = {}  # per cell: the first (PyTorch's) headline figure
    for r in ordered:
        value = _headline(r, stat)
        if value is not None:
            baseline.setdefault(cell_key(r["spec"]), (r["framework"], value))

    devices = ", ".join(dict.fromkeys(r["spec"]["device"] for r in ordered))
    table = Table(title=f"{stat} per batch" + (" ± 95% CI half-width" if stat == "median" else "")
                  + f" on {devices}")
    for col in ("model", "framework", *PHASES, "n", "first run", "ratio"):
        table.add_column(col, justify="left" if col in ("model", "framework") else "right")
    notes = []
    previous = None
    for r in ordered:
        spec = r["spec"]
        model = "" if spec["model"] == previous else model_title(spec["model"])
        previous = spec["model"]
        label = Text(framework_label(r))
        if r["status"] != "ok":
            error = " ".join(r["error"].split())
            notes.append(f"{FAILED} {model_title(spec['model'])} {r['framework']}: {error}")
            table.add_row(model, label, *[Text(f"failed {FAILED}", style="red")] * len(PHASES), "", "", "")
            continue
        phases = r.get("phases") or {}
        ns = dict.fromkeys(str(p["stats"]["n"]) for p in phases.values())
        group = "total" if "total" in phases else next(iter(phases), None)
        first = fmt_duration(phases[group]["first_run"]) if group and "first_run" in phases[group] else ""
        value = _headline(r, stat)
        base_fw, base = baseline.get(cell_key(spec), (r["framework"], value))
        ratio = f"{value / base:.2f}× {base_fw}" if value is not None and base_fw != r["framework"] else ""
        table.add_row(model, label, *[_phase_cell(phases.get(p), stat) for p in PHASES],
                      "/".join(ns), first, ratio)
    if any(p.get("noisy") for r in ordered for p in (r.get("phases") or {}).values()):
        notes.insert(0, f"{NOISY} noisy: stopped at a limit before the CI reached the target precision")
    if notes:
        table.caption = Text("\n".join(notes), justify="left")
    return table
