"""Hardening, round two: one test per cause, with real processes, signals and files.

The signal tests run the real command line (`pybench.cli.main.main`) with the real runner; only the worker
is a small script that prints a valid record, so the moment of a signal relative to the worker's exit
can be chosen: a helper outside the worker's process group waits for the worker to be gone, then
signals the orchestrator.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from factories import record, results_file, train
from processes import running, wait_for
from pybench.cli import main as cli
from pybench.machine import lifetime
from pybench.cli.request_args import request_of
from pybench.rounds.cells import build_specs
from pybench.records import results
from pybench.rounds import runner
from pybench.report.diff import compare_runs
from pybench.errors import UserError
from pybench.report.format import md_text
from pybench.report.markdown import BEGIN_MARKER, END_MARKER, render_tables, update_readme

PY = sys.executable
REAL = Path(__file__).parents[1] / "results" / "epyc-2core-20261129-161603.json"


@pytest.fixture(autouse=True)
def hangup_as_default():
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGHUP, previous)


# A worker: reads its spec, writes its pid to argv[1], then per argv[2]:
#   "exit SIG N GAP DELAY": start a helper that, once this worker is gone, waits DELAY and sends N
#                           signals SIG, GAP seconds apart, to the orchestrator; print a record; exit
#   "rmdir DIR":            delete the results folder DIR, print a record, exit
#   "hang":                 sleep (sampling that never ends)
WORKER = r"""
import json, os, shutil, subprocess, sys, time
from pybench.protocol.group import PhaseSamples
from pybench.records.record import CellRecord
from pybench.records.round import Round, WorkloadFacts
from pybench.records.spec import CellSpec
spec = CellSpec.from_json(json.load(sys.stdin)["spec"])
with open(sys.argv[1] + ".part", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".part", sys.argv[1])
mode = sys.argv[2]
if mode == "hang":
    time.sleep(600)
if mode == "exit":
    sig, n, gap, delay = sys.argv[3:7]
    helper = (f"import os, sys, time\nprint('ready', file=sys.stderr, flush=True)\n"
              f"while os.path.exists('/proc/{os.getpid()}/stat') and "
              f"open('/proc/{os.getpid()}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z':\n"
              f"    time.sleep(0.001)\ntime.sleep({delay})\nfor _ in range({n}):\n"
              f"    os.kill({os.getppid()}, {sig}); time.sleep({gap})\n")
    # The helper keeps this worker's stdout open: the orchestrator is still reading it when the
    # worker is gone and the signals come (as with a worker's leftover child).
    ready = subprocess.Popen([sys.executable, "-c", helper], start_new_session=True, stdin=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True).stderr
    assert ready.readline() == "ready\n"  # watching before this worker exits
if mode == "rmdir":
    shutil.rmtree(sys.argv[3])
phases = {p: PhaseSamples(first_run=0.2, warmup=[], samples=[0.01, 0.011, 0.012], stop_reason="converged")
          for p in spec.phases}
rec = CellRecord(spec=spec, status="ok", title="PyTorch", workload=WorkloadFacts(params=1),
                 rounds=[Round(phases=phases)], wall_time=1.0)
print(json.dumps(rec.to_json()), flush=True)
"""

# The real command line, its workers replaced by WORKER with argv[2:] as its arguments.
ORCHESTRATOR = r"""
import functools, sys
from pybench.cli import main as cli
from pybench.rounds import matrix
from pybench.rounds import runner
worker = [sys.executable, "-c", sys.argv[1], *sys.argv[3:]]
matrix.run_matrix = functools.partial(matrix.run_matrix, run_one=functools.partial(runner.run_cell, command=worker))
runner.prime_cell = lambda spec, timeout, cache_dir: None  # a scripted worker has no compile cache to fill
sys.exit(cli.main(["run", "--framework", "pytorch", "--model", "resnet18", "--device", "cpu",
                   "--batch-size", "1", "--image-size", "64", "--threads", "1", "--rounds", "1",
                   "--results", sys.argv[2]]))
