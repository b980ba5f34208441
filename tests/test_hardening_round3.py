"""Issue 27, hardening round three: one test per cause.  A submission folder is data, never code;
exports and terminals carry no formulas or escape sequences; outputs never overwrite measurements.

Real processes wherever a signal, a probe or Slurm is involved; the Slurm tests use the local cluster
of scripts/slurm_local.sh, as tests/test_slurm.py does, and skip with the reason where none answers.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factories import record
from processes import cluster_problem, running, wait_for
from pybench.errors import UserError
from pybench.records import results
from pybench.records.record import CellRecord, CutShort
from pybench.report import export
from pybench.text import terminal_text

ROOT = Path(__file__).resolve().parent.parent
ESC = "\x1b"
HOSTILE = "=HYPERLINK(\"http://x\")\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\\x1b[2J\x1b]0;title\x07\x9b1m"
TINY = ["--threads", "1", "--rounds", "1", "--max-time", "0.5", "--min-samples", "5", "--max-samples", "50"]


def pybench(*args: str, env: dict | None = None, timeout: float = 240, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pybench", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, cwd=ROOT,
                          stdin=subprocess.DEVNULL, **kwargs)


def one_line_error(done: subprocess.CompletedProcess, code: int = 2) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code and len(lines) == 1 and lines[0].startswith("pybench: error: "), done.stderr
    return lines[0]


def saved(folder: Path, records: list[CellRecord], created: str | None = None) -> Path:
    store = results.ResultsFile.create(folder, {"label": "box"}, ["pybench", "run"])
    if created:
        store.created = created
    for r in records:
        store.add(r)
    return store.path


# --- 2, 3: formulas and escape sequences ------------------------------------------------------------

def test_csv_cells_that_would_start_a_formula_are_quoted_and_numbers_stay_numbers():
    rows = [{"label": "=1+1", "device": "@SUM(A1)", "a": "+x", "b": "-cmd|' /C calc'!A0", "neg": -0.5,
             "text_number": "-1.5", "plain": "resnet50", "esc": HOSTILE}]
    text = export.to_csv(rows, tuple(rows[0]))
    [cells] = list(csv.DictReader(io.StringIO(text)))
    assert cells == {"label": "'=1+1", "device": "'@SUM(A1)", "a": "'+x", "b": "'-cmd|' /C calc'!A0", "neg": "-0.5",
                     "text_number": "-1.5", "plain": "resnet50", "esc": "'=HYPERLINK(\"http://x\")link1m"}
    assert ESC not in text and "\x9b" not in text and "\x07" not in text


def test_terminal_text_strips_every_escape_sequence_and_control_character():
    assert terminal_text(HOSTILE) == "=HYPERLINK(\"http://x\")link1m"
    assert terminal_text("a\rb\nc\u202ed", lines=True) == "ab\ncd"
    assert terminal_text("a\tb\nc") == "a b c"


def test_diff_and_csv_to_stdout_print_no_escape_sequence_from_a_results_file(tmp_path):
    hostile = record("pytorch", "resnet18", {"total": 0.5}, label=HOSTILE, device="cpu")
    hostile.title = HOSTILE
    old = saved(tmp_path / "old", [hostile])
    new = saved(tmp_path / "new", [hostile])
    for done in (pybench("diff", str(old), str(new)), pybench("report", str(new), "--format", "csv"),
                 pybench("report", str(new))):
        assert done.returncode == 0, done.stderr
        assert ESC not in done.stdout + done.stderr and "\x9b" not in done.stdout, done.stdout
        assert "link" in done.stdout


# --- 3, 4, 5: the interpreter probe --------------------------------------------------------------

def fake_python(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("answer", ["null", "{}", "[1,2]", '{"python": "3.11", "version": "3.11", "missing": []}',
                                    '{"python": "3.11", "version": [3], "missing": []}',
                                    '{"python": 3, "version": [3, 11], "missing": "numpy"}', "1" * 5000])
def test_a_probe_answer_of_the_wrong_shape_is_one_line_exit_2(tmp_path, answer):
    python = fake_python(tmp_path, f"echo '{answer}'; echo '{ESC}[2Jcleared' >&2")
    done = pybench("run", "--variant", f"a=pytorch@{python}", "--variant", "b=pytorch", "--model", "conv3x3_s1",
                   "--device", "cpu", *TINY, "--results", str(tmp_path / "r"))
    line = one_line_error(done)
    assert "does not run as a Python interpreter" in line and ESC not in done.stderr
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("*.json"))


@pytest.mark.slow
def test_what_a_probed_interpreter_starts_dies_with_the_probe(tmp_path):
    pids = tmp_path / "pids"
    python = fake_python(tmp_path, f"sleep 300 >/dev/null 2>&1 & echo $! >> {pids}\n"
                                   f"(sleep 300 >/dev/null 2>&1 & echo $! >> {pids})\n"
                                   f"exec {sys.executable} \"$@\"")
    code = ("import sys; from pybench.rounds.interpreter import probe; "
            f"print(probe({str(python)!r}, (), 'test'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    assert wait_for(lambda: not any(running(p) for p in started), 10), [p for p in started if running(p)]


# --- 6: the staged copy of pybench for another interpreter --------------------------------------

def test_the_staged_source_names_its_owner_and_a_dead_owners_copy_is_removed(tmp_path):
    code = ("import os; from pybench.rounds.interpreter import staged_source; "
            "print(staged_source()); os.kill(os.getpid(), 9)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)})
    assert done.returncode == -signal.SIGKILL
    left = Path(done.stdout.strip())
    assert left.is_dir() and left.name.startswith("pybench-src-")  # SIGKILL: nothing could clean up
    code = "from pybench.rounds.interpreter import staged_source; print(staged_source())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert not left.exists()  # the next start removed the dead run's copy
    assert not Path(done.stdout.strip()).exists()  # and its own went at exit


# --- 7: a finished round survives our being stopped past the time-out ---------------------------

@pytest.mark.slow
def test_a_round_that_finished_while_pybench_was_stopped_is_kept(tmp_path):
    code = ("import subprocess, sys\n"
            "from pybench.machine.lifetime import run_bounded\n"
            "child = [sys.executable, '-c', 'import time; time.sleep(0.5); print(\"x\" * 200000)']\n"
            "done = run_bounded(child, 1.5, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)\n"
            "print(done.returncode, len(done.stdout.strip()))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        time.sleep(0.3)
        proc.send_signal(signal.SIGSTOP)  # as a suspended laptop or a Ctrl-Z would
        time.sleep(3)
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.split() == ["0", "200000"]  # its answer, more than a pipe holds, read in full


# --- 8: outputs never overwrite inputs ----------------------------------------------------------

@pytest.mark.parametrize("option", [["--format", "csv", "--output"], ["--format", "jsonl", "--output"],
                                    ["--output"], ["--html"], ["--plot"]])
def test_a_report_refuses_to_overwrite_a_results_file_it_reads(tmp_path, option):
    path = saved(tmp_path / "r", [record("pytorch", "resnet18", {"total": 0.5}, device="cpu")])
    link = tmp_path / "link.json"
    link.symlink_to(path)
    before = path.read_bytes()
    for target in (path, link):
        done = pybench("report", str(path), *option, str(target))
        assert "a results file this report reads" in one_line_error(done)
    assert path.read_bytes() == before


def test_two_outputs_naming_one_file_are_refused(tmp_path):
    path = saved(tmp_path / "r", [record("pytorch", "resnet18", {"total": 0.5}, device="cpu")])
    done = pybench("report", str(path), "--format", "html", "--output", str(tmp_path / "x"), "--html",
                   str(tmp_path / "x"))
    assert "name the same file" in one_line_error(done)


# --- 9: a preset's eager variant stays eager ----------------------------------------------------

@pytest.mark.parametrize("flag", ["--compile", "--channels-last"])
def test_variants_settings_refuses_a_flag_that_would_turn_eager_into_its_opposite(tmp_path, flag):
    done = pybench("run", "--variants", "settings", "--framework", "pytorch", flag, "--model", "conv3x3_s1",
                   "--device", "cpu", *TINY, "--results", str(tmp_path))
    assert "variant eager measures without" in one_line_error(done)
    assert not list(tmp_path.glob("*.json"))


def test_the_settings_presets_variants_fix_what_they_compare():
    from pybench.records.spec import CellSpec
    from pybench.request.variants import PRESETS

    spec = CellSpec(framework="pytorch", model="conv3x3_s1", device="cpu", batch_size=8, image_size=224,
                    device_name="cpu", label="box", threads=1)
    applied = {v.name: v.apply(spec) for v in PRESETS["settings"].variants("pytorch")}
    assert not applied["eager"].compile and not applied["eager"].channels_last
    assert applied["compile"].compile and not applied["compile"].channels_last
    with pytest.raises(UserError, match="eager measures without compile"):
        PRESETS["settings"].variants("pytorch")[0].apply(CellSpec(**{**spec.__dict__, "compile": True}))


# --- 10 (second half): duplicate identities do not resolve by order -----------------------------

def test_two_files_created_in_the_same_second_report_the_same_whichever_is_named_first(tmp_path):
    a = saved(tmp_path / "a", [record("pytorch", "resnet18", {"total": 0.5}, device="cpu")], "2025-01-01T12:00:00+0000")
    b = saved(tmp_path / "b", [record("pytorch", "resnet18", {"total": 0.9}, device="cpu")], "2025-01-01T12:00:00+0000")
    first, second = pybench("report", str(a), str(b)), pybench("report", str(b), str(a))
    assert first.returncode == 0 and first.stdout == second.stdout, first.stderr


def test_a_file_that_holds_one_cell_twice_is_refused(tmp_path):
    cell = record("pytorch", "resnet18", {"total": 0.5}, device="cpu")
    path = saved(tmp_path / "r", [cell])
    data = json.loads(path.read_text())
    data["records"].append(data["records"][0])
    path.write_text(json.dumps(data))
    assert "record #2 measures the same cell" in one_line_error(pybench("report", str(path)))


# --- 13: --compile on the CPU needs a C++ compiler ----------------------------------------------

def test_compile_on_the_cpu_without_a_cxx_compiler_is_refused_before_the_run(tmp_path):
    done = pybench("run", "--framework", "pytorch", "--compile", "--model", "conv3x3_s1", "--device", "cpu", *TINY,
                   "--results", str(tmp_path), env={"CXX": str(tmp_path / "no-such-g++")})
    assert "needs a C++ compiler" in one_line_error(done)
    assert not list(tmp_path.glob("*.json"))


# --- 15: slurm_local.sh stop ends the munged it started -----------------------------------------

@pytest.mark.slow
def test_slurm_local_stop_ends_the_munged_it_started_and_nothing_else(tmp_path):
    ours = subprocess.Popen(["sleep", "300"])  # stands for the munged that start started
    other = subprocess.Popen(["sleep", "300"])  # someone else's daemon: no pid file of ours
    try:
        (tmp_path / "munged.pid").write_text(f"{ours.pid}\n")
        done = subprocess.run(["bash", str(ROOT / "scripts" / "slurm_local.sh"), "stop"], capture_output=True,
                              text=True, timeout=60, env={**os.environ, "PYBENCH_SLURM_STATE": str(tmp_path)})
        assert done.returncode == 0, done.stderr
        assert ours.wait(timeout=10) == -signal.SIGTERM and not (tmp_path / "munged.pid").exists()
        assert other.poll() is None
    finally:
        ours.kill()
        other.kill()


# --- 16: a record cut short says so ---------------------------------------------------------------

def test_a_cut_short_record_keeps_its_rounds_and_reads_back():
    cell = record("pytorch", "resnet18", {"total": 0.5}, device="cpu")
    cell.cut_short = CutShort("Slurm job 19 TIMEOUT (TimeLimit)", 1, 8)
    back = CellRecord.from_json(json.loads(json.dumps(cell.to_json())))
    assert back.cut_short == cell.cut_short and back.ok and len(back.rounds) == 1


# --- 1, 12, 14, 16: a submission folder is data --------------------------------------------------

def fake_slurm(tmp_path: Path, state: str = "COMPLETED", reason: str = "None") -> tuple[dict, Path]:
    """PATH with a scontrol that answers `state` for every job and logs its arguments, and no sacct."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol-calls"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n"
                        f"echo \"JobId=$4 JobState={state} Reason={reason} NodeList=node7 ExitCode=0:15\"\n")
    scontrol.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, calls


