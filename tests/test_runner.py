"""Real worker processes: a good one, one that fails, crashes, is killed, hangs or talks nonsense."""

import sys
import time

from pybench.runner import run_cell
from pybench.spec import CellSpec, StopRule

FAST = StopRule(precision=0.5, min_samples=5, max_samples=8, max_time=5)


def spec(**kw):
    base = dict(framework="pytorch", model="resnet18", device="cpu", batch_size=2, image_size=64,
                threads=1, stop=FAST)
    base.update(kw)
    return CellSpec(**base)


def py(code):
    return [sys.executable, "-c", code]


def test_real_worker_measures_resnet18():
    rec = run_cell(spec())
    assert rec["status"] == "ok", rec.get("error")
    assert rec["workload"]["params"] == 11_689_512
    assert set(rec["phases"]) == {"forward", "backward", "total", "inference"}
    fwd = rec["phases"]["forward"]
    assert fwd["stats"]["n"] == len(fwd["samples"]) >= 1
    assert fwd["first_run"] > 0
    assert rec["framework_env"]["threads"] == 1
    assert rec["framework_env"]["version"].startswith("2.")


def test_framework_exception_becomes_a_failed_record():
    rec = run_cell(spec(device="cuda:0"))  # no CUDA here: torch raises inside the worker
    assert rec["status"] == "failed"
    assert "\n" not in rec["error"] and rec["error"]


def test_crashing_worker():
    rec = run_cell(spec(), command=py("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"))
    assert rec["status"] == "failed"
    assert "SIGSEGV" in rec["error"]


def test_killed_worker_suggests_out_of_memory():
    rec = run_cell(spec(), command=py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert rec["status"] == "failed"
    assert "SIGKILL" in rec["error"] and "out of memory" in rec["error"]


def test_worker_exiting_with_error_keeps_its_last_words():
    rec = run_cell(spec(), command=py("import sys; sys.exit('CUDA error: out of memory')"))
    assert rec["status"] == "failed"
    assert rec["error"] == "worker exited with code 1: CUDA error: out of memory"


def test_hanging_worker_is_killed_with_its_children():
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"
    t0 = time.monotonic()
    rec = run_cell(spec(), timeout=2, command=py(code))
    assert time.monotonic() - t0 < 10
    assert rec["status"] == "failed"
    assert rec["error"].startswith("timed out after 2 s")


def test_worker_printing_garbage():
    rec = run_cell(spec(), command=py("print('hello from a confused worker')"))
    assert rec["status"] == "failed"
    assert rec["error"] == "worker returned no valid JSON record"
