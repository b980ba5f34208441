"""report --format csv|jsonl, --raw, --output: long tables with stable columns, on synthetic records."""

import csv
import io
import json

import pytest

from factories import record, results_file
from pybench.cli.main import main
from pybench.report import export
from pybench.report.command import export_text
from pybench.records.results import ResultsFile

DOC = results_file([
    record("pytorch", "resnet18", rounds=[{"total": [0.10, 0.11, 0.12]}, {"total": [0.20, 0.21, 0.22]}]),
    record("jax", "resnet18", rounds=[{"total": [0.05, 0.06, 0.07]}, {"total": [0.10, 0.11, 0.12]}]),
    record("flux", "resnet18", error="OutOfMemoryError: out of memory"),
])


def _csv(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_stat_table_one_row_per_cell_phase_and_statistic():
    rows = _csv(export_text([DOC], "csv", raw=False, stat="median"))
    assert list(rows[0]) == list(export.STAT_COLUMNS)  # the documented header, in order
    by = {(r["framework"], r["statistic"]): r for r in rows}
    assert len(rows) == 6  # two ok frameworks x mean/median/min of one phase; the failed cell has no number
    assert by[("pytorch", "mean")]["seconds"] == by[("pytorch", "median")]["seconds"]  # symmetric rounds
    torch_median = by[("pytorch", "median")]
    assert float(torch_median["seconds"]) == pytest.approx((0.11 * 0.21) ** 0.5)  # geometric mean of rounds
    assert torch_median["round_values"] == "0.11 0.21" and torch_median["n_samples"] == "6"
    assert torch_median["machine"] == "box" and torch_median["device_name"] == "NVIDIA H200"
    assert float(by[("pytorch", "min")]["seconds"]) == pytest.approx((0.10 * 0.20) ** 0.5)
    jax = by[("jax", "median")]
    assert jax["baseline"] == "PyTorch 2.14.1"
    assert float(jax["ratio"]) == pytest.approx(((0.06 / 0.11) * (0.11 / 0.21)) ** 0.5)
    assert jax["verdict"] in ("faster", "tie") and torch_median["ratio"] == ""


def test_raw_table_holds_every_timed_value():
    rows = _csv(export_text([DOC], "csv", raw=True, stat="median"))
    assert list(rows[0]) == list(export.RAW_COLUMNS)
    samples = [r for r in rows if r["kind"] == "sample" and r["framework"] == "pytorch"]
    assert [float(r["seconds"]) for r in samples] == [0.10, 0.11, 0.12, 0.20, 0.21, 0.22]
    assert {r["round"] for r in samples} == {"1", "2"}
    assert sum(r["kind"] == "first_run" for r in rows) == 4  # one per round and framework


def test_jsonl_keeps_types(tmp_path):
    lines = export_text([DOC], "jsonl", raw=False, stat="median").splitlines()
    first = json.loads(lines[0])
    assert list(first) == list(export.STAT_COLUMNS)
    assert isinstance(first["seconds"], float) and isinstance(first["round_values"], list)


def test_cli_writes_csv_to_a_file_and_refuses_raw_markdown(tmp_path, capsys):
    store = ResultsFile.create(tmp_path, DOC.environment, ["pybench", "run"])
    for r in DOC.records:
        store.add(r)
    store.save()
    out = tmp_path / "out.csv"
    assert main(["report", str(tmp_path), "--format", "csv", "--output", str(out)]) == 0
    assert _csv(out.read_text())[0]["model"] == "resnet18"
    assert main(["report", str(tmp_path), "--raw"]) == 2
    assert "--raw" in capsys.readouterr().err


def test_pandas_one_liner_from_the_readme(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "r.csv"
    path.write_text(export_text([DOC], "csv", raw=False, stat="median"))
    df = pd.read_csv(path)
    assert df.query("statistic == 'median'").pivot_table(index="model", columns="framework",
                                                         values="seconds").shape == (1, 2)