def submission(tmp_path: Path, rounds_done: int = 3, asked: int | None = 8) -> tuple[Path, dict]:
    """A submission of one finished job (id 19) as a node leaves it, built without Slurm."""
    from pybench.cluster.node import CellJob
    from pybench.cluster.submission import JobEntry, Submission
    from pybench.request.request import Request

    cell = record("pytorch", "conv3x3_s1", device="cpu", rounds=[{"forward": [0.5] * 5}] * rounds_done)
    sub = Submission.new(tmp_path / "results", ["pybench", "run"])
    job = CellJob(0, Request(command="run", models=("conv3x3_s1",), frameworks=("pytorch",), rounds=asked),
                  str(sub.cell_folder(0)))
    sub.jobs = [JobEntry(job, "19", None, [cell.spec])]
    sub.save()
    saved(sub.cell_folder(0) / "records", [cell])
    return sub.folder, json.loads((sub.folder / "submission.json").read_text())


def collect(folder: Path, env: dict) -> subprocess.CompletedProcess:
    return pybench("collect", str(folder), env=env)


def test_collect_never_loads_a_pickle_planted_in_the_submission(tmp_path):
    folder, _ = submission(tmp_path, rounds_done=8)
    marker = tmp_path / "pwned"
    planted = folder / "submitit" / "19" / "19_0_result.pkl"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    env, _ = fake_slurm(tmp_path)
    done = collect(folder, env)
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    [written] = (tmp_path / "results").glob("*-cell0000.json")
    assert json.loads(written.read_text())["records"][0]["status"] == "ok"


