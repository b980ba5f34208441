"""One self-contained HTML page, a pure formatter of `view` rows and `selection` sections.

Charts are Vega-Lite specs built with altair and drawn by Vega in the page; the Vega, Vega-Lite and
vega-embed JavaScript comes from vl-convert-python and is inlined, so the file opens offline and can be
mailed.  Why not plotly: the plotly.min.js it would inline is 4.8 MB (plotly 7.1.0) against 0.9 MB
here, and altair validates every spec against the Vega-Lite schema when it is built.

Every chart is a `<div class="chart" data-chart=KIND data-marks=N>`: N is the number of points the
spec draws (one per interval), which the browser test compares with what Vega rendered.
"""

from __future__ import annotations

import html
import json
from typing import Any

from pybench.report.format import (
    DETAILS, FAILED, MARKS, detail_texts, fmt_seconds, model_title,
)
from pybench.report.selection import RunInfo, Section

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
td:nth-child(-n+2),th{text-align:left}.faster{font-weight:bold}.mark{color:#b60}
.sections{display:flex;flex-wrap:wrap;gap:2em}.section{flex:1 1 760px;min-width:0;overflow-x:auto}
.published{background:#f6f6f6;padding:.2em 1em}
.verdict{font-weight:bold;font-size:16px;margin:.3em 0}.flag{color:#b00}.facts{color:#555;margin:0 0 .6em}pre{white-space:pre-wrap;background:#f4f4f4;padding:.5em}
"""


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _row_name(row) -> str:
    return f"{model_title(row.model)} · {row.label}"


def _points(rows, kind: str) -> list[dict]:
    """One datum per (row, phase): seconds or ratio with its interval; the round values for hover."""
    out = []
    for row in rows:
        for phase, cell in row.cells.items():
            target = cell.ratio if kind == "forest" else cell
            if target is None or target.value is None:
                continue
            name = _row_name(row) + (f" vs {row.baseline}" if kind == "forest" else "")
            out.append({"name": name, "phase": phase, "value": target.value, "lo": target.ci_low,
                        "hi": target.ci_high, "rounds": ", ".join(f"{v:.4g}" for v in cell.rounds),
                        "verdict": target.verdict() if kind == "forest" else cell.quality})
    return out


def _tooltip(value_title: str, first: str) -> list:
    import altair as alt

    return [alt.Tooltip(f, title=t) for f, t in (
        (first, "row"), ("phase:N", "phase"), ("value:Q", value_title), ("lo:Q", "95% low"),
        ("hi:Q", "95% high"), ("rounds:N", "round values (s)"), ("verdict:N", "verdict"))]


def log_domain(data: list[dict], one: bool) -> list[float]:
    """The points' range widened tenfold each way (and 1 for ratios): a two-round interval can span
    decades, and it is clipped there rather than squeezing every point into one pixel."""
    values = [d["value"] for d in data] + ([1.0] if one else [])
    return [min(values) / 10, max(values) * 10]


def ratio_domain(data: list[dict]) -> list[float]:
    """Ratios: the points, their intervals (each clipped at a tenfold of its ratio) and 1, with a
    margin; the axis fits the data and the rule at 1 is always on it."""
    ends = [1.0]
    for d in data:
        ends.append(d["value"])
        if d["lo"] is not None and d["hi"] is not None:
            ends += [max(d["lo"], d["value"] / 10), min(d["hi"], d["value"] * 10)]
    return [min(ends) / 1.1, max(ends) * 1.1]


def _rows_chart(data: list[dict], x_title: str, one: bool = False):
    """A forest of points with interval rules: one line per row, offset by phase, log x."""
    import altair as alt

    base = alt.Chart(alt.Data(values=data))
    y = {"y": alt.Y("name:N", title=None, axis=alt.Axis(labelLimit=400)),  # whole names, not cut at 180 px
         "yOffset": alt.YOffset("phase:N")}
    domain = ratio_domain(data) if one else log_domain(data, one)
    x = alt.X("value:Q", title=x_title, scale=alt.Scale(type="log", domain=domain))
    points = base.mark_point(filled=True, size=50).encode(x=x, color="phase:N",
                                                          tooltip=_tooltip(x_title, "name:N"), **y)
    layers = [points]
    if any(d["lo"] is not None for d in data):
        layers.insert(0, base.transform_filter("datum.lo != null").mark_rule(clip=True).encode(
            x="lo:Q", x2="hi:Q", color="phase:N", **y))
    if one:  # no difference
        layers.append(alt.Chart().mark_rule(strokeDash=[4, 4], color="gray").encode(x=alt.datum(1)))
    return alt.layer(*layers).properties(width=440)


def chart_div(kind: str, spec, marks: int) -> str:
    return (f'<div class="chart" data-chart="{kind}" data-marks="{marks}">'
            f'<script type="application/json">{_json_script(spec.to_dict())}</script></div>')


def _json_script(data: dict) -> str:
    return json.dumps(data).replace("<", "\\u003c")  # no "</script>" can end the block early


def _cell_html(cell, unit: str) -> str:
    if cell is None:
        return "<td></td>"
    if cell.failed:
        return f"<td>failed {FAILED}</td>"
    if cell.value is None:
        return f"<td>{esc(cell.text)}</td>"
    text = esc(cell.text) if cell.text else fmt_seconds(cell.value, unit)
    if cell.half_width is not None:
        text += f" ± {fmt_seconds(cell.half_width, unit)}"
    mark = MARKS.get(cell.quality)
    mark_html = f' <span class="mark">{mark}</span>' if mark and not cell.text else ""
    css = ' class="faster"' if cell.faster else ""
    return f'<td{css} data-seconds="{cell.value!r}">{text}{mark_html}</td>'


def _table(section: Section) -> str:
    from pybench.protocol.phases import PHASES

    unit = "ms" if section.layers else "s"
    head = "".join(f"<th>{esc(PHASES[p].column)}</th>" for p in section.phases)
    body = []
    for row in section.rows:
        cells = "".join(_cell_html(row.cells.get(p), unit) for p in section.phases)
        body.append(f"<tr><td>{esc(model_title(row.model))}</td><td>{esc(row.label)}</td>{cells}</tr>")
    notes = "".join(f"<li>{esc(model_title(r.model))}, {esc(r.label)}: {esc(n)}</li>"
                    for r in section.rows for n in ([r.error] if r.error else []) + r.notes)
    return (f'<table class="seed"><tr><th>{"Layer" if section.layers else "Model"}</th><th>Framework</th>'
            f"{head}</tr>{''.join(body)}</table>" + (f"<ul>{notes}</ul>" if notes else ""))


def _details(section: Section) -> str:
    rows = [r for r in section.rows if r.record is not None and r.record.ok]
    if not rows:
        return ""
    head = "".join(f"<th>{esc(h)}</th>" for h in DETAILS.values())
    body = "".join(f"<tr><td>{esc(model_title(r.model))}</td><td>{esc(r.label)}</td>"
                   + "".join(f"<td>{esc(v)}</td>" for v in detail_texts(d).values()) + "</tr>"
                   for r in rows for d in r.details)
    return (f'<table class="details"><tr><th>Model</th><th>Framework</th>{head}</tr>{body}</table>'
            "<p>First run includes compilation; energy is per batch over the sampling window.</p>")


def _section(section: Section, stat: str) -> str:
    parts = [f'<div class="section"><h2>{esc(section.heading)}</h2>']
    if section.settings:
        parts.append(f"<p>{esc(section.settings)}</p>")
    parts.append(_table(section))
    times = _points(section.rows, "times")
    if times:
        parts.append(f"<h3>{esc(stat)} seconds per batch by phase, 95% interval</h3>")
        parts.append(chart_div("times", _rows_chart(times, "seconds (log)"), len(times)))
    parts.append(_details(section))
    return "".join(parts) + "</div>"


def _answer(sections: list[Section]) -> str:
    """The page's first screen: per section the verdict lines (`answer.Answer`, the same sentences
    `compare` prints) with their parity, numerics and break-even, then the forest plot of its ratios."""
    from pybench.report.answer import answers

    parts = []
    for section in sections:
        found, ratios = answers(section.rows), _points(section.rows, "forest")
        if not found and not ratios:
            continue
        lines = "".join(f'<p class="verdict{" flag" if a.disagrees or a.numerics else ""}">{esc(a.sentence())}</p>'
                        f'<p class="facts">{" · ".join(esc(f) for f in a.facts())}</p>' for a in found)
        chart = chart_div("forest", _rows_chart(ratios, "time relative to the first framework (log)", one=True),
                          len(ratios)) if ratios else ""
        parts.append(f'<div class="section"><h2>{esc(section.heading)}</h2>{lines}{chart}</div>')
    return f'<div class="sections answer">{"".join(parts)}</div>' if parts else ""


def _runs(infos: list[RunInfo]) -> str:
    out = ["<h2>Runs: command, environment and noise audit</h2>"]
    for info in infos:
        env = {k: v for k, v in info.environment.items() if k != "noise"}
        tips = "".join(f"<li>{esc(t)}</li>" for t in info.noise_advice)
        out.append(f"<h3>{esc(info.name)} ({esc(info.created)})</h3>"
                   f"<pre class=\"command\">{esc(' '.join(info.command) or '(command not recorded)')}</pre>"
                   f"<p>Noise audit:</p><ul class=\"noise\">{tips}</ul>"
                   f"<details><summary>environment</summary><pre>{esc(json.dumps(env, indent=1))}</pre>"
                   f"<pre>{esc(json.dumps(info.environment.get('noise'), indent=1))}</pre></details>")
    return "".join(out)


_EMBED = """
for (const div of document.querySelectorAll("div.chart")) {
  const spec = JSON.parse(div.querySelector("script").textContent);
  vegaEmbed(div, spec, {renderer: "svg", actions: false}).then(() => div.dataset.rendered = "1")
    .catch(e => { div.dataset.rendered = "error"; console.error(e); });
}
"""


def render_html(sections: list[Section], reference: list[Section], trend: str,
                infos: list[RunInfo], stat: str, bundle: str) -> str:
    """The page; `trend` is the trend section's HTML (`trend.trend_section`), `bundle` the inlined Vega
    JavaScript (`vega_bundle()`)."""
    body = [f"<h1>pybench results</h1><p>{esc(stat)} per batch; intervals are 95%; the faster framework "
            "is in bold when the ratio's verdict says faster. Hover a point for its round values.</p>",
            _answer(sections), '<div class="sections">', *(_section(s, stat) for s in sections), "</div>", trend]
    for section in reference:
        body.append(f'<div class="published"><h2>{esc(section.heading)}</h2>{_table(section)}</div>')
    body.append(_runs(infos))
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>pybench results</title>"
            f"<style>{CSS}</style><script>{bundle}</script></head><body>{''.join(body)}"
            f"<script>{_EMBED}</script></body></html>\n")


def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed, for the Vega-Lite version altair writes, as one script."""
    import altair as alt
    import vl_convert

    version = alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0]
    return vl_convert.javascript_bundle(vl_version=version).replace("</script", "<\\/script")
