"""Flux where Julia is missing: a clear one-line reason, nothing imports torch or starts Julia, and the
Python half of the juliacall contract works on what juliacall hands back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pybench.backends import get_framework
from pybench.backends.flux import julia_env
from pybench.backends.flux.backend import JuliaLoopSampler
from pybench.errors import UserError
from pybench.rounds.runner import run_cell
from pybench.records.spec import CellSpec, StopRule

ROOT = Path(__file__).resolve().parent.parent
FLUX = get_framework("flux")


def fresh_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_availability_here_is_one_line_with_a_fix():
    a = FLUX.availability()
    if a.ok:
        pytest.skip("Julia and the Flux environment are set up here")
    assert a.reason and "\n" not in a.reason
    assert "pip install" in a.reason or "setup-julia" in a.reason


@pytest.mark.parametrize("module", ["pybench.backends.flux", "pybench.backends.flux.backend",
                                    "pybench.backends.flux.parity", "pybench.backends.flux.julia_env"])
def test_flux_side_modules_import_neither_torch_nor_juliacall(module):
    p = fresh_python(
        f"import sys, {module}; bad = [m for m in ('torch', 'juliacall') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.fixture
def fake_setup(tmp_path, monkeypatch):
    """A project dir and a PATH/depot that pybench can be pointed at, step by step."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "Project.toml").write_text((ROOT / "Project.toml").read_text())
    monkeypatch.setattr(julia_env, "PROJECT", project)
    monkeypatch.setattr(julia_env.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(julia_env.importlib.metadata, "version", lambda name: julia_env.pinned_pythoncall())
    for var in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE", "PYTHON_JULIAPKG_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(julia_env.sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setenv("JULIA_DEPOT_PATH", str(tmp_path / "depot"))
    return tmp_path


def add_julia(root: Path) -> Path:
    exe = root / "bin" / "julia"
    exe.parent.mkdir(exist_ok=True)
    # Answers `--version` alone, as Julia does before its runtime starts: the check starts no Julia.
    exe.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "julia version 1.11.5" && exit 0\nexit 1\n')
    exe.chmod(0o755)
    return exe


def add_manifest(project: Path, pythoncall: str) -> None:
    blocks = [f'[[deps.{p}]]\nuuid = "x"\nversion = "{pythoncall if p == "PythonCall" else "1.0.0"}"\n'
              for p in julia_env.PACKAGES]
    (project / "Manifest.toml").write_text('julia_version = "1.10.5"\nmanifest_format = "2.0"\n\n' + "\n".join(blocks))


def test_each_missing_piece_has_its_reason(fake_setup):
    root = fake_setup
    a = julia_env.flux_availability()
    assert not a.ok and "no Julia executable" in a.reason and "setup-julia" in a.reason

    exe = add_julia(root)
    assert julia_env.find_julia() == str(exe)
    a = julia_env.flux_availability()
    assert not a.ok and "Manifest.toml" in a.reason

    add_manifest(root / "project", "0.0.1")
    a = julia_env.flux_availability()
    assert not a.ok and "PythonCall 0.0.1" in a.reason

    add_manifest(root / "project", julia_env.pinned_pythoncall())
    a = julia_env.flux_availability()
    assert not a.ok and "missing from the depot" in a.reason

    for p in julia_env.PACKAGES:
        (root / "depot" / "packages" / p / "abcde").mkdir(parents=True)
    assert julia_env.flux_availability().ok


def test_juliapkg_install_dir_and_override_are_honoured(fake_setup, monkeypatch):
    root = fake_setup
    installed = root / "project" / "pyjuliapkg" / "install" / "bin" / "julia"
    add_julia(root).rename(root / "elsewhere")
    installed.parent.mkdir(parents=True)
    (root / "elsewhere").rename(installed)
    assert julia_env.find_julia() == str(installed)
    monkeypatch.setenv("PYTHON_JULIACALL_EXE", str(installed))
    assert julia_env.find_julia() == str(installed)


def test_mismatched_juliacall_is_reported(fake_setup, monkeypatch):
    monkeypatch.setattr(julia_env.importlib.metadata, "version", lambda name: "0.9.1")
    a = julia_env.flux_availability()
    assert not a.ok and "juliacall 0.9.1" in a.reason and "pip install" in a.reason


def test_worker_env_configures_juliacall(fake_setup):
    exe = add_julia(fake_setup)
    env = FLUX.worker_env(CellSpec("flux", "resnet18", "cpu", 2, 64, threads=3))
    # One Julia thread, all the BLAS threads: NNlib's convolutions would oversubscribe both.
    assert env["PYTHON_JULIACALL_THREADS"] == "1" and env["OPENBLAS_NUM_THREADS"] == "3"
    assert env["PYTHON_JULIACALL_HANDLE_SIGNALS"] == "yes"
    assert env["PYTHON_JULIAPKG_OFFLINE"] == "yes" and env["JULIA_PKG_OFFLINE"] == "true"
    # juliacall only skips juliapkg when both are set.
    assert env["PYTHON_JULIACALL_EXE"] == str(exe)
    assert env["PYTHON_JULIACALL_PROJECT"] == str(fake_setup / "project")
    assert env["PYBENCH_PRELOAD"] == "juliacall"  # the worker imports it before numpy
    assert "NVIDIA_TF32_OVERRIDE" not in env  # CPU


@pytest.mark.parametrize("tf32,override", [(False, "0"), (True, None)])
def test_cuda_worker_keeps_fp32_unless_tf32(fake_setup, tf32, override):
    env = FLUX.worker_env(CellSpec("flux", "resnet18", "cuda:0", 2, 64, threads=1, tf32=tf32))
    assert env.get("NVIDIA_TF32_OVERRIDE") == override


def test_frameworks_without_native_runtime_preload_nothing():
    env = get_framework("pytorch").worker_env(CellSpec("pytorch", "resnet18", "cpu", 2, 64, threads=2))
    assert "PYBENCH_PRELOAD" not in env


class FakeJuliaAPI:
    """What juliacall hands back from PyBench.sample: a Mapping of str to Julia vectors, iterable as
    Python ints (here numpy ints, which a plain int() must also take); records the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def sample(self, bench, group, n):
        self.calls.append(("sample", bench, group, n))
        return {"forward": np.array([5, 7][:n], dtype=np.int64), "backward": (11, 13)[:n]}

    def finish(self, bench, group):
        self.calls.append(("finish", bench, group))


def test_julia_loop_sampler_converts_julia_columns_to_python():
    api = FakeJuliaAPI()
    sampler = JuliaLoopSampler(api, bench="B")
    got = sampler.sample("train", 2)
    assert got == {"forward": [5, 7], "backward": [11, 13]}
    assert all(type(v) is int for col in got.values() for v in col)  # JSON-ready, not numpy
    sampler.finish("train")
    assert api.calls == [("sample", "B", "train", 2), ("finish", "B", "train")]


def test_worker_without_julia_fails_in_one_line():
    if FLUX.availability().ok:
        pytest.skip("Julia and the Flux environment are set up here")
    spec = CellSpec("flux", "resnet18", "cpu", 2, 64, threads=1, stop=StopRule(max_time=5))
    rec = run_cell(spec, timeout=120)
    assert rec.status == "failed"
    assert rec.error and "\n" not in rec.error


def test_parity_without_flux_is_a_user_error():
    if FLUX.availability().ok:
        pytest.skip("Julia and the Flux environment are set up here")
    from pybench.backends.flux.parity import run_parity

    with pytest.raises(UserError, match="flux unavailable"):
        run_parity("resnet18", 64, 2, "cpu")


def test_setup_julia_without_juliacall_says_how(monkeypatch, capsys):
    monkeypatch.setattr(julia_env.importlib.util, "find_spec", lambda name: None)
    assert julia_env.setup_julia() == 1
    assert "pip install" in capsys.readouterr().err


def test_pyproject_pins_the_juliacall_that_matches_pythoncall():
    text = (ROOT / "pyproject.toml").read_text()
    assert f'"juliacall=={julia_env.pinned_pythoncall()}"' in text
    assert os.path.isfile(julia_env.JULIA_DIR / "PyBench.jl")