def test_collect_writes_beside_its_submission_whatever_the_manifest_says(tmp_path):
    folder, manifest = submission(tmp_path, rounds_done=8)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    manifest["results"] = str(elsewhere)
    (folder / "submission.json").write_text(json.dumps(manifest))
    env, _ = fake_slurm(tmp_path)
    assert collect(folder, env).returncode == 0
    assert not list(elsewhere.iterdir()) and list((tmp_path / "results").glob("*-cell0000.json"))


@pytest.mark.parametrize("change, message", [
    (lambda m: m["jobs"][0].update(job_id="--help"), "not a Slurm job id"),
    (lambda m: m["jobs"][0].update(job_id="../../../tmp/x"), "not a Slurm job id"),
    (lambda m: m["jobs"][0].update(job_id=19), "not a Slurm job id"),
    (lambda m: m["jobs"][0].update(specs=[]), "at least one cell"),
    (lambda m: m["jobs"][0]["job"].update(index=-1), "job number"),
    (lambda m: m["jobs"][0]["job"]["request"].update(rounds="8"), "rounds"),
    (lambda m: m.update(jobs=m["jobs"] * 2), "same job"),
    (lambda m: m.update(jobs=[]), "no job"),
    (lambda m: m.update(command="rm -rf /"), "command"),
])
def test_a_hostile_manifest_is_one_line_before_slurm_is_asked(tmp_path, change, message):
    folder, manifest = submission(tmp_path)
    change(manifest)
    (folder / "submission.json").write_text(json.dumps(manifest))
    env, calls = fake_slurm(tmp_path)
    assert message in one_line_error(collect(folder, env))
    assert not calls.exists() and not list((tmp_path / "results").glob("*.json"))


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"schema": "pybench.slurm-submission", '
                                  '"command": [], "jobs": [{"job_id": "1", "specs": [], "job": {"index": Infinity}}]}'])
