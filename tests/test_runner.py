"""Real worker processes: a good one, one that fails, crashes, is killed, hangs or talks nonsense."""

import sys
import time

from pybench.runner import run_cell
from pybench.protocol import StopRule
from pybench.spec import CellSpec

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
    assert rec.ok, rec.error
    assert rec.workload.params == 11_689_512
    assert rec.phase_names == ["forward", "backward", "total", "inference", "step"]
    (fwd,) = rec.samples("forward")
    assert len(fwd) >= 1 and rec.first_run("forward") > 0
    assert rec.framework_env["threads"] == 1 and rec.framework_env["cores"] and len(rec.framework_env["cores"]) == 1
    assert rec.title.startswith("PyTorch 2.")
    assert set(rec.rounds[0].memory) == {"train", "step", "inference"}


def test_framework_exception_becomes_a_failed_record():
    # The real worker, with a framework that raises a two-line error while preparing.
    code = ("import sys, json; from pybench.spec import CellSpec; from pybench.worker import run_round; "
            "from pybench.backends.pytorch import backend as b; "
            "b.PyTorchBackend.prepare = lambda self: (_ for _ in ()).throw(RuntimeError('no device\\nmore')); "
            "print(json.dumps(run_round(CellSpec.from_json(json.load(sys.stdin))).to_json()))")
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


# --- the matrix: rounds, order, skipped cells, save first ------------------------------------------

from pybench import runner  # noqa: E402
from pybench.protocol import PhaseSamples  # noqa: E402
from pybench.records import CellRecord, Round, WorkloadFacts  # noqa: E402
from pybench.results import ResultsFile, load  # noqa: E402


class Script:
    """Measures a round instantly with fixed samples, remembering the order it was asked in."""

    def __init__(self, fail: set = frozenset(), spread: float = 0.0):
        self.calls, self.fail, self.spread = [], fail, spread

    def __call__(self, spec, timeout, cache_dir):
        assert cache_dir.is_dir()  # one folder for the whole matrix
        self.calls.append((spec.framework, spec.model))
        if (spec.framework, spec.model, len([c for c in self.calls if c == self.calls[-1]])) in self.fail:
            return runner.failed_record(spec, "boom")
        k = len(self.calls)
        samples = [0.01 * (1 + self.spread * (k % 3))] * 8
        return CellRecord(spec=spec, status="ok", title="X 1", workload=WorkloadFacts(params=1),
                          rounds=[Round(phases={p: PhaseSamples(0.1, [], samples, "converged")
                                                for p in spec.phases})])


def matrix_specs(frameworks=("pytorch", "flux"), models=("resnet18", "resnet34")):
    return [CellSpec(fw, m, "cpu", 2, 64, threads=1, phases=("forward", "backward", "total"))
            for m in models for fw in frameworks]


def test_rounds_go_round_robin_with_frameworks_alternating(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.get_framework("flux"), "availability",
                        lambda: runner.get_framework("pytorch").availability())
    script = Script(spread=0.5)  # never precise: every round runs
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    records = runner.run_matrix(matrix_specs(), store, rounds=3, run_one=script, peak_gflops=1.0)
    assert script.calls == [
        ("pytorch", "resnet18"), ("flux", "resnet18"), ("pytorch", "resnet34"), ("flux", "resnet34"),
        ("flux", "resnet18"), ("pytorch", "resnet18"), ("flux", "resnet34"), ("pytorch", "resnet34"),
        ("pytorch", "resnet18"), ("flux", "resnet18"), ("pytorch", "resnet34"), ("flux", "resnet34"),
    ]
    assert [len(r.rounds) for r in records] == [3, 3, 3, 3]
    saved = load(store.path)
    assert [len(r.rounds) for r in saved.records] == [3, 3, 3, 3]
    assert "noise" in saved.environment


def test_precise_cells_stop_after_two_rounds(tmp_path):
    script = Script()  # identical rounds: precise at once
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    records = runner.run_matrix(matrix_specs(frameworks=("pytorch",)), store, rounds=5, run_one=script)
    assert [len(r.rounds) for r in records] == [2, 2]


def test_unavailable_frameworks_are_skipped_and_failed_rounds_keep_the_rest(tmp_path):
    script = Script(fail={("pytorch", "resnet34", 1), ("pytorch", "resnet18", 2)}, spread=0.5)
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    records = runner.run_matrix(matrix_specs(), store, rounds=3, run_one=script)
    by = {(r.spec.framework, r.spec.model): r for r in records}
    assert by[("flux", "resnet18")].status == "skipped" and "flux unavailable" in by[("flux", "resnet18")].error
    assert by[("pytorch", "resnet34")].status == "failed"  # failed in round 1: not tried again
    assert script.calls.count(("pytorch", "resnet34")) == 1
    kept = by[("pytorch", "resnet18")]
    assert kept.ok and len(kept.rounds) == 2 and kept.warnings == ["round 2 failed: boom"]
    assert ("flux", "resnet18") not in script.calls


def test_the_record_is_saved_before_anything_derived(tmp_path, monkeypatch):
    def broken(record, peak):
        raise AssertionError("annotate must not run before the record is on disk")

    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    saved = []
    original = store.add
    monkeypatch.setattr(store, "add", lambda r: (original(r), saved.append(load(store.path))))
    monkeypatch.setattr(runner.efficiency, "forward_flops", lambda m, s: (_ for _ in ()).throw(ValueError("x")))
    records = runner.run_matrix(matrix_specs(frameworks=("pytorch",), models=("resnet18",)), store,
                                rounds=1, run_one=Script())
    assert saved and saved[0].records[0].ok  # on disk before FLOPs were attempted
    assert records[0].ok and records[0].warnings == ["FLOPs not counted: ValueError: x"]
    assert load(store.path).records[0].warnings == ["FLOPs not counted: ValueError: x"]
