"""The command line end to end, in subprocesses, as a user runs it."""

import importlib.util
import json
import subprocess
import sys

import pytest

from pybench.records import results
from pybench.backends.flux import FRAMEWORK as FLUX
from pybench.machine.devices import visible_gpus
from processes import children, cmdline, pybench, running, wait_for

# What this machine has decides what some commands do (a GPU turns `--device cuda` into a run).
HAS_GPU = bool(visible_gpus())
HAS_JULIACALL = importlib.util.find_spec("juliacall") is not None

SMALL = ["--device", "cpu", "--batch-size", "2", "--image-size", "64", "--threads", "1", "--rounds", "1",
         "--max-time", "3", "--precision", "0.2"]


@pytest.mark.slow
def test_run_writes_a_valid_results_file_and_a_summary(tmp_path):
    p = pybench("run", "--framework", "pytorch", "--model", "resnet18", *SMALL,
                "--label", "ci box", "--results", tmp_path)
    assert p.returncode == 0, p.stderr
    (path,) = tmp_path.glob("*.json")
    data = results.load(path)
    env = data.environment
    assert env["label"] == "ci box" and env["threads"] == 1 and env["cpu"]
    assert env["packages"]["torch"] and "memory_bytes" in env and "gpus" in env
    assert env["noise"]["load_avg"] is not None
    (rec,) = data.records
    assert rec.ok and rec.spec.model == "resnet18" and rec.key.label == "ci box"
    assert rec.workload.params == 11_689_512
    # resnet18 at 64x64: 148,557,824 multiply-adds per image (tests/test_efficiency.py derives it).
    assert rec.workload.flops_forward == 2 * 2 * 148_557_824
    assert rec.peak.gflops > 0 and not rec.warnings
    assert "Resnet18" in p.stdout and "PyTorch 2." in p.stdout


@pytest.mark.slow
@pytest.mark.skipif(FLUX.availability().ok, reason="Flux is set up here: nothing to explain")
def test_compare_runs_pytorch_and_explains_flux(tmp_path):
    p = pybench("compare", "--model", "resnet18", *SMALL, "--results", tmp_path)
    assert p.returncode == 0, p.stderr
    (path,) = tmp_path.glob("*.json")
    by_fw = {r.spec.framework: r for r in results.load(path).records}
    assert by_fw["pytorch"].ok
    assert by_fw["flux"].status == "skipped"
    assert "flux unavailable" in by_fw["flux"].error
    assert "juliacall" in by_fw["flux"].error or "Julia" in by_fw["flux"].error


@pytest.mark.slow
def test_list_and_env():
    p = pybench("list")
    assert p.returncode == 0, p.stderr
    assert "138,357,544" in p.stdout and "resnet152" in p.stdout  # vgg16's parameter count
    if not HAS_JULIACALL:
        assert "juliacall is not installed: pip install -e '.[flux]'" in p.stdout  # the fix, verbatim
    assert "conv3x3_s1" in p.stdout and "1,792" in p.stdout  # the per-layer suite too
    p = pybench("env", "--label", "x")
    assert p.returncode == 0, p.stderr
    assert '"label": "x"' in p.stdout


