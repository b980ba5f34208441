"""Variants under another Python interpreter, with real venvs and real workers (tiny cells)."""

import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from pybench.records import results

TINY = ["--model", "dense1024_512", "--device", "cpu", "--batch-size", "2", "--threads", "1", "--rounds", "1",
        "--max-time", "0.2", "--precision", "0.5"]
ROOT = Path(__file__).resolve().parent.parent


def pybench(*args, cwd):
    # PYTHONPATH names this checkout (as CI and the helpers run it): the other interpreter must not see it.
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pybench", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env=env)


def make_venv(path: Path, see_packages: bool) -> Path:
    """A venv without pip; with `see_packages`, a .pth file shows it this interpreter's
    site-packages (torch, numpy...) but not pybench, whose editable finder lives in a .pth there,
    and a .pth line only adds a folder, never runs the .pth files inside it."""
    venv.EnvBuilder(with_pip=False).create(path)
    python = path / "bin" / "python"
    if see_packages:
        purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        Path(purelib, "first.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


@pytest.fixture(scope="module")
def other_python(tmp_path_factory):
    python = make_venv(tmp_path_factory.mktemp("venv") / "other", see_packages=True)
    check = subprocess.run([python, "-c", "import importlib.util as u; print(u.find_spec('torch') is not None, "
                                          "u.find_spec('pybench') is None)"],
                           capture_output=True, text=True, cwd="/", env={"PATH": os.environ["PATH"]})
    assert check.stdout.split() == ["True", "True"], check.stderr
    return python


@pytest.mark.slow
def test_a_variant_runs_under_another_interpreter_without_pybench(other_python, tmp_path):
    p = pybench("compare", *TINY, "--variant", "here=pytorch", "--variant", f"there=pytorch@{other_python}",
                "--results", tmp_path / "r", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (path,) = (tmp_path / "r").glob("*.json")
    here, there = results.load(path).records
    assert here.ok and there.ok, there.error
    assert there.spec.interpreter == str(other_python) and here.spec.interpreter == ""
    assert there.key != here.key and there.key.cell == here.key.cell
    python = there.framework_env["python"]
    assert python["executable"] == str(other_python)
    assert python["packages"]["torch"] in there.title  # the version it listed is the one it ran
    assert here.framework_env["python"]["executable"] == sys.executable
    assert "(there, 1 thread)" in p.stdout and "(here, 1 thread)" in p.stdout


def test_an_interpreter_without_the_framework_is_one_line_exit_2(tmp_path):
    bare = make_venv(tmp_path / "bare", see_packages=False)
    p = pybench("compare", *TINY, "--variant", "a=pytorch", "--variant", f"b=pytorch@{bare}",
                "--results", tmp_path / "r", cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1, p.stderr
    assert f"variant b: {bare} lacks numpy and torch and torchvision" in p.stderr
    assert not (tmp_path / "r").exists()


def test_a_path_that_is_no_python_is_one_line_exit_2(tmp_path):
    p = pybench("compare", *TINY, "--variant", f"b=pytorch@{tmp_path / 'nothing'}", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "does not run as a Python interpreter" in p.stderr


BLOCKED = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"scipy", "rich", "matplotlib", "pynvml"}:
            raise ModuleNotFoundError(name, name=name)
sys.meta_path.insert(0, Block())
from pybench.protocol.group import StopRule
from pybench.records.spec import CellSpec
from pybench.rounds.worker import run_round
spec = CellSpec(framework="pytorch", model="dense1024_512", device="cpu", batch_size=2, image_size=224,
                threads=1, stop=StopRule(max_time=0.2))
record = run_round(spec)
print(json.dumps({"status": record.status, "error": record.error, "json": bool(record.to_json(summary=False))}))
"""


@pytest.mark.slow
def test_the_worker_needs_only_the_stdlib_numpy_and_its_framework():
    # pybench's other dependencies made unimportable: a whole round still measures and serialises.
    p = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert json.loads(p.stdout.splitlines()[-1]) == {"status": "ok", "error": None, "json": True}, p.stderr
