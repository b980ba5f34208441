"""Real worker processes: a good one, one that fails, crashes, is killed, hangs or talks nonsense."""

import sys
import time

import pytest

from pybench.machine.malloc import KEEP
from pybench.rounds.runner import run_cell
from pybench.protocol.group import StopRule
from pybench.records.spec import CellSpec

FAST = StopRule(precision=0.5, min_samples=5, max_samples=8, max_time=5)


def spec(**kw):
    base = dict(framework="pytorch", model="resnet18", device="cpu", batch_size=2, image_size=64,
                threads=1, stop=FAST)
    base.update(kw)
    return CellSpec(**base)


def py(code):
    return [sys.executable, "-c", code]


@pytest.mark.slow
def test_real_worker_measures_resnet18():
    rec = run_cell(spec(malloc="keep"))
    assert rec.ok, rec.error
    assert rec.framework_env["allocator"]["tunables"].startswith(KEEP)  # the setting reached the worker
    assert rec.workload.params == 11_689_512
    assert rec.phase_names == ["forward", "backward", "total", "inference", "step"]
    (fwd,) = rec.samples("forward")
    assert len(fwd) >= 1 and rec.first_run("forward") > 0
    assert rec.framework_env["threads"] == 1 and rec.framework_env["cores"] and len(rec.framework_env["cores"]) == 1
    assert rec.title.startswith("PyTorch 2.")
    assert set(rec.rounds[0].memory) == {"train", "step", "inference"}


@pytest.mark.slow
def test_framework_exception_becomes_a_failed_record():
    # The real worker, with a framework that raises a two-line error while preparing.
    code = ("import sys, json; from pybench.records.spec import CellSpec; from pybench.rounds.worker import run_round; "
            "from pybench.backends.pytorch import backend as b; "
            "b.PyTorchBackend.prepare = lambda self: (_ for _ in ()).throw(RuntimeError('no device\\nmore')); "
            "print(json.dumps(run_round(CellSpec.from_json(json.load(sys.stdin)['spec'])).to_json()))")
    rec = run_cell(spec(), command=py(code))
    assert rec.status == "failed"
    assert rec.error == "RuntimeError: no device"


def test_crashing_worker():
    rec = run_cell(spec(), command=py("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"))
    assert rec.status == "failed"
    assert "SIGSEGV" in rec.error


def test_killed_worker_suggests_out_of_memory():
    rec = run_cell(spec(), command=py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert rec.status == "failed"
    assert "SIGKILL" in rec.error and "out of memory" in rec.error


def test_worker_exiting_with_error_keeps_its_last_words():
    rec = run_cell(spec(), command=py("import sys; sys.exit('CUDA error: out of memory')"))
    assert rec.status == "failed"
    assert rec.error == "worker exited with code 1: CUDA error: out of memory"


@pytest.mark.slow
def test_hanging_worker_is_killed_with_its_children():
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"
    t0 = time.monotonic()
    rec = run_cell(spec(), timeout=2, command=py(code))
    assert time.monotonic() - t0 < 10
    assert rec.status == "failed"
    assert rec.error.startswith("timed out after 2 s")


def test_worker_printing_garbage():
    rec = run_cell(spec(), command=py("print('hello from a confused worker')"))
    assert rec.status == "failed"
    assert rec.error == "worker returned no valid JSON record"
