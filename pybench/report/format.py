"""How numbers and names are written in every report: the seed's style in markdown, a compact one in
the terminal."""

from __future__ import annotations

import math
import re

from pybench.workloads import ALL

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


def fmt_mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def model_title(model: str) -> str:
    w = ALL.get(model)
    return w.title if w else model


def with_variant(label: str, variant: str) -> str:
    return f"{label} ({variant})" if variant else label
