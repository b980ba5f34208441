"""Results files: atomic writes, validation of what is loaded."""

import json
import os

import pytest

from pybench import results
from pybench.errors import UserError


def ok_record():
    return {
        "spec": {"framework": "pytorch", "model": "resnet18", "device": "cpu"},
        "status": "ok",
        "phases": {"forward": {"stats": {"median": 0.01}}},
    }


def test_file_grows_by_one_record_per_cell_and_round_trips(tmp_path):
    store = results.ResultsFile.create(tmp_path, {"label": "my box"}, ["pybench", "run"])
    assert store.path.name.startswith("my-box-")
    assert not store.path.exists()  # nothing is written before the first cell finishes
    store.add(ok_record())
    assert len(results.load(store.path)["records"]) == 1
    store.add({"spec": ok_record()["spec"], "status": "failed", "error": "boom"})
    data = results.load(store.path)
    assert [r["status"] for r in data["records"]] == ["ok", "failed"]
    assert data["schema_version"] == results.SCHEMA_VERSION
    assert [p.name for p in tmp_path.iterdir()] == [store.path.name]  # no temp files left


def test_atomic_write_keeps_old_content_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    results.atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        results.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"hello": 1}', "not a pybench results file"),
        ('[1, 2]', "not a pybench results file"),
        ('{"schema": "pybench.results", "schema_version": 99, "environment": {}, "records": []}', "schema version 99"),
        ('{"schema": "pybench.results", "schema_version": 1, "environment": {}, "records": [{"status": "ok"}]}', "malformed record #1"),
    ],
)
def test_corrupt_or_foreign_files_are_rejected_clearly(tmp_path, content, message):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(UserError, match=message):
        results.load(f)


def test_unwritable_results_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="not writable"):
        results.ensure_writable(blocker / "sub")


def test_collect_expands_folders(tmp_path):
    store = results.ResultsFile.create(tmp_path, {}, [])
    store.add(ok_record())
    assert len(results.collect([tmp_path])) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no results files"):
        results.collect([tmp_path / "empty"])
    with pytest.raises(UserError, match="no such results file"):
        results.collect([tmp_path / "missing.json"])
    assert json.loads(store.path.read_text())["schema"] == results.SCHEMA
