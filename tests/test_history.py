"""History and `history --check`: scripted histories for the statistics (seeded, so every figure here is
exact), the command on files, and a few real small runs (slow)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from factories import record
from pybench.errors import UserError
from pybench.records.results import ResultsDoc, collect
from pybench.records.statistics import Verdict
from pybench.report import history_command
from pybench.report.diff import compare_runs
from pybench.report.history import check, latest_against_history, series_of, steps

PHASES = ("forward", "backward", "total")
ENV = {"label": "box", "python": "3.11.7", "os": "Linux-6.18", "pybench": "0.1.0",
       "packages": {"torch": "2.14.1", "numpy": "2.4.6"}, "gpus": []}


def doc(i: int, level: float, rounds: list[float], env: dict | None = None, phases=PHASES, failed: bool = False,
        label: str = "box") -> ResultsDoc:
    """Run i (one per minute) of one CPU cell: each round's samples sit at level * that round's factor."""
    if failed:
        records = [record("pytorch", "resnet18", device="cpu", threads=2, label=label, error="boom")]
    else:
        samples = [{p: [level * f * (1 + d) for d in (-0.01, 0, 0.01)] for p in phases} for f in rounds]
        records = [record("pytorch", "resnet18", device="cpu", threads=2, label=label, rounds=samples)]
    return ResultsDoc(path=Path(f"run{i:03d}.json"), created=f"2026-01-01T{i // 60:02d}:{i % 60:02d}:00+0000",
                      environment=env or ENV, records=records)


def scripted(rng: np.random.Generator, n: int, between: float, within: float, start: int = 0,
             factor: float = 1.0) -> list[ResultsDoc]:
    """n runs of identical code: a run factor drawn with `between` spread, 3 rounds with `within`."""
    return [doc(start + i, 0.1 * factor * math.exp(rng.normal(0, between)),
                [math.exp(rng.normal(0, within)) for _ in range(3)]) for i in range(n)]


def verdicts(history: list[ResultsDoc], new: list[ResultsDoc], threshold: float = 0.05) -> set[Verdict]:
    judged, whole = check(history, new, threshold)
    return {j.verdict for j in judged} | {w.verdict for w in whole}


def test_identical_code_is_never_called_slower_in_200_scripted_checks():
    # run estimates 8% apart (the VM's 5-13%), rounds 5% apart; histories of 4 to 10 runs
    rng = np.random.default_rng(26)
    alarms = 0
    for i in range(200):
        runs = scripted(rng, 4 + i % 7 + 1, between=0.08, within=0.05)
        alarms += Verdict.SLOWER in verdicts(runs[:-1], runs[-1:])
    assert alarms <= 2  # the one-sided 0.5% tail, family-wise: about 1 in 200 at most


def test_a_30_percent_slowdown_is_found_with_five_runs_of_history():
    rng = np.random.default_rng(1)
    found = 0
    for i in range(20):
        runs = scripted(rng, 5, between=0.03, within=0.03)
        slow = scripted(rng, 1, between=0.03, within=0.03, start=5, factor=1.3)
        found += Verdict.SLOWER in verdicts(runs, slow)
    assert found >= 18


def test_runs_that_agree_by_chance_do_not_hide_how_much_their_rounds_disagree():
    # four runs within 0.1% of each other, but rounds 8% apart: a 12% move is ordinary drift
    history = [doc(i, 0.1 * (1 + 0.001 * i), [0.92, 1.0, 1.08]) for i in range(4)]
    assert Verdict.SLOWER not in verdicts(history, [doc(9, 0.112, [0.999, 1.0, 1.001])])
    steady = [doc(i, 0.1 * (1 + 0.001 * i), [0.999, 1.0, 1.001]) for i in range(4)]
    assert verdicts(steady, [doc(9, 0.112, [0.999, 1.0, 1.001])]) == {Verdict.SLOWER}


def test_same_needs_the_interval_within_the_threshold():
    history = [doc(i, 0.1 * (1 + 0.002 * (i % 3)), [0.999, 1.0, 1.001]) for i in range(8)]
    assert verdicts(history, [doc(20, 0.1005, [0.999, 1.0, 1.001])]) == {Verdict.SAME}
    noisy = [doc(i, 0.1 * (1 + 0.1 * (i % 3)), [0.999, 1.0, 1.001]) for i in range(8)]
    assert verdicts(noisy, [doc(20, 0.11, [0.999, 1.0, 1.001])]) == {Verdict.INCONCLUSIVE}


def test_too_few_runs_are_inconclusive_with_no_interval():
    history = [doc(i, 0.1, [0.99, 1.0, 1.01]) for i in range(2)]
    judged, _ = check(history, [doc(5, 0.5, [1, 1, 1])])
    assert {j.verdict for j in judged} == {Verdict.INCONCLUSIVE}
    assert all(j.low is None and j.p_value is None for j in judged)


def test_a_step_starts_a_new_baseline_and_noise_does_not():
    levels = [0.1] * 5 + [0.15] * 5
    runs = [doc(i, lv * (1 + 0.01 * ((-1) ** i)), [0.99, 1.0, 1.01]) for i, lv in enumerate(levels)]
    s = next(x for x in series_of(runs) if x.phase == "total")
    steps_found = [c for c in s.changes if c.step is not None]
    assert [c.index for c in steps_found] == [5] and steps_found[0].step == pytest.approx(1.5, rel=0.03)
    assert len(s.baseline) == 5
    rng = np.random.default_rng(3)
    assert steps(list(rng.normal(0, 0.08, 10)), 0.05) == []


def test_an_environment_change_is_said_and_does_not_split_the_baseline():
    newer = {**ENV, "packages": {**ENV["packages"], "torch": "2.15.0"}}
    runs = [doc(i, 0.1 * (1 + 0.01 * (i % 2)), [0.99, 1.0, 1.01], env=ENV if i < 4 else newer) for i in range(6)]
    s = series_of(runs)[0]
    assert [(c.index, c.step) for c in s.changes] == [(4, None)]
    assert s.changes[0].differs == ("package torch: 2.14.1 -> 2.15.0",)
    assert len(s.baseline) == 6
    judged, _ = check(runs[:4], [runs[5]])
    assert judged[0].differs == ("package torch: 2.14.1 -> 2.15.0",)


def test_nothing_in_common_empty_files_and_broken_cells():
    history = [doc(i, 0.1, [0.99, 1.0, 1.01]) for i in range(4)]
    with pytest.raises(UserError, match="nothing in common"):
        check(history, [doc(9, 0.1, [1, 1, 1], label="other")])
    with pytest.raises(UserError, match="hold no cell"):
        check(history, [dataclasses.replace(history[0], records=[])])
    with pytest.raises(UserError, match="nothing to check against"):
        check([], history)
    judged, whole = check(history, [doc(9, 0.1, [1, 1, 1], failed=True)])
    assert judged == [] and [w.verdict for w in whole] == [Verdict.BROKEN]


def test_diff_of_files_with_nothing_in_common_or_empty_is_a_user_error():
    a, b = doc(1, 0.1, [0.99, 1.0, 1.01]), doc(2, 0.1, [0.99, 1.0, 1.01], label="other")
    with pytest.raises(UserError, match="no cell in common"):
        compare_runs([a], [b])
    with pytest.raises(UserError, match="no cell"):
        compare_runs([dataclasses.replace(a, records=[])], [dataclasses.replace(b, records=[])])


def test_the_listing_judges_each_latest_run_against_the_runs_before_it():
    rng = np.random.default_rng(5)
    runs = scripted(rng, 6, between=0.02, within=0.02) + scripted(rng, 1, 0.02, 0.02, start=6, factor=2.0)
    judged = latest_against_history(series_of(runs), 0.05)
    assert {j.history.phase for j in judged} == set(PHASES)
    assert {j.verdict for j in judged} == {Verdict.SLOWER} and all(len(j.history.runs) == 6 for j in judged)


def _write(folder: Path, docs: list[ResultsDoc]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for d in docs:
        data = {"schema": "pybench.results", "schema_version": 2, "created": d.created, "command": [],
                "environment": d.environment, "records": [r.to_json() for r in d.records]}
        (folder / d.path.name).write_text(json.dumps(data))


def _args(folder: Path, new: Path | None = None, strict: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    history_command.add_parser(parser.add_subparsers())
    return parser.parse_args(["history", str(folder), *(["--check", str(new)] if new else []),
                              *(["--strict"] if strict else [])])


def test_the_command_exits_1_on_a_slowdown_0_otherwise_and_strict_on_inconclusive(tmp_path, capsys):
    rng = np.random.default_rng(7)
    _write(tmp_path / "h", scripted(rng, 5, between=0.02, within=0.02))
    _write(tmp_path / "slow", scripted(rng, 1, 0.02, 0.02, start=10, factor=1.5))
    _write(tmp_path / "same", scripted(rng, 1, 0.02, 0.02, start=11))
    lines: list = []
    assert history_command.run(_args(tmp_path / "h", tmp_path / "slow"), lines.append) == 1
    assert history_command.run(_args(tmp_path / "h", tmp_path / "same"), lines.append) == 0
    assert history_command.run(_args(tmp_path / "h", tmp_path / "same", strict=True), lines.append) == 1
    assert history_command.run(_args(tmp_path / "h"), lines.append) == 0
    # NEW written into the history's own folder is not part of its history
    shutil.copy(next((tmp_path / "slow").glob("*.json")), tmp_path / "h")
    assert history_command.run(_args(tmp_path / "h", tmp_path / "h" / "run010.json"), lines.append) == 1


def test_text_from_files_reaches_the_terminal_escaped(tmp_path):
    from rich.console import Console

    env = {**ENV, "packages": {"torch": "2.14.1\x1b]0;pwned\x07[bold]x[/bold]"}}
    _write(tmp_path / "h", [doc(i, 0.1, [0.99, 1.0, 1.01], env=env if i == 3 else ENV) for i in range(4)])
    console = Console(record=True, width=400)
    history_command.run(_args(tmp_path / "h"), console.print)
    text = console.export_text()
    assert "\x1b" not in text and "[bold]x[/bold]" in text


@pytest.mark.slow
def test_real_small_runs_a_slowdown_is_found_and_the_same_code_is_not_slower(tmp_path):
    import subprocess
    import sys

    cell = ["--framework", "pytorch", "--model", "conv3x3_s1", "--device", "cpu", "--threads", "1",
            "--rounds", "2", "--max-time", "0.5", "--min-samples", "5", "--max-samples", "50"]
    for _ in range(4):
        out = subprocess.run([sys.executable, "-m", "pybench", "run", *cell, "--results", str(tmp_path / "h")],
                             capture_output=True, text=True, timeout=600, check=False)
        assert out.returncode == 0, out.stderr
    history = collect([tmp_path / "h"])
    latest = max(history, key=lambda d: d.created)
    others = [d for d in history if d is not latest]
    judged, _ = check(others, [latest])
    assert Verdict.SLOWER not in {j.verdict for j in judged}  # identical code: no alarm
    # The newest run made slower by far more than the noise these runs measured (under a load of 9 on
    # 2 cores their rounds can differ tenfold): real files and noise, a slowdown beyond doubt.
    factor = 10 * max(j.high / j.low for j in judged) ** 2
    slow = dataclasses.replace(latest, path=Path("slow.json"), records=[dataclasses.replace(r, rounds=[
        dataclasses.replace(ro, phases={k: dataclasses.replace(v, samples=[s * factor for s in v.samples])
                                        for k, v in ro.phases.items()}) for ro in r.rounds]) for r in latest.records])
    assert verdicts(others, [slow]) == {Verdict.SLOWER}  # (such a factor can pass a file's time bounds)
    listing = subprocess.run([sys.executable, "-m", "pybench", "history", str(tmp_path / "h")],
                             capture_output=True, text=True, timeout=300, check=False)
    assert listing.returncode == 0 and "conv" in listing.stdout.lower(), listing.stderr
    # the command on the real files: the newest run, written into the history's folder, against the rest
    checked = subprocess.run([sys.executable, "-m", "pybench", "history", str(tmp_path / "h"), "--check",
                              str(latest.path)], capture_output=True, text=True, timeout=300, check=False)
    assert checked.returncode == 0 and "│ slower" not in checked.stdout, checked.stdout + checked.stderr


def test_the_trend_draws_every_run_of_every_phase_marks_changes_and_shows_versions():
    from pybench.report.trend import trend_section

    newer = {**ENV, "packages": {**ENV["packages"], "torch": "2.15.0<script>"}}
    runs = [doc(i, 0.1, [0.99, 1.0, 1.01], env=ENV if i < 3 else newer) for i in range(5)]
    page = trend_section(series_of(runs))
    marks = int(page.split('data-marks="')[1].split('"')[0])
    spec = json.loads(page.split('<script type="application/json">')[1].split("</script>")[0])
    assert marks == 5 * len(PHASES) == len(spec["layer"][1]["data"]["values"])
    (change,) = spec["layer"][-1]["data"]["values"]
    assert "package torch: 2.14.1 -> 2.15.0" in change["change"]
    assert "<script>" not in page.split("application/json")[1]  # file text cannot end the JSON block
    assert trend_section(series_of(runs[:1])) == ""


def test_a_bad_threshold_or_a_missing_folder_is_one_line_exit_2(tmp_path):
    _write(tmp_path / "h", [doc(i, 0.1, [0.99, 1.0, 1.01]) for i in range(3)])
    for bad in ("nan", "0", "1.5"):
        args = _args(tmp_path / "h")
        args.threshold = float(bad)
        with pytest.raises(UserError, match="--threshold"):
            history_command.run(args, print)
    with pytest.raises(UserError, match="not a folder"):
        history_command.run(_args(tmp_path / "missing"), print)


def test_where_the_rounds_govern_the_spread_their_degrees_of_freedom_do():
    """Five runs that agree within what their three rounds each explain: one run's spread is the
    rounds' (10 degrees of freedom), not five runs' (4); runs further apart than that keep n - 1."""
    from datetime import datetime, timezone

    from scipy import stats as st

    from pybench.report.history import CONFIDENCE, Run, typical

    def runs(levels, rounds):
        return tuple(Run(f"r{i}", datetime.fromtimestamp(i, timezone.utc), v, None, None, tuple(v * f for f in rounds))
                     for i, v in enumerate(levels))

    def half(t):
        return math.log(t.high / t.value)

    close = typical(runs([1.0, 1.01, 0.99, 1.0, 1.005], (0.92, 1.0, 1.08)))
    s = math.sqrt(np.var(np.log([0.92, 1.0, 1.08]), ddof=1) / 3)
    assert half(close) == pytest.approx(st.t.ppf((1 + CONFIDENCE) / 2, 10) * s * math.sqrt(1.2), rel=1e-6)
    apart = runs([1.0, 1.2, 0.85, 1.1, 0.95], (0.999, 1.0, 1.001))
    wide = typical(apart)
    s = float(np.std(np.log([r.value for r in apart]), ddof=1))
    assert half(wide) == pytest.approx(st.t.ppf((1 + CONFIDENCE) / 2, 4) * s * math.sqrt(1.2), rel=1e-6)
