"""Two runs side by side: per cell and phase, the ratio of medians and whether the change is real.

A change is called only when it is both significant (two-sided Mann-Whitney U on the raw samples,
p < alpha) and large enough to matter (|new/old - 1| > threshold): with hundreds of samples a 0.5%
drift is "significant" and still not worth failing a build over.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table
from rich.text import Text
from scipy.stats import mannwhitneyu

from pybench.report import (
    MODEL_ORDER, PHASES, cell_key, fmt_duration, framework_label, model_title, records_oldest_first,
)

REGRESSIONS = ("slower", "broken")  # broken: ran before, fails now
STYLES = {"slower": "red", "broken": "red", "faster": "green", "fixed": "green", "same": "dim"}


@dataclass(frozen=True)
class DiffRow:
    model: str
    framework: str  # "PyTorch 2.14.1 (bf16)", or "old -> new" when the version changed
    device: str  # "cpu" or "cuda": runs on different machines of one kind still match
    batch_size: int
    image_size: int
    phase: str | None  # None for a whole cell (only in one run, failed)
    old: float | None  # median seconds
    new: float | None
    ratio: float | None  # new / old
    p_value: float | None
    verdict: str  # slower, faster, same, only-in-old, only-in-new, broken, fixed, failed


def _latest(files: list[dict]) -> dict[tuple, dict]:
    """Newest record per (framework, cell): a rerun in a later file replaces the earlier one."""
    return {(r["spec"]["framework"], *cell_key(r["spec"])): r for _, r in records_oldest_first(files)}


def verdict(ratio: float, p_value: float | None, threshold: float, alpha: float) -> str:
    if p_value is None or not p_value < alpha or abs(ratio - 1) <= threshold:  # NaN p: no evidence
        return "same"
    return "slower" if ratio > 1 else "faster"


def _p_value(old: list[float], new: list[float]) -> float | None:
    if not old or not new:
        return None
    return float(mannwhitneyu(old, new, alternative="two-sided").pvalue)


def compare_runs(old: list[dict], new: list[dict], threshold: float = 0.05,
                 alpha: float = 0.05) -> list[DiffRow]:
    """Match cells of two sets of results files and judge every phase they share."""
    before, after = _latest(old), _latest(new)
    keys = sorted(before.keys() | after.keys(), key=lambda k: (MODEL_ORDER.get(k[1], len(MODEL_ORDER)), k))
    rows = []
    for key in keys:
        a, b = before.get(key), after.get(key)
        labels = list(dict.fromkeys(framework_label(r) for r in (a, b) if r))
        _, model, device, batch, image, _ = key
        row = dict(model=model, framework=" -> ".join(labels), device=device, batch_size=batch,
                   image_size=image)
        if a is None or b is None or a["status"] != "ok" or b["status"] != "ok":
            whole = ("only-in-new" if a is None else "only-in-old" if b is None
                     else "failed" if a["status"] == b["status"] else "broken" if a["status"] == "ok"
                     else "fixed")
            rows.append(DiffRow(**row, phase=None, old=None, new=None, ratio=None, p_value=None,
                                verdict=whole))
            continue
        for phase in PHASES:
            pa, pb = a["phases"].get(phase), b["phases"].get(phase)
            if pa is None and pb is None:
                continue
            if pa is None or pb is None:
                rows.append(DiffRow(**row, phase=phase, old=None, new=None, ratio=None, p_value=None,
                                    verdict="only-in-new" if pa is None else "only-in-old"))
                continue
            m_old, m_new = pa["stats"]["median"], pb["stats"]["median"]
            ratio = m_new / m_old
            p = _p_value(pa.get("samples") or [], pb.get("samples") or [])
            rows.append(DiffRow(**row, phase=phase, old=m_old, new=m_new, ratio=ratio, p_value=p,
                                verdict=verdict(ratio, p, threshold, alpha)))
    return rows


def has_regression(rows: list[DiffRow]) -> bool:
    return any(r.verdict in REGRESSIONS for r in rows)


def diff_table(rows: list[DiffRow], threshold: float = 0.05, alpha: float = 0.05) -> Table:
    table = Table(title=f"new vs old: slower/faster only when p < {alpha:g} "
                        f"and the medians differ by more than {threshold:.0%}")
    for col in ("model", "framework", "device", "batch", "phase", "old", "new", "new/old", "p", "verdict"):
        table.add_column(col, justify="left" if col in ("model", "framework", "phase", "verdict") else "right")
    for r in rows:
        table.add_row(
            model_title(r.model), Text(r.framework), r.device, f"{r.batch_size} @ {r.image_size}px",
            r.phase or "", fmt_duration(r.old) if r.old is not None else "",
            fmt_duration(r.new) if r.new is not None else "",
            f"{r.ratio:.3f}" if r.ratio is not None else "",
            f"{r.p_value:.2g}" if r.p_value is not None else "",
            Text(r.verdict, style=STYLES.get(r.verdict, "yellow")),
        )
    return table
