"""How numbers and names are written in every report: the seed's style in markdown, a compact one in
the terminal."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from pybench.protocol.workloads import ALL

if TYPE_CHECKING:  # the view imports this module for names
    from pybench.report.view import GroupDetails

NOISY, FEW, FAILED = "†", "°", "‡"  # the quality marks every table uses
MARKS = {"noisy": NOISY, "too_few_samples": FEW}
# Markdown's inline markers, and "$" (GitHub renders $...$ as math).  "<" and "&" become HTML
# entities instead: a backslash does not stop "<!--" from opening a comment (or being a README
# marker), and with no "<" at all no tag, comment or marker can be made of any text.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|$~#])")
_HTML = {"&": "&amp;", "<": "&lt;"}


def md_text(text: object) -> str:
    """Untrusted text (from a results file) as literal markdown on one line: control characters and
    line breaks become spaces, markdown markers are escaped, and "<" and "&" are entities, so that
    no HTML comment, tag or README marker can appear in generated text."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    return re.sub(r"[&<]", lambda m: _HTML[m.group()], _MD_SPECIAL.sub(r"\\\1", flat))


# ESC sequences whole (CSI, OSC up to BEL or ST, DCS/SOS/PM/APC up to ST, two-character ones), so
# that no parameter is left behind as text; then single C0/C1 controls and bidi overrides.
def fmt_seconds(seconds: float, unit: str = "s") -> str:
    """Seconds to 4 significant digits in `unit` (s or ms), fixed notation and no trailing zeros, as
    the seed writes them: '0.0259 s', '16.04 s', '0.4982 ms'."""
    value = seconds * (1e3 if unit == "ms" else 1)
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    decimals = max(0, 3 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    return f"{text.rstrip('0').rstrip('.') if '.' in text else text} {unit}"


def fixed(value: float, digits: int = 3) -> str:
    """`digits` significant digits in fixed notation, never scientific: '21.9', '0.00412', '1,730,000'."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    places = digits - 1 - math.floor(math.log10(abs(value)))  # negative: round to tens, hundreds
    text = f"{round(value, places):,.{max(0, places)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_duration(seconds: float, plus_minus: float | None = None) -> str:
    """Terminal form: milliseconds below one second, seconds above; '21.9 ± 0.76 ms' with a spread."""
    scale, unit = (1e3, "ms") if seconds < 1 else (1, "s")
    spread = f" ± {fixed(plus_minus * scale, 2)}" if plus_minus is not None else ""
    return f"{fixed(seconds * scale)}{spread} {unit}"


def fmt_mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def model_title(model: str) -> str:
    w = ALL.get(model)
    return w.title if w else model


# The details' columns (markdown, terminal, HTML): one line per phase group of a row.
DETAILS = {
    "group": "Group",
    "ips": "Images/s",
    "gflops": "GFLOP/s",
    "peak_memory": "Peak memory",
    "first_run": "First run",
    "energy": "Energy per batch",
    "gc": "GC share",
}
_MEMORY = {"cpu_peak_rss": "rss", "cuda_max_allocated": "allocated", "cuda_max_reserved": "reserved",
           "nvml_device_used_snapshot": "device used (all processes, snapshot)"}


def fmt_memory(peaks: dict[str, int]) -> str:
    return ", ".join(f"{_MEMORY.get(k, k)} {fmt_mib(v)}" for k, v in peaks.items() if v) or "-"


def fmt_energy(d: "GroupDetails") -> str:
    """'2.41 J (NVML)', or why there is none plus the CPU-seconds: never an estimate from a TDP."""
    text = f"{d.energy_j:.3g} J ({d.energy_source})" if d.energy_j is not None else \
        f"unavailable ({d.energy_missing})"
    return text + (f", {d.cpu_seconds:.3g} CPU-s" if d.cpu_seconds is not None else "")


def detail_texts(d: "GroupDetails") -> dict[str, str]:
    """Column -> text for one phase group."""
    pct = f" ({d.peak_percent:.1f}% of {d.peak_kind})" if d.peak_percent is not None else ""
    return {
        "group": f"{d.group} ({d.phase})" if d.phase != d.group else d.group,
        "ips": f"{d.images_per_s:.4g}",
        "gflops": f"{d.gflops:.4g}{pct}" if d.gflops is not None else "-",
        "peak_memory": fmt_memory(d.memory),
        "first_run": fmt_duration(d.first_run),
        "energy": fmt_energy(d),
        "gc": f"{100 * d.gc_share:.1f}%" if d.gc_share is not None else "-",
    }