"""


def orchestrate(folder: Path, *worker_args: str) -> subprocess.Popen:
    return subprocess.Popen([PY, "-c", ORCHESTRATOR, WORKER, str(folder), *worker_args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def only_file(folder: Path) -> Path:
    (path,) = folder.iterdir()  # no temp file either
    return path


@pytest.mark.parametrize("delay", [0.0, 0.05])
def test_a_signal_just_after_the_worker_exits_keeps_its_round(tmp_path, delay):
    folder = tmp_path / "r"
    proc = orchestrate(folder, str(tmp_path / "pid"), "exit", str(int(signal.SIGTERM)), "1", "0", str(delay))
    _, err = proc.communicate(timeout=120)
    path = only_file(folder)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert [r.status for r in results.load(path).records] == ["ok"]
    assert f"pybench: 1 cell(s) kept in {path}" in err and "Traceback" not in err


SIGNAL_WITH_THE_RESULT = """
import os, signal, sys
from factories import record
from pybench.machine import lifetime
from pybench.records import results
from pybench.rounds.matrix import Schedule, run_matrix
lifetime.install_signal_handlers()
store = results.ResultsFile.create(sys.argv[1], {"label": "t"}, [])
done = record("pytorch", "resnet18", {"total": 0.1}, device="cpu", threads=1)

def run_one(spec, timeout, **_):
    os.kill(os.getpid(), signal.SIGTERM)  # the worker has exited; its record is in hand
    return done

try:
    run_matrix([done.spec], store, Schedule(rounds=1), run_one=run_one)
except lifetime.Terminated:
    print(store.kept())
"""


def test_a_signal_between_a_workers_exit_and_the_save_waits_for_the_save(tmp_path):
    p = subprocess.run([PY, "-c", SIGNAL_WITH_THE_RESULT, str(tmp_path)], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    path = only_file(tmp_path)
    assert p.stdout == f"1 cell(s) kept in {path}\n", p.stderr
    assert len(results.load(path).records) == 1


def test_repeated_ctrl_c_at_a_workers_exit_is_exit_130_and_keeps_the_round(tmp_path):
    folder = tmp_path / "r"
    proc = orchestrate(folder, str(tmp_path / "pid"), "exit", str(int(signal.SIGINT)), "40", "0.01", "0")
    _, err = proc.communicate(timeout=120)
    path = only_file(folder)
    assert proc.returncode == 130, err
    assert len(results.load(path).records) == 1
    assert f"pybench: 1 cell(s) kept in {path}" in err
    assert "Traceback" not in err and "Exception ignored" not in err


def test_repeated_ctrl_c_during_sampling_is_exit_130_without_a_traceback(tmp_path):
    folder, pid_file = tmp_path / "r", tmp_path / "pid"
    proc = orchestrate(folder, str(pid_file), "hang")
    assert wait_for(lambda: pid_file.exists() or proc.poll() is not None, 60), "no worker"
    worker = int(pid_file.read_text())
    for _ in range(40):
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGINT)
        time.sleep(0.01)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert wait_for(lambda: not running(worker), 10)
    assert results.load(only_file(folder)).records == []


def test_kept_is_not_said_when_the_results_folder_is_gone(tmp_path):
    folder = tmp_path / "r"
    proc = orchestrate(folder, str(tmp_path / "pid"), "rmdir", str(folder))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "kept in" not in err and "nothing kept" in err and "cannot write" in err


FULL_BEFORE_FIRST_SAVE = """
import resource, sys
from pybench.records import results
from pybench.rounds import runner
from pybench.errors import UserError
from pybench.records.spec import CellSpec
store = results.ResultsFile.create(sys.argv[1], {}, [])
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (store.path.stat().st_size + 100, hard))
try:
    store.add(runner.failed_record(CellSpec("pytorch", "resnet18", "cpu", 1, 64, threads=1), "x" * 10_000))
except UserError:
    print(store.kept())