def test_a_deeply_nested_or_infinite_manifest_is_one_line(tmp_path, text):
    folder, _ = submission(tmp_path)
    (folder / "submission.json").write_text(text)
    env, calls = fake_slurm(tmp_path)
    assert "malformed submission manifest" in one_line_error(collect(folder, env))
    assert not calls.exists()


def test_a_job_past_its_time_limit_keeps_its_rounds_says_it_was_cut_short_and_exits_1(tmp_path):
    folder, _ = submission(tmp_path, rounds_done=3, asked=8)
    env, _ = fake_slurm(tmp_path, "TIMEOUT", "TimeLimit")
    done = collect(folder, env)
    assert done.returncode == 1, done.stderr
    [written] = (tmp_path / "results").glob("*-cell0000.json")
    doc = json.loads(written.read_text())
    [rec] = doc["records"]
    assert rec["status"] == "ok" and len(rec["rounds"]) == 3
    assert rec["cut_short"] == {"reason": "Slurm job 19 TIMEOUT (TimeLimit) on node7, exit code 0:15",
                                "rounds_done": 3, "rounds_asked": 8}
    assert doc["environment"]["slurm"] == {"job_id": "19", "partition": None, "node": "node7", "state": "TIMEOUT"}


def test_a_job_slurm_forgot_counts_as_finished_only_if_its_node_said_so(tmp_path):
    folder, _ = submission(tmp_path, rounds_done=3, asked=8)  # a cell may stop early once precise
    env, _ = fake_slurm(tmp_path)
    (tmp_path / "bin" / "scontrol").write_text("#!/bin/sh\nexit 0\n")  # Slurm knows no such job
    done = collect(folder, env)
    assert done.returncode == 1 and "cut_short" in next((tmp_path / "results").glob("*.json")).read_text()
    for f in (tmp_path / "results").glob("*.json"):
        f.unlink()
    (folder / "cells" / "0" / "finished").write_text("")
    assert collect(folder, env).returncode == 0


