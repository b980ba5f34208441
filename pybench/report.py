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

def fmt_seconds(seconds: float, unit: str = "s") -> str:
    """Seconds to 4 significant digits in `unit` (s or ms), fixed notation and no trailing zeros, as
    the seed writes them: '0.0259 s', '16.04 s', '0.4982 ms'."""
    value = seconds * (1e3 if unit == "ms" else 1)
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    decimals = max(0, 3 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    return f"{text.rstrip('0').rstrip('.') if '.' in text else text} {unit}"


def fmt_duration(seconds: float, plus_minus: float | None = None) -> str:
    """Terminal form: milliseconds below one second, seconds above; '21.9 ± 0.76 ms' with a spread."""
    scale, unit = (1e3, "ms") if seconds < 1 else (1, "s")
    spread = f" ± {plus_minus * scale:.2g}" if plus_minus is not None else ""
    return f"{seconds * scale:.3g}{spread} {unit}"


def variant_of(spec: dict) -> str:
    """What makes a row other than a plain fp32 row ('' for the plain one), as CellSpec.variant wrote it."""
    return spec.get("variant") or ""


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
    layers: bool = False  # the per-layer suite: its own table, in milliseconds, no inference column
    records: list[dict] = field(default_factory=list)  # measured sections: the records behind rows

    @property
    def columns(self) -> dict[str, str]:
        return {p: COLUMNS[p] for p in TRAIN_PHASES} if self.layers else COLUMNS


def _settings_line(batch: int | None, image: int | None, threads: int | None, tf32: bool,
                   dtype: str) -> str:
    parts = [f"batch size {batch}"] if batch is not None else []
    if image not in (None, DEFAULT_IMAGE_SIZE):
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
        section += (ALL[spec["model"]].is_layer if spec["model"] in ALL else False,)
        row = _row_from_record(record, stat)
        latest[(section, row.model, row.framework, row.variant)] = (section, row, record)

    by_section: dict[tuple, list[tuple[Row, dict]]] = {}
    for section, row, record in latest.values():
        by_section.setdefault(section, []).append((row, record))

    def order(key: tuple) -> tuple:  # GPUs first as in the seed, defaults before overrides, layers last
        kind, name, batch, image, threads, tf32, dtype, layers = key
        return (layers, kind != "cuda", name, batch or 0, image != DEFAULT_IMAGE_SIZE, image,
                threads or 0, tf32, dtype != "fp32", dtype)

    out = []
    for key in sorted(by_section, key=order):
        kind, name, batch, image, threads, tf32, dtype, layers = key
        pairs = sorted(by_section[key], key=lambda pair: _row_order(pair[0]))
        prefix = "Per-layer benchmarks --- " if layers else ""
        out.append(Section(
            heading=f"{prefix}{'GPU' if kind == 'cuda' else 'CPU'} USED --- {name}",
            device=name,
            settings=_settings_line(batch, None if layers else image, threads, tf32, dtype),
            rows=[row for row, _ in pairs],
            layers=layers,
            records=[record for _, record in pairs],
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


def _cell_md(cell: Cell | None, bold: bool, unit: str) -> str:
    if cell is None:
        return ""
    if cell.failed:
        return f"failed {FAILED}"
    if cell.value is None and not cell.text:
        return ""
    text = cell.text or fmt_seconds(cell.value, unit)
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
    if section.layers:
        lines += ["Milliseconds per call; input 1 x 3 x 224 x 224 (Dense: 1 x 1024).", ""]
    columns = section.columns
    lines.append(f"|{'Layer' if section.layers else 'Model'}|Framework|" + "|".join(columns.values()) + "|")
    lines.append("|" + ":---:|" * (2 + len(columns)))
    winners = _winners(section.rows)
    params = _param_notes(section.rows)
    previous = None
    for i, row in enumerate(section.rows):
        title = "" if row.model == previous else model_title(row.model)
        if title and row.model in params:
            title += f" {PARAMS}"
        previous = row.model
        unit = "ms" if section.layers else "s"
        cells = [_cell_md(row.cells.get(p), (i, p) in winners, unit) for p in columns]
        lines.append(f"|{title}|{row.label}|" + "|".join(cells) + "|")

    notes = []
    if any(c.noisy for r in section.rows for c in r.cells.values()):
        notes.append(f"{NOISY} noisy: sampling hit its time or sample limit before the 95% confidence "
                     "interval of the median reached the target precision; treat as approximate.")
    notes += [f"{FAILED} failed: {model_title(r.model)}, {r.label}: {r.error}" for r in section.rows
              if r.error is not None]
    notes += params.values()
    return "\n".join(lines + [n for note in notes for n in ("", note)])


# --- throughput, memory and first run -------------------------------------------------------------

DETAILS = {
    "train_ips": "Images/s (train)",
    "inference_ips": "Images/s (inference)",
    "train_gflops": "GFLOP/s (train)",
    "inference_gflops": "GFLOP/s (inference)",
    "peak_memory": "Peak memory",
    "first_run": "First run (train / inference)",
}


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def detail_values(record: dict, stat: str = "median") -> dict[str, str]:
    """Images/s, achieved GFLOP/s with % of the device's peak, peak memory and first-run times."""
    from pybench.efficiency import throughput

    out = dict.fromkeys(DETAILS, "")
    if record["status"] != "ok":
        return out
    for group, phase in (("train", "total"), ("inference", "inference")):
        t = throughput(record, phase, stat)
        if t is None:
            continue
        out[f"{group}_ips"] = f"{t['images_per_s']:.4g}"
        if "gflops" in t:
            pct = f" ({t['pct_peak']:.1f}% of peak)" if "pct_peak" in t else ""
            out[f"{group}_gflops"] = f"{t['gflops']:.4g}{pct}"
    phases = record["phases"]
    memory = {k: v for p in phases.values() for k, v in (p.get("memory") or {}).items() if v}
    out["peak_memory"] = ", ".join(
        f"{k.removeprefix('cpu_peak_').removeprefix('cuda_max_')} {_mib(v)}" for k, v in memory.items()
    )
    firsts = [fmt_duration(phases[p]["first_run"]) for p in ("total", "inference") if p in phases]
    out["first_run"] = " / ".join(firsts)
    return out


def render_details(section: Section, stat: str = "median") -> str:
    lines = [f"### Throughput, memory and first run --- {section.device}", "",
             "|Model|Framework|" + "|".join(DETAILS.values()) + "|",
             "|" + ":---:|" * (2 + len(DETAILS))]
    for row, record in zip(section.rows, section.records):
        values = detail_values(record, stat)
        lines.append(f"|{model_title(row.model)}|{row.label}|" + "|".join(values.values()) + "|")
    peaks = dict.fromkeys((r.get("peak") or {}).get("source") for r in section.records)
    sources = [p for p in peaks if p]
    if sources:
        lines += ["", f"Peak FLOP/s from: {'; '.join(sources)}. Backward counted as 2x forward FLOPs."]
    return "\n".join(lines)


def details_table(records: list[dict], stat: str = "median") -> Table:
    """Terminal form of the details, for `compare`."""
    table = Table(title="throughput, memory and first run (first run includes compilation)")
    for col in ("model", "framework", *DETAILS.values()):
        table.add_column(col, justify="left" if col in ("model", "framework") else "right")
    for r in sorted(records, key=lambda r: _row_order(_row_from_record(r, stat))):
        table.add_row(model_title(r["spec"]["model"]), framework_label(r), *detail_values(r, stat).values())
    return table


def render_tables(files: list[dict], stat: str = "median", reference: list[dict] | None = None,
                  details: bool = False) -> str:
    """The seed's tables from any set of results files (several machines merged), plus published rows;
    with `details`, each measured section is followed by its throughput/memory/first-run table."""
    measured = measured_sections(files, stat)
    parts = [render_section(s) + ("\n\n" + render_details(s, stat) if details else "") for s in measured]
    parts += [render_section(s) for s in reference_sections(reference or [])]
    what = "median" if stat == "median" else "minimum"
    intro = (f"Seconds per batch, {what} of the timed iterations (first run and warm-up excluded). "
             f"Batch {DEFAULT_BATCH}, image 3 x {DEFAULT_IMAGE_SIZE} x {DEFAULT_IMAGE_SIZE} "
             "(batch 4 for Resnet101/152 on GPUs) unless a section says otherwise; "
             "the faster framework is in bold.")
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
