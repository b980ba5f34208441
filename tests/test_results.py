"""Results files: atomic writes, typed records that round-trip, validation and migration on load."""

import copy
import json
import os
from pathlib import Path

import pytest

from factories import record, train
from pybench.records import results
from pybench.errors import UserError
from pybench.records.record import CellRecord
from pybench.records.round import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]


def test_file_grows_by_one_record_per_cell_and_round_trips(tmp_path):
    store = results.ResultsFile.create(tmp_path, {"label": "my box"}, ["pybench", "run"])
    assert store.path.name.startswith("my-box-")
    assert results.load(store.path).records == []  # the name is claimed when the run starts
    ok = record("pytorch", "resnet18", train(0.1, 0.2, 0.05), device="cpu")
    store.add(ok)
    doc = results.load(store.path)
    assert [r.to_json() for r in doc.records] == [ok.to_json()]
    store.add(record("flux", "resnet18", error="boom", device="cpu"))
    doc = results.load(store.path)
    assert [r.status for r in doc.records] == ["ok", "failed"]
    assert json.loads(store.path.read_text())["schema_version"] == SCHEMA_VERSION == 2
    assert [p.name for p in tmp_path.iterdir()] == [store.path.name]  # no temp files left


def test_atomic_write_keeps_old_content_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    results.atomic_write(target, "old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(UserError, match="No space left on device"):
        results.atomic_write(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def good_doc() -> dict:
    rec = record("pytorch", "resnet18", train(0.1, 0.2, 0.05), device="cpu")
    return {"schema": "pybench.results", "schema_version": 2, "created": "", "command": [],
            "environment": {}, "records": [rec.to_json()]}


def mutate(path: list, value):
    doc = good_doc()
    target = doc["records"][0]
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(doc)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"hello": 1}', "not a pybench results file"),
        ('[1, 2]', "not a pybench results file"),
        ('{"schema": "pybench.results", "schema_version": 99, "environment": {}, "records": []}', "schema version 99"),
        ('{"schema": "pybench.results", "schema_version": 2, "environment": {}, "records": [{"status": "ok"}]}',
         "malformed record in .*: record #1.spec is missing"),
        (mutate(["status"], None), r"record #1.status: expected str, got NoneType"),
        (mutate(["status"], "great"), "unknown status 'great'"),
        (mutate(["rounds"], KeyError), r"record #1.rounds is missing"),
        (mutate(["rounds", 0, "phases", "forward", "samples"], [0.1, -1]), r"samples\[1\]: -1 is out of range"),
        (mutate(["rounds", 0, "phases", "forward", "samples"], [0.0]), r"samples\[0\]: 0 is out of range"),
        (mutate(["rounds", 0, "phases", "forward", "samples"], ["x"]), r"samples\[0\]: expected a number, got str"),
        (mutate(["rounds", 0, "phases", "forward", "samples"], []), "samples is empty"),
        (mutate(["rounds", 0, "phases", "forward", "first_run"], None), "first_run: expected int or float"),
        (mutate(["rounds", 0, "phases", "warp"], {}), "unknown phase"),
        (mutate(["spec", "batch_size"], "eight"), "record #1.spec"),
        (mutate(["spec", "model"], "lenet"), "unknown model"),
        (mutate(["workload"], {"params": True}), "params: expected int, got bool"),
        ('{"schema": "pybench.results", "schema_version": 2, "environment": {}, "records": '
         + "[" * 100000 + "]" * 100000 + "}", "nested too deeply|malformed"),
    ],
)
def test_corrupt_or_foreign_files_are_one_clear_line(tmp_path, content, message):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(UserError, match=message) as exc:
        results.load(f)
    assert "\n" not in str(exc.value)


def test_version_1_files_load_through_the_migration():
    files = sorted((ROOT / "results").glob("*.json")) + [ROOT / "tests" / "data" / "results-v1-layers.json"]
    for path in files:
        if json.loads(path.read_text())["schema_version"] != 1:
            continue
        raw = json.loads(path.read_text())
        assert raw["schema_version"] == 1
        doc = results.load(path)
        assert doc.records and all(isinstance(r, CellRecord) for r in doc.records)
        ok = [r for r in doc.records if r.ok]
        first = next(r for r in raw["records"] if r["status"] == "ok")
        mine = next(r for r in ok if r.spec.model == first["spec"]["model"]
                    and r.spec.framework == first["spec"]["framework"])
        assert len(mine.rounds) == 1
        assert mine.samples("forward") == [first["phases"]["forward"]["samples"]]
        assert mine.estimate("forward", "median").value == pytest.approx(first["phases"]["forward"]["stats"]["median"])
        assert mine.key.label == raw["environment"]["label"] and mine.key.device_name == raw["environment"]["cpu"]
        again = CellRecord.from_json(copy.deepcopy(mine.to_json()))
        assert again.to_json() == mine.to_json()


def test_unwritable_results_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="not writable"):
        results.ensure_writable(blocker / "sub")


def test_collect_expands_folders(tmp_path):
    store = results.ResultsFile.create(tmp_path, {}, [])
    store.add(record("pytorch", "resnet18", train(0.1, 0.2, 0.05), device="cpu"))
    assert len(results.collect([tmp_path])) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no results files"):
        results.collect([tmp_path / "empty"])
    with pytest.raises(UserError, match="no such file"):
        results.collect([tmp_path / "missing.json"])
