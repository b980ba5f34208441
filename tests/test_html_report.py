"""report --html in a real headless Chromium, from committed results of real tiny CPU runs.

tests/data/html/ holds three results files of one machine: two runs of the same cells (a history)
and one with a non-default thread count (a second section side by side).  The page must load without
console errors, draw every chart with one point per interval the fixture holds, and show the
fixture's numbers in its tables.  Skips with the reason where no browser can be driven.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pybench.cli.main import main
from pybench.records.results import collect

FIXTURE = Path(__file__).parent / "data" / "html"
pytestmark = pytest.mark.slow  # a real Chromium


def _browser() -> str:
    """The Chromium executable, or a skip saying why there is none."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    path = os.environ.get("PYBENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no Chromium: apt-get install -y chromium (.ci/run does this as root), or set PYBENCH_CHROMIUM")
    return path


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The rendered page, its console messages, and the screenshot's path."""
    executable = _browser()
    from playwright.sync_api import sync_playwright

    folder = tmp_path_factory.mktemp("html")
    out = folder / "report.html"
    assert main(["report", str(FIXTURE), "--html", str(out), "--reference", "seed-2018"]) == 0
    messages: list[tuple[str, str]] = []
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        except Exception as exc:  # noqa: BLE001 - a browser that cannot start here is a skip with its reason
            pytest.skip(f"Chromium at {executable} does not start: {str(exc).splitlines()[0]}")
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        pg.on("console", lambda m: messages.append((m.type, m.text)))
        pg.on("pageerror", lambda e: messages.append(("pageerror", str(e))))
        pg.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:")
                 else route.continue_())  # offline: any network request fails
        pg.goto(out.as_uri())
        pg.wait_for_function("[...document.querySelectorAll('div.chart')].every(d => d.dataset.rendered)",
                             timeout=30_000)
        shot = folder / "report.png"
        pg.screenshot(path=str(shot), full_page=True)
        charts = [{"kind": d.get_attribute("data-chart"), "marks": int(d.get_attribute("data-marks")),
                   "rendered": d.get_attribute("data-rendered"),
                   "points": len(d.query_selector_all("g.mark-symbol.role-mark path"))}
                  for d in pg.query_selector_all("div.chart")]
        cells = {(r.query_selector("td:nth-child(2)").inner_text(), c.get_attribute("data-seconds")): c.inner_text()
                 for r in pg.query_selector_all("table.seed tr") if r.query_selector("td")
                 for c in r.query_selector_all("td[data-seconds]")}
        text = pg.inner_text("body")
        browser.close()
    return {"messages": messages, "charts": charts, "cells": cells, "text": text, "shot": shot, "html": out}


def _latest_records():
    """The newest record of each identity, straight from the files (what the tables must show)."""
    latest = {}
    for doc in sorted(collect([FIXTURE]), key=lambda d: d.created):
        for r in doc.records:
            latest[r.key] = r
    return [r for r in latest.values() if r.ok]


def test_loads_offline_without_console_errors(page):
    errors = [m for m in page["messages"] if m[0] in ("error", "pageerror")]
    assert errors == []
    assert page["html"].stat().st_size < 2_000_000  # the inlined Vega bundle is about 0.9 MB
    assert page["shot"].stat().st_size > 10_000


def test_every_chart_draws_one_point_per_interval(page):
    charts = page["charts"]
    assert all(c["rendered"] == "1" for c in charts)
    assert all(c["points"] == c["marks"] for c in charts)
    records = _latest_records()
    kinds = Counter()
    for c in charts:
        kinds[c["kind"]] += c["points"]
    assert kinds["times"] == sum(len(r.phase_names) for r in records)
    # one ratio per phase for every framework after the first of its cell
    by_cell = Counter(r.key.cell for r in records)
    assert kinds["forest"] == sum(len(r.phase_names) for r in records if r.spec.framework != "pytorch"
                                  and by_cell[r.key.cell] > 1)
    runs = Counter(r.key for doc in collect([FIXTURE]) for r in doc.records if r.ok)
    # the trend: one point per phase of every run of a cell measured in more than one run
    assert kinds["trend"] == sum(len(r.phase_names) for doc in collect([FIXTURE]) for r in doc.records
                                 if r.ok and runs[r.key] > 1) > 0


def test_tables_hold_the_fixture_numbers(page):
    for r in _latest_records():
        # the estimate, recomputed here: geometric mean of the rounds' means
        value = float(np.exp(np.mean([np.log(np.mean(s)) for s in r.samples("total")])))
        label = r.title + (f" ({r.key.variant})" if r.key.variant else "")
        matches = [text for (row, seconds), text in page["cells"].items()
                   if row == label and float(seconds) == pytest.approx(value, rel=1e-12)]
        assert matches, (label, value)


def test_command_environment_noise_and_reference_are_shown(page):
    text = page["text"]
    assert "run --framework pytorch jax --model resnet18 dense1024_512" in text  # the command
    assert "Noise audit" in text and "Published 2018 reference" in text
    assert "not measured on this machine" in text
    assert "energy" in text.lower() and "CPU-s" in text