@pytest.mark.slow
def test_report_of_a_run(tmp_path):
    assert pybench("run", "--framework", "pytorch", "--model", "resnet18", *SMALL,
                   "--results", tmp_path).returncode == 0
    p = pybench("report", tmp_path)
    assert p.returncode == 0, p.stderr
    assert "## CPU USED ---" in p.stdout
    assert "|Model|Framework|Forward Pass|Backward Pass|Total Time|Inference|" in p.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--model", "resnet9"], "unknown model 'resnet9'; valid: all, layers, vgg16"),
        (["run", "--framework", "tensorflow"], "unknown framework 'tensorflow'; valid: pytorch, jax, flux, all"),
        (["run", "--batch-size", "0"], "must be positive"),
        (["run", "--image-size", "-3"], "must be positive"),
        (["run", "--model", "resnet18", "--image-size", "16"], "too small for resnet18"),
        pytest.param(["run", "--device", "cuda"], "no CUDA GPU",
                     marks=pytest.mark.skipif(HAS_GPU, reason="a GPU is visible here")),
        (["run", "--device", "tpu"], "bad device 'tpu'"),
        (["run", "--dtype", "int8"], "invalid choice"),
        (["run", "--max-time", "nan"], "must be a finite number"),
        (["run", "--max-time", "inf"], "must be a finite number"),
        (["run", "--timeout", "nan"], "must be a finite number"),
        (["run", "--precision", "nan"], "must be a finite number"),
        (["run", "--peak-gflops", "nan"], "must be a finite number"),
        (["run", "--seed", "-1"], "must be at least 0"),
        (["run", "--min-samples", "20", "--max-samples", "10"], "--min-samples 20 is above --max-samples 10"),
        (["run", "--threads", "1000"], "more than the"),
        (["run", "--device", "cuda:-1"], "bad device index -1"),
        (["run", "--label", ""], "labels are 1 to 100 printable characters"),
        (["run", "--label", "x" * 101], "labels are 1 to 100 printable characters"),
        (["run", "--label", "a\nb"], "labels are 1 to 100 printable characters"),
        (["run", "--rounds", "0"], "must be positive"),
        pytest.param(["run", "--framework", "flux", "--model", "resnet18", "--device", "cpu"],
                     "nothing could be measured: flux unavailable",
                     marks=pytest.mark.skipif(FLUX.availability().ok, reason="Flux is set up here")),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    p = pybench(*args, "--results", tmp_path / "r") if args[0] == "run" else pybench(*args)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("pybench: error: "), p.stderr
    assert message in p.stderr
    assert not (tmp_path / "r").exists()


def test_results_must_name_a_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for target, message in ((blocker, "is not a folder"), ("", "must not be empty")):
        p = pybench("run", "--model", "resnet18", *SMALL, "--results", target)
        assert p.returncode == 2 and message in p.stderr and p.stderr.count("\n") == 1


def test_unwritable_results_path_is_caught_before_any_cell(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    p = pybench("run", "--model", "resnet18", *SMALL, "--results", blocker / "r")
    assert p.returncode == 2 and "not writable" in p.stderr
    assert p.stderr.count("\n") == 1


def test_report_rejects_a_malformed_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "something else"}))
    p = pybench("report", bad)
    assert p.returncode == 2
    assert p.stderr == f"pybench: error: {bad}: not a pybench results file (no 'pybench.results' schema tag)\n"


@pytest.mark.slow
def test_ctrl_c_keeps_finished_cells_and_kills_the_worker(tmp_path):
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "pybench", "run", "--framework", "pytorch", "--model", "resnet18",
         "resnet34", *SMALL[:-4], "--max-time", "8", "--precision", "0.0001", "--results", tmp_path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    files = []

    def first_cell_saved() -> bool:  # the file exists from the start; its first record comes later
        files[:] = list(tmp_path.glob("*.json"))
        return proc.poll() is not None or (len(files) == 1 and bool(results.load(files[0]).records))

    def workers() -> list[int]:
        return [c for c in children(proc.pid) if "pybench.rounds.worker" in cmdline(c)]

    assert wait_for(first_cell_saved, 240, step=0.5) and proc.poll() is None, "first cell never finished"
    assert wait_for(lambda: workers() or proc.poll() is not None, 120), "no second worker"
    second = workers()
    time.sleep(1)  # the second cell's worker is starting or measuring
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err and "1 cell(s) kept in" in err and "Traceback" not in err
    (path,) = files
    records = results.load(path).records
    assert [r.spec.model for r in records] == ["resnet18"]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    assert wait_for(lambda: not any(map(running, second)), 10), f"worker still running: {second}"
