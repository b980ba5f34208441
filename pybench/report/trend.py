"""The trend section of the HTML page: for every cell measured in more than one run, per phase a line of
the run estimates with their intervals, the change points of its history marked (a step the
statistics found, or versions and environment that changed), the versions of each run on hover.
A pure formatter of `history.Series`."""

from __future__ import annotations

from pybench.records.spec import CellKey
from pybench.report.format import fmt_duration, model_title
from pybench.report.history import Series
from pybench.report.html import chart_div, esc, log_domain

HOVER_FACTS = ("framework", "package torch", "package jax", "python", "os", "driver", "pybench", "git_commit")


def _versions(facts: dict[str, str]) -> str:
    return "; ".join(f"{k}: {facts[k]}" for k in HOVER_FACTS if k in facts)


def _points(series: list[Series]) -> list[dict]:
    return [{"phase": s.phase, "created": r.created.isoformat(), "value": r.value, "lo": r.ci_low, "hi": r.ci_high,
             "file": r.file, "versions": _versions(r.facts), "rounds": ", ".join(f"{v:.4g}" for v in r.rounds)}
            for s in series for r in s.runs]


def _marks(series: list[Series]) -> list[dict]:
    """One rule per run that starts a change point, saying what changed in every phase it applies to."""
    out: dict[str, list[str]] = {}
    for s in series:
        for c in s.changes:
            at = s.runs[c.index].created.isoformat()
            said = out.setdefault(at, [])
            if c.step is not None:
                said.append(f"{s.phase}: step x{c.step:.2f}")
            said.extend(d for d in c.differs if d not in said)
    return [{"created": at, "change": "; ".join(said)} for at, said in out.items()]


def _chart(series: list[Series]):
    import altair as alt

    data = _points(series)
    base = alt.Chart(alt.Data(values=data))
    x = alt.X("created:T", title="run")
    y = alt.Y("value:Q", title="seconds (log)", scale=alt.Scale(type="log", domain=log_domain(data, False)))
    tooltip = [alt.Tooltip(f, title=t) for f, t in (
        ("phase:N", "phase"), ("created:T", "run"), ("value:Q", "seconds"), ("lo:Q", "95% low"),
        ("hi:Q", "95% high"), ("rounds:N", "round values (s)"), ("file:N", "results file"),
        ("versions:N", "versions"))]
    layers = [base.mark_line().encode(x=x, y=y, color="phase:N"),
              base.mark_point(filled=True, size=50).encode(x=x, y=y, color="phase:N", tooltip=tooltip)]
    if any(d["lo"] is not None for d in data):
        layers.insert(0, base.transform_filter("datum.lo != null").mark_rule(clip=True).encode(
            x=x, y="lo:Q", y2="hi:Q", color="phase:N"))
    marks = _marks(series)
    if marks:
        layers.append(alt.Chart(alt.Data(values=marks)).mark_rule(strokeDash=[4, 4], color="gray").encode(
            x="created:T", tooltip=[alt.Tooltip("change:N", title="change point")]))
    return alt.layer(*layers).properties(width=440), len(data)


def _title(key: CellKey, series: list[Series]) -> str:
    return (f"{model_title(key.model)} · {series[-1].title} · {key.device_kind} ({key.label}) · "
            f"{key.batch_size} @ {key.image_size}px")


def trend_section(series: list[Series]) -> str:
    """The section, or '' when no cell was measured more than once."""
    cells: dict[CellKey, list[Series]] = {}
    for s in series:
        if len(s.runs) > 1:
            cells.setdefault(s.key, []).append(s)
    if not cells:
        return ""
    parts = [("<h2>Trend of cells measured in more than one run</h2><p>Each point is one run's estimate with "
              "its 95% interval; a dashed rule is a change point (a step the history's statistics found, or "
              "versions or environment that changed); hover a point for its versions.</p>")]
    for key, group in cells.items():
        spec, marks = _chart(group)
        latest = "; ".join(f"{s.phase} {fmt_duration(s.runs[-1].value)}" for s in group)
        parts.append(f'<div class="trend"><h3>{esc(_title(key, group))}</h3>{chart_div("trend", spec, marks)}'
                     f"<p>latest run: {esc(latest)}</p></div>")
    return "".join(parts)