"""


def test_kept_counts_what_the_file_holds_after_a_failed_save(tmp_path):
    p = subprocess.run([PY, "-c", FULL_BEFORE_FIRST_SAVE, str(tmp_path)], capture_output=True, text=True,
                       timeout=60)
    path = only_file(tmp_path)
    assert p.stdout == f"0 cell(s) kept in {path}\n", p.stderr
    assert results.load(path).records == []


# --- options: refused up front, no file left behind ----------------------------------------------

@pytest.mark.parametrize("args", [
    ["--timeout", "1e308"], ["--timeout", "3000000"], ["--max-time", "1e308"], ["--rounds", str(10**30)],
    ["--precision", "1e308"], ["--seed", str(10**30)], ["--batch-size", str(10**30)],
    ["--max-samples", str(10**30)], ["--framework", "jax", "--compile"],
])
def test_options_the_code_cannot_honour_are_refused_up_front(tmp_path, args):
    argv = ["run", "--model", "resnet18", "--device", "cpu", *args, "--results", str(tmp_path / "r")]
    if "--framework" not in args:
        argv[1:1] = ["--framework", "pytorch"]
    p = subprocess.run([PY, "-m", "pybench", *argv], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stderr.startswith("pybench: error:"), p.stderr
    assert not (tmp_path / "r").exists()


def test_in_a_mixed_matrix_an_unsupported_option_is_a_skipped_row_with_its_reason():
    argv = ["run", "--framework", "pytorch", "jax", "--model", "resnet18", "--device", "cpu", "--compile",
            "--threads", "1"]
    specs = build_specs(request_of(cli.build_parser().parse_args(argv), argv), ["pytorch", "jax"],
                        {"cpu": "CPU", "label": "box"})
    assert all(s.compile for s in specs)  # asked for every row: never silently dropped
    reasons = {s.framework: runner.skip_reason(s) for s in specs}
    assert reasons["jax"] == "--compile is not a JAX option"
    assert reasons["pytorch"] is None or "unavailable" in reasons["pytorch"]


# --- results files: every bad value is one line naming the file and the field ----------------------

def _real_record(tmp_path: Path, where: list, value: object, raw: str | None = None, v1: bool = False) -> Path:
    doc = json.loads(REAL.read_text())
    doc["records"] = doc["records"][:2]
    node = doc["records"][1]
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = "@@" if raw is not None else value
    path = tmp_path / "bad.json"
    text = json.dumps(doc)
    path.write_text(text.replace('"@@"', raw) if raw is not None else text)
    return path


@pytest.mark.parametrize("where, value, raw, message", [
    (["rounds", 0, "memory", "train", "cpu_peak_rss"], None, "NaN", "memory.train.cpu_peak_rss: nan is out of range"),
    (["rounds", 0, "memory", "train", "cpu_peak_rss"], None, "Infinity", "memory.train.cpu_peak_rss"),
    (["rounds", 0, "phases", "forward", "samples"], None, f"[{10**400}]", "samples[0]: a 1329-bit integer is out of range"),
    (["rounds", 0, "phases", "forward", "samples"], None, "[" + "9" * 5000 + "]", "cannot read a number"),
    (["rounds", 0, "phases", "forward", "samples"], [5e-324], None, "samples[0]: 4.94066e-324 is out of range"),
    (["rounds", 0, "phases", "forward", "samples"], [1e308], None, "samples[0]: 1e+308 is out of range"),
    (["wall_time"], None, str(10**400), "wall_time: a 1329-bit integer is out of range"),
    (["workload", "flops_forward"], None, str(10**400), "workload.flops_forward: a 1329-bit integer"),
    (["spec", "label"], None, None, "spec.label: expected str, got NoneType"),
    (["spec", "label"], 3, None, "spec.label: expected str, got int"),
    (["spec", "label"], ["a"], None, "spec.label: expected str, got list"),
    (["spec", "device_name"], None, None, "spec.device_name: expected str, got NoneType"),
    (["spec", "channels_last"], "yes", None, "spec.channels_last: expected bool, got str"),
    (["spec", "model"], "nosuch", None, "spec: unknown model 'nosuch'"),
    (["spec", "batch_size"], -3, None, "spec: batch size must be at least 1"),
    (["spec", "phases"], "forward", None, "spec.phases: expected list, got str"),
    (["spec", "device"], "cuda:x", None, "spec: device 'cuda:x' is neither cpu nor cuda:N"),
    (["spec", "stop"], "x", None, "spec.stop: expected dict, got str"),
])
def test_a_bad_value_in_a_results_file_names_the_file_and_the_field(tmp_path, where, value, raw, message):
    path = _real_record(tmp_path, where, value, raw)
    with pytest.raises(UserError) as exc:
        results.load(path)
    assert str(path) in str(exc.value) and message in str(exc.value), str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("where, value, message", [
    (["phases", "forward"], 5, "record #1.phases.forward: expected dict, got int"),
    (["spec", "stop"], "x", "record #1.spec.stop: expected dict, got str"),
    (["spec", "device"], "cuda:x", "device 'cuda:x' is neither cpu nor cuda:N"),
])
def test_bad_values_in_a_version_1_file_are_named_too(tmp_path, where, value, message):
    doc = json.loads((Path(__file__).parent / "data" / "results-v1-layers.json").read_text())
    node = doc["records"][0]
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError) as exc:
        results.load(path)
    assert str(path) in str(exc.value) and message in str(exc.value), str(exc.value)


def test_extreme_valid_times_across_frameworks_report_without_overflow_or_warnings(tmp_path):
    phases = ("forward", "backward", "total", "inference")
    fast = record("pytorch", "resnet18", samples={p: [1e-9] * 5 for p in phases}, device="cpu")
    slow = record("jax", "resnet18", samples={p: [3e7] * 5 for p in phases}, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = render_tables([results_file([fast, slow])], details=True)
    assert not re.search(r"\b(inf|nan)\b", text) and "3e+07 s" not in text
    assert "|0.000000001 s" in text and "|30000000 s" in text, text


# --- diff -----------------------------------------------------------------------------------------

def test_constant_samples_on_both_sides_diff_as_same_without_warnings(tmp_path):
    constant = [{"total": [0.5] * 5}] * 3
    old = results_file([record("pytorch", "resnet18", rounds=constant)])
    new = results_file([record("pytorch", "resnet18", rounds=constant)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (row,) = compare_runs([old], [new])
    assert row.verdict == "same"


def test_diff_strict_fails_on_inconclusive(tmp_path, restore_signals):
    noisy = [{"total": [0.9]}, {"total": [1.1]}, {"total": [1.0]}]
    for name, rounds in (("old.json", noisy), ("new.json", noisy[::-1])):
        store = results.ResultsFile.create(tmp_path / name[:3], {"label": "box"}, [])
        store.add(record("pytorch", "resnet18", rounds=rounds))
    old, new = (next((tmp_path / d).iterdir()) for d in ("old", "new"))
    assert cli.main(["diff", str(old), str(new)]) == 0
    assert cli.main(["diff", "--strict", str(old), str(new)]) == 1


# --- text that escapes its place ------------------------------------------------------------------

@pytest.mark.parametrize("hostile", [END_MARKER, BEGIN_MARKER, "<!-- open", "x <script>", "a\n<!--\nb"])
def test_no_marker_or_comment_survives_escaping(hostile):
    assert "<" not in md_text(hostile)


def test_labels_titles_devices_and_memory_kinds_cannot_write_markers_into_a_readme(tmp_path):
    rec = record("pytorch", "resnet18", train(1, 1, 0.5), label=END_MARKER, device="cpu")
    rec.title = f"PyTorch {BEGIN_MARKER}"
    rec.rounds[0].memory = {"train": {END_MARKER: 2**30}}
    readme = tmp_path / "README.md"
    before, after = "intro <!-- mine -->\n", "\nend\n"
    readme.write_text(f"{before}{BEGIN_MARKER}\n{END_MARKER}{after}")
    for _ in range(2):  # the second update finds exactly one pair of markers
        update_readme(readme, render_tables([results_file([rec])], details=True))
    text = readme.read_text()
    assert text.count(BEGIN_MARKER) == text.count(END_MARKER) == 1
    assert text.startswith(before + BEGIN_MARKER) and text.endswith(END_MARKER + after)


def test_a_plot_draws_mathtext_labels_as_plain_text(tmp_path):
    from pybench.report.plot import plot

    rec = record("pytorch", "resnet18", train(1, 1), label="$\\frac{1}{0}$ $x^{$", device="cpu")
    rec.title = "$\\undefinedcommand$"
    out = tmp_path / "p.svg"
    plot([results_file([rec])], out)  # mathtext would raise on the unknown command
    assert out.read_text().startswith("<?xml")


# --- leftovers of a SIGKILLed run -----------------------------------------------------------------

def test_stale_caches_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([PY, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"pybench-cache-{dead.pid}-abc"
    live = tmp_path / f"pybench-cache-{os.getpid()}-def"
    other = tmp_path / "pybench-cache-notapid"
    for d in (stale, live, other):
        d.mkdir()
        (d / "compiled").write_text("x")
    assert lifetime.remove_stale("pybench-cache", tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


def test_quality_honours_the_statistic():
    one_round = record("pytorch", "resnet18", train(1, 1), device="cpu")  # nine tight samples
    assert one_round.quality("total") == "precise"
    assert one_round.quality("total", "min") == "too_few_samples"  # a lone minimum has no interval
    rounds = [{"total": [1.0, 5.0, 5.0]}, {"total": [1.0, 9.0, 9.0]}, {"total": [1.0, 1.0, 7.0]}]
    split = record("pytorch", "resnet18", rounds=rounds, device="cpu")
    assert split.quality("total", "min") == "precise" and split.quality("total") == "noisy"
