"""The benchmark scripts, cheaply: every one parses its options, and their pure parts (calibration,
loading rounds, ratios, interleaving, the time-to-result summary) on synthetic records.  Nothing here
runs a model or measures a time."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from factories import record, train
from pybench.records import results
from pybench.protocol.sampling import Loop, PythonLoopSampler

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))  # the scripts import their helper beside them, as when run

import bench_calibration  # noqa: E402
import bench_fidelity  # noqa: E402
import bench_first_run  # noqa: E402
import bench_decided  # noqa: E402
import bench_time_to_result  # noqa: E402

BENCH = ("bench_fidelity", "bench_overhead", "bench_time_to_result", "bench_calibration", "bench_decided", "bench_lockstep",
         "bench_diff_false_positives", "bench_first_run", "bench_jax_cpu_variants",
         "bench_slurm_dispatch")


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCH)
def test_every_script_explains_itself(name):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py"), "--help"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:")


def test_fidelity_rejects_an_image_too_small_in_one_line():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(SCRIPTS / "bench_fidelity.py"), "--framework", "pytorch",
                          "--image-size", "16"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "too small" in out.stderr and "Traceback" not in out.stderr


def test_calibration_counts_intervals_that_contain_the_other_runs_estimate():
    steady = [[1.00], [1.02], [0.98]]
    run_a = {"same": steady, "moved": steady, "one round": [[1.0]]}
    run_b = {"same": [[1.01], [0.99], [1.00]], "moved": [[2.0], [2.02], [1.98]], "one round": [[1.0]],
             "only in b": steady}
    c = bench_calibration.calibration(run_a, run_b)
    assert c.phases == 2  # one round promises nothing; a phase in one run only is not compared
    assert c.a_contains_b == c.b_contains_a == 0.5
    assert c.missed == ["moved"]


def test_load_rounds_reads_every_round_of_the_typed_records(tmp_path):
    rounds = [{"forward": [0.10, 0.11, 0.12], "inference": [0.05, 0.06]},
              {"forward": [0.13, 0.14], "inference": [0.07]}]
    ok = record("pytorch", "resnet18", rounds=rounds, device="cpu")
    store = results.ResultsFile(tmp_path / "run.json", {"label": "box"}, ["pybench", "run"])
    store.add(ok)
    store.add(record("jax", "resnet18", error="boom", device="cpu"))
    loaded = bench_calibration.load_rounds([tmp_path])
    assert loaded == {(ok.key, "forward"): [[0.10, 0.11, 0.12], [0.13, 0.14]],
                      (ok.key, "inference"): [[0.05, 0.06], [0.07]]}


class Hand:
    def __init__(self, log):
        self.log = log
        self.times = {}

    def iteration(self, group):
        self.log.append(("hand", group))


def test_fidelity_runs_one_hand_iteration_right_before_each_harness_sample():
    log = []
    step = lambda name: lambda: log.append(("harness", name))  # noqa: E731
    loops = {"train": Loop(phases=(("forward", step("forward")), ("backward", step("backward")))),
             "inference": Loop(phases=(("inference", step("inference")),))}
    sampler = bench_fidelity.Interleaved(PythonLoopSampler(loops, lambda: None), Hand(log))
    out = sampler.sample("train", 2)
    assert {k: len(v) for k, v in out.items()} == {"forward": 2, "backward": 2}
    sampler.sample("inference", 1)
    assert log == [("hand", "train"), ("harness", "forward"), ("harness", "backward"),
                   ("hand", "train"), ("harness", "forward"), ("harness", "backward"),
                   ("hand", "inference"), ("harness", "inference")]


def test_decided_rows_pair_every_framework_with_the_first():
    base = record("pytorch", "resnet18", rounds=[{"forward": [1.0] * 6}, {"forward": [1.1] * 6},
                                                  {"forward": [0.9] * 6}], device="cpu")
    other = record("jax", "resnet18", rounds=[{"forward": [2.0] * 6}, {"forward": [2.2] * 6},
                                               {"forward": [1.8] * 6}], device="cpu")
    ((who, phase, ratio),) = bench_decided.phase_rows([base, other])
    assert who.startswith("JAX") and phase == "forward"
    assert ratio.value == pytest.approx(2.0) and ratio.ci_high == pytest.approx(2.0)  # drift cancels
    assert bench_decided.phase_rows([base]) == []


def test_decided_rereads_kept_runs_under_todays_rules(tmp_path, capsys):
    """A kept A/A-like run whose steady rounds differ by under SMALLEST_CALL: the family's test calls
    the phase, the verdict reads tie, and the tally counts it apart from false calls."""
    times = [1.0, 1.1, 0.9, 1.05]
    base = record("pytorch", "resnet18", rounds=[{"forward": [t] * 6} for t in times], device="cpu")
    other = record("pytorch", "resnet18", rounds=[{"forward": [t * f] * 6} for t, f in
                                                  zip(times, (1.006, 1.008, 1.007, 1.007))], device="cpu")
    store = results.ResultsFile.create(tmp_path / "run1", {"label": "t"}, [])
    store.add(base)
    store.add(other)
    tally = bench_decided.reread(tmp_path)
    assert (tally.runs, tally.called, tally.small_calls, tally.intervals) == (1, 0, 1, 1)
    out = capsys.readouterr().out
    assert "run 1: wall not stored, 4 rounds" in out and "tie (the test calls it, within +-2%)" in out


def test_time_to_result_summary_from_estimates_and_qualities():
    precise = record("pytorch", "resnet18", train(0.2, 0.3, 0.1), device="cpu")
    noisy = record("pytorch", "vgg16", train(1.0, 2.0, 1.0), device="cpu", noisy=("forward", "total"))
    assert bench_time_to_result.seed_seconds([precise, noisy]) == pytest.approx(100 * (0.6 + 4.0))
    assert bench_time_to_result.qualities(precise) == {"precise": 4}
    assert bench_time_to_result.qualities(noisy) == {"precise": 2, "noisy": 2}


def test_first_run_row_shows_each_groups_first_run_beside_its_steady_state():
    r = record("jax", "resnet18", {"total": 0.05, "inference": 0.02}, device="cpu", first_run=3.0)
    assert bench_first_run.row(r) == ["3 s (50 ms)", "", "3 s (20 ms)"]