@pytest.mark.slow
def test_on_a_real_cluster_collect_ignores_a_planted_pickle_and_records_where_the_job_ran(tmp_path):
    reason = cluster_problem()
    if reason:
        pytest.skip(reason)
    done = pybench("run", "--executor", "slurm", "--detach", "--framework", "pytorch", *TINY, "--model",
                   "conv3x3_s1", "--results", str(tmp_path / "results"))
    assert done.returncode == 0, done.stderr
    [folder] = (tmp_path / "results" / "slurm").iterdir()
    [job_id] = [j["job_id"] for j in json.loads((folder / "submission.json").read_text())["jobs"]]
    pickle = folder / "submitit" / job_id / f"{job_id}_0_result.pkl"
    assert wait_for(pickle.exists, 180, 0.5), "the job never finished"
    marker = tmp_path / "pwned"
    pickle.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    done = pybench("collect", "--wait", str(folder))
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    [written] = (tmp_path / "results").glob("*-cell0000.json")
    doc = json.loads(written.read_text())
    assert [r["status"] for r in doc["records"]] == ["ok"]
    slurm = doc["environment"]["slurm"]
    assert slurm["job_id"] == job_id and slurm["partition"] == "debug" and slurm["node"] and slurm["state"] == "COMPLETED"


# --- 11: stdout faults ------------------------------------------------------------------------------

def shell(command: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.mark.slow
def test_a_closed_stdout_is_no_error(tmp_path):
    path = saved(tmp_path / "r", [record("pytorch", "resnet18", {"total": 0.5}, device="cpu")])
    for args in ("list", f"report {path}", f"diff {path} {path}"):
        done = shell(f"{sys.executable} -m pybench {args} >&-")
        assert done.returncode == 0 and not done.stderr, done.stderr


def test_a_full_disk_or_an_encoding_without_the_tables_characters_is_one_line_exit_2(tmp_path):
    path = saved(tmp_path / "r", [record("pytorch", "resnet18", {"total": 0.5}, device="cpu", label="café")])
    done = shell(f"{sys.executable} -m pybench report {path} > /dev/full")
    assert "cannot write to standard output" in one_line_error(done)
    done = shell(f"{sys.executable} -m pybench diff {path} {path}", env={"PYTHONIOENCODING": "ascii"})
    assert "cannot encode" in one_line_error(done)


@pytest.mark.slow
def test_a_reader_that_leaves_early_costs_nothing(tmp_path):
    samples = {"total": [0.5 + i * 1e-6 for i in range(30000)]}
    path = saved(tmp_path / "r", [record("pytorch", "resnet18", samples=samples, device="cpu")])
    proc = subprocess.Popen([sys.executable, "-m", "pybench", "report", str(path), "--format", "csv", "--raw"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdout.read(100)
    proc.stdout.close()  # as `| head -c 100` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and not err, err
