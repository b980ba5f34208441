"""Run-to-run comparison: rounds are the unit, Holm over the family, and size matters too."""

import io

import numpy as np
import pytest
from rich.console import Console

from factories import record, results_file
from pybench.errors import UserError
from pybench.report.diff import compare_runs, diff_table, has_regression


def run(scale: float, seed: int, n_rounds: int = 5, drift: float = 0.005, **kw):
    """A run of `n_rounds` rounds: each process drifts by `drift`, samples scatter 2% within it."""
    rng = np.random.default_rng(seed)
    rounds = []
    for _ in range(n_rounds):
        level = 0.020 * scale * (1 + drift * rng.standard_normal())
        rounds.append({"total": list(level * (1 + 0.02 * rng.standard_normal(30)))})
    return results_file([record("pytorch", "resnet18", rounds=rounds, **kw)])


def only(rows):
    (row,) = rows
    return row


def test_a_twenty_percent_shift_is_slower_and_significant():
    row = only(compare_runs([run(1.0, 1)], [run(1.2, 2)]))
    assert row.verdict == "slower" and row.phase == "total"
    assert 1.15 < row.ratio < 1.25 and row.p_value < 1e-3
    assert has_regression([row])
    assert only(compare_runs([run(1.2, 2)], [run(1.0, 1)])).verdict == "faster"


def test_two_runs_of_one_distribution_are_the_same():
    row = only(compare_runs([run(1.0, 1, drift=0.08)], [run(1.0, 2, drift=0.08)]))
    assert row.verdict in ("same", "inconclusive")  # drift may pass the threshold, unconfirmed
    assert not has_regression([row])


def test_threshold_ignores_a_significant_but_small_change():
    old, new = [run(1.0, 1)], [run(1.03, 2)]  # 3%: significant with 0.5% drift between rounds
    row = only(compare_runs(old, new, threshold=0.05))
    assert row.p_value < 0.05 and row.verdict == "same" and not has_regression([row])
    assert has_regression(compare_runs(old, new, threshold=0.01))


def test_one_round_a_side_is_inconclusive_not_same():
    row = only(compare_runs([run(1.0, 1, n_rounds=1)], [run(1.5, 2, n_rounds=1)]))
    assert row.verdict == "inconclusive" and row.p_value is None
    assert not has_regression([row])


def test_holm_corrects_for_the_number_of_phases_compared():
    # Twenty phases, one of them 6% slower at a p-value that alone would pass 0.05 but not after
    # correcting for twenty comparisons.
    def many(shift_first: float, seed: int):
        rng = np.random.default_rng(seed)
        recs = []
        for i in range(20):
            rounds = [{"total": list(0.02 * (1 + (shift_first if i == 0 else 0)) * (1 + 0.04 * rng.standard_normal())
                                     * (1 + 0.01 * rng.standard_normal(10)))} for _ in range(3)]
            recs.append(record("pytorch", "resnet18", rounds=rounds, batch=i + 1))
        return [results_file(recs)]

    rows = compare_runs(many(0.0, 1), many(0.06, 2))
    assert len(rows) == 20 and not has_regression(rows)


def test_unmatched_and_failed_cells():
    old = [results_file([record("pytorch", "vgg16", {"total": 1.0}),
                         record("flux", "resnet18", {"total": 1.0})])]
    new = [results_file([record("pytorch", "vgg16", {"total": 1.0}, batch=16),  # another cell
                         record("flux", "resnet18", error="OutOfMemoryError")])]
    rows = compare_runs(old, new)
    assert [(r.key.model, r.framework, r.key.batch_size, r.verdict) for r in rows] == [
        ("vgg16", "PyTorch 2.14.1", 8, "only-in-old"),
        ("vgg16", "PyTorch 2.14.1", 16, "only-in-new"),
        ("resnet18", "Flux 0.16.3 -> Flux", 8, "broken"),
    ]
    assert has_regression(rows)  # a cell that ran before and fails now
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(diff_table(rows))
    text = console.file.getvalue()
    assert "only-in-old" in text and "broken" in text and "16 @ 224px" in text


def test_cells_that_differ_in_any_setting_never_pair():
    base = run(1.0, 1)
    for other in (run(0.5, 2, dtype="bf16"), run(1.0, 2, threads=1), run(1.0, 2, label="other box"),
                  run(1.0, 2, channels_last=True)):
        with pytest.raises(UserError, match="no cell in common"):  # nothing compared is no pass
            compare_runs([base], [other])
