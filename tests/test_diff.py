"""Run-to-run comparison: significance and size both needed before a change is called."""

import io

import numpy as np
from rich.console import Console

from factories import record, results_file
from pybench.diff import compare_runs, diff_table, has_regression


def run(scale: float, seed: int, **kw) -> dict:
    rng = np.random.default_rng(seed)
    samples = list(0.020 * scale * (1 + 0.02 * rng.standard_normal(60)))  # 2% noise, 60 samples
    return results_file([record("pytorch", "resnet18", samples={"total": samples}, **kw)])


def only(rows):
    (row,) = rows
    return row


def test_a_twenty_percent_shift_is_slower_and_significant():
    row = only(compare_runs([run(1.0, 1)], [run(1.2, 2)]))
    assert row.verdict == "slower" and row.phase == "total"
    assert 1.15 < row.ratio < 1.25 and row.p_value < 1e-6
    assert has_regression([row])
    assert only(compare_runs([run(1.2, 2)], [run(1.0, 1)])).verdict == "faster"


def test_two_draws_of_one_distribution_are_the_same():
    row = only(compare_runs([run(1.0, 1)], [run(1.0, 2)]))
    assert row.verdict == "same" and abs(row.ratio - 1) < 0.02
    assert not has_regression([row])


def test_threshold_ignores_a_significant_but_small_change():
    old, new = [run(1.0, 1)], [run(1.03, 2)]  # 3%: significant with 60 samples at 2% noise
    row = only(compare_runs(old, new, threshold=0.05))
    assert row.p_value < 0.05 and row.verdict == "same" and not has_regression([row])
    assert has_regression(compare_runs(old, new, threshold=0.01))


def test_unmatched_and_failed_cells():
    old = [results_file([record("pytorch", "vgg16", {"total": 1.0}),
                         record("flux", "resnet18", {"total": 1.0})])]
    new = [results_file([record("pytorch", "vgg16", {"total": 1.0}, batch=16),  # another cell
                         record("flux", "resnet18", error="OutOfMemoryError")])]
    rows = compare_runs(old, new)
    assert [(r.model, r.framework, r.batch_size, r.verdict) for r in rows] == [
        ("vgg16", "PyTorch 2.14.1", 8, "only-in-old"),
        ("vgg16", "PyTorch 2.14.1", 16, "only-in-new"),
        ("resnet18", "Flux 0.16.3 -> Flux", 8, "broken"),
    ]
    assert has_regression(rows)  # a cell that ran before and fails now
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(diff_table(rows))
    text = console.file.getvalue()
    assert "only-in-old" in text and "broken" in text and "16 @ 224px" in text


def test_dtype_variants_never_match_plain_rows():
    rows = compare_runs([run(1.0, 1)], [run(0.5, 2, dtype="bf16", variant="bf16")])
    assert sorted(r.verdict for r in rows) == ["only-in-new", "only-in-old"]
