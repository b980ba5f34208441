"""Grouped bar charts of the report's tables: one subplot per device section, models x phases."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pybench.errors import UserError
from pybench.protocol.phases import PHASES
from pybench.report.format import model_title
from pybench.report.selection import Section, measured_sections
from pybench.records.results import ResultsDoc, atomic_write
from pybench.records.statistics import DEFAULT_STAT

FORMATS = {".png": "png", ".svg": "svg"}


def plot(files: list[ResultsDoc], out: Path, stat: str = DEFAULT_STAT) -> None:
    """Draw the measured sections (the same rows the markdown shows) to a .png or .svg."""
    out = Path(out)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise UserError(f"plot file {str(out)!r}: use a .png or .svg suffix")
    if not out.parent.is_dir():
        raise UserError(f"plot file {str(out)!r}: folder {str(out.parent)!r} does not exist")
    sections = [s for s in measured_sections(files, stat)
                if any(c.value is not None for r in s.rows for c in r.cells.values())]
    if not sections:
        raise UserError("nothing to plot: no successful measurements in the results files")

    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    # Labels come from results files: plain text, never mathtext ("$...$") nor LaTeX.
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        image = _draw(plt, sections, fmt, stat)
    atomic_write(out, image)  # readers never see half an image


def _draw(plt: Any, sections: list[Section], fmt: str, stat: str) -> bytes:
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(len(sections), 1, figsize=(14, 4.5 * len(sections)), squeeze=False)
    for ax, section in zip(axes[:, 0], sections):
        models = list(dict.fromkeys(r.model for r in section.rows))
        # a failed row has no bars, so no legend entry either
        series = list(dict.fromkeys(r.label for r in section.rows
                                    if any(c.value is not None for c in r.cells.values())))
        colours = {s: f"C{i % 10}" for i, s in enumerate(series)}
        phases = [p for p in PHASES if any(p in r.cells for r in section.rows)]
        slot = 0.8 / (len(phases) * len(series))  # each model's group spans 0.8 of one x unit
        for row in section.rows:
            if row.label not in series:
                continue
            s = series.index(row.label)
            for j, p in enumerate(phases):
                cell = row.cells.get(p)
                if cell is None or cell.value is None:
                    continue
                x = models.index(row.model) - 0.4 + (j * len(series) + s) * slot
                ax.bar(x, cell.value, slot, color=colours[row.label],
                       hatch=PHASES[p].hatch, edgecolor="black", linewidth=0.4, align="edge")
        ax.set_yscale("log")  # VGG on CPU and Resnet18 on GPU differ by three orders of magnitude
        ax.set_ylabel(f"seconds per batch ({stat}, log scale)")
        ax.set_xticks(range(len(models)))
        ax.set_xlim(-0.6, max(len(models), 4) - 0.4)  # a lone model keeps bars of readable width
        ax.set_xticklabels([model_title(m) for m in models])
        ax.set_title(section.device + (f" ({section.settings})" if section.settings else ""))
        ax.grid(axis="y", which="both", alpha=0.3)
        handles = [Patch(facecolor=colours[s], label=s) for s in series]
        handles += [Patch(facecolor="white", edgecolor="black", hatch=PHASES[p].hatch, label=PHASES[p].column)
                    for p in phases]
        ax.legend(handles=handles, fontsize="small", ncol=2)
    fig.tight_layout()

    image = io.BytesIO()
    try:
        fig.savefig(image, format=fmt)
    finally:
        plt.close(fig)
    return image.getvalue()
