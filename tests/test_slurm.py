"""`--executor slurm` through a real Slurm cluster (scripts/slurm_local.sh start; `.ci/run` starts it).

Where no cluster answers, the cluster tests skip and say why.  The cells are tiny (one layer, one
thread, one round of half a second), so each job is mostly the start of its Python; the time-limit
job is submitted first and gathered last, so its minute on the node overlaps the other tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pybench.cluster.options import SlurmConfig
from pybench.cluster.options import key_value, slurm_time
from pybench.request.request import SlurmOptions
from pybench.cluster.slurm import JobState, parse_sacct, parse_scontrol
from processes import cluster_problem, wait_for

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--threads", "1", "--rounds", "1", "--max-time", "0.5", "--min-samples", "5", "--max-samples", "50"]
TWO_CELLS = ["--model", "conv3x3_s1", "maxpool3x3_s2"]


def pybench(*args: str, check_rc: int | None = 0, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the jobs inherit it: the nodes import this tree
    done = subprocess.run([sys.executable, "-m", "pybench", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
    if check_rc is not None:
        assert done.returncode == check_rc, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def submission(results: Path) -> Path:
    [folder] = (results / "slurm").iterdir()
    return folder


def records_of(results: Path) -> list[dict]:
    return [r for f in sorted(results.glob("*.json")) for r in json.loads(f.read_text())["records"]]


def job_ids(folder: Path) -> list[str]:
    return [e["job_id"] for e in json.loads((folder / "submission.json").read_text())["jobs"]]


def queued_ids() -> list[str]:
    return subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()


def squeue(ids: list[str]) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[0] in ids]


@pytest.fixture(scope="module")
def slow_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cell of 100 rounds (a fresh worker each) that can never be precise, under a 1-minute limit,
    submitted detached before the other tests so that its minute overlaps theirs; its own test
    gathers it last."""
    reason = cluster_problem()
    if reason:
        pytest.skip(reason)
    results = tmp_path_factory.mktemp("timeout")
    pybench("run", "--executor", "slurm", "--detach", "--framework", "pytorch", "--slurm-time", "1",
            "--model", "conv3x3_s1", "--threads", "1", "--rounds", "100", "--max-time", "5",
            "--precision", "0.000001", "--results", str(results))
    return results


@pytest.fixture
def cluster(slow_job: Path) -> None:
    """Every cluster test asks for the slow job first, so it is always submitted first."""


@pytest.mark.slow
def test_two_cells_two_frameworks_each_job_on_its_own_core(cluster, tmp_path: Path) -> None:
    done = pybench("run", "--executor", "slurm", "--framework", "pytorch", "jax", *TINY, *TWO_CELLS,
                   "--results", str(tmp_path))
    assert "2/2" in done.stderr and "done 2, failed 0" in done.stderr
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 2  # one results file per job
    records = records_of(tmp_path)
    assert sorted((r["spec"]["model"], r["spec"]["framework"], r["status"]) for r in records) == [
        ("conv3x3_s1", "jax", "ok"), ("conv3x3_s1", "pytorch", "ok"),
        ("maxpool3x3_s2", "jax", "ok"), ("maxpool3x3_s2", "pytorch", "ok")]
    for f in files:
        env = json.loads(f.read_text())["environment"]
        assert env["cores_available"] == 1  # Slurm pinned the job to the one core it asked for
        assert env["slurm"]["job_id"] and env["label"] == env["hostname"]  # named from the node
    report = pybench("report", str(tmp_path))
    assert "Conv3x3/1" in report.stdout and "MaxPool3x3/2" in report.stdout
    before = {f: f.read_bytes() for f in files}
    pybench("collect", str(submission(tmp_path)))  # collecting again changes nothing
    assert {f: f.read_bytes() for f in sorted(tmp_path.glob("*.json"))} == before


@pytest.mark.slow
def test_a_compare_checks_parity_on_the_node_of_its_job(cluster, tmp_path: Path) -> None:
    done = pybench("compare", "--executor", "slurm", "--framework", "pytorch", "jax", *TINY, "--model",
                   "conv3x3_s1", "--results", str(tmp_path))
    by_framework = {r["spec"]["framework"]: r for r in records_of(tmp_path)}
    parity = by_framework["jax"]["parity"]  # PyTorch is the reference: no check of its own
    assert parity["ok"] and parity["max_rel_diff"] is not None, parity
    assert "parity: outputs agree" in done.stdout


@pytest.mark.slow
def test_detach_then_collect_with_a_cancelled_job(cluster, tmp_path: Path) -> None:
    done = pybench("run", "--executor", "slurm", "--detach", "--framework", "pytorch", *TINY, *TWO_CELLS,
                   "--max-parallel", "1", "--results", str(tmp_path))
    folder = submission(tmp_path)
    assert f"pybench collect {folder}" in done.stderr and not list(tmp_path.glob("*.json"))
    first, second = job_ids(folder)
    subprocess.run(["scancel", second], check=True)  # still held back by --max-parallel 1
    collected = pybench("collect", "--wait", str(folder), check_rc=1)  # a failed cell: exit 1
    assert "2 of 2 job(s) collected" in collected.stderr
    by_model = {r["spec"]["model"]: r for r in records_of(tmp_path)}
    assert by_model["conv3x3_s1"]["status"] == "ok"
    cancelled = by_model["maxpool3x3_s2"]
    # Cancelled while held back, the task either is split out (CANCELLED) or vanishes without a trace
    # (no accounting database here): both say so.
    assert cancelled["status"] == "failed" and any(f"Slurm job {second} {what}" in cancelled["error"]
                                                   for what in ("CANCELLED", "is no longer known"))
    assert cancelled["spec"]["device_name"].startswith("not run")  # no machine is named for it
    before = {f: f.read_bytes() for f in tmp_path.glob("*.json")}
    pybench("collect", str(folder), check_rc=1)
    assert {f: f.read_bytes() for f in tmp_path.glob("*.json")} == before


@pytest.mark.slow
def test_ctrl_c_cancels_the_rest_and_keeps_what_finished(cluster, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pybench", "run", "--executor", "slurm", "--framework",
                             "pytorch", *TINY, *TWO_CELLS, "--max-parallel", "1", "--results",
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                            # a background job starts with SIGINT ignored, and pybench keeps it so
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert wait_for(lambda: list(tmp_path.glob("*-cell0000.json")), 120, 0.1), "the first job never came back"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "cancelled 1 Slurm job(s); 1 collected" in err
    folder = submission(tmp_path)
    assert wait_for(lambda: not squeue(job_ids(folder)), 30, 0.5)  # nothing left queued or running
    assert [r["status"] for r in records_of(tmp_path)] == ["ok"]  # the finished job is kept
    pybench("collect", "--wait", str(folder), check_rc=1)
    second = [r for r in records_of(tmp_path) if r["spec"]["model"] == "maxpool3x3_s2"]
    assert second[0]["status"] == "failed" and "cancelled by pybench" in second[0]["error"]


@pytest.mark.slow
def test_a_refused_submission_leaves_no_job_and_no_folder(cluster, tmp_path: Path) -> None:
    before = set(queued_ids())
    done = pybench("run", "--executor", "slurm", "--partition", "debug", "--partition", "nosuch", *TINY,
                   "--model", "conv3x3_s1", "--results", str(tmp_path), check_rc=2)
    assert done.stderr.splitlines()[-1].startswith("pybench: error: sbatch refused the job: ")
    assert "nosuch" in done.stderr and list((tmp_path / "slurm").iterdir()) == []
    # the array already accepted for partition debug was cancelled
    assert wait_for(lambda: not set(queued_ids()) - before, 30, 0.5), set(queued_ids()) - before


@pytest.mark.slow
def test_env_runs_on_a_node(cluster) -> None:
    done = pybench("env", "--executor", "slurm", "--slurm-time", "5")
    facts = json.loads(done.stdout[:done.stdout.rindex("}") + 1])
    assert facts["hostname"] and "pytorch" in facts["frameworks"]


@pytest.mark.slow
def test_a_job_past_its_time_limit_is_a_failed_record_with_slurms_reason(slow_job: Path) -> None:
    done = pybench("collect", "--wait", str(submission(slow_job)), check_rc=None, timeout=300)
    [record] = records_of(slow_job)
    # Rounds finished before the limit are kept, and the record says it was cut short (exit 1); a
    # cell with none is a failed record.
    assert done.returncode == 1
    if record["status"] == "failed":
        assert "TIMEOUT" in record["error"], record["error"]
    else:
        assert record["rounds"] and "TIMEOUT (TimeLimit)" in record["cut_short"]["reason"]
        assert record["cut_short"]["rounds_done"] == len(record["rounds"]) < record["cut_short"]["rounds_asked"]
    assert not record["spec"]["device_name"].startswith("not run")  # it ran on a node, named from it


# --- without a cluster ---------------------------------------------------------------------------

def test_scontrol_lines_become_states_per_array_task() -> None:
    text = ("JobId=7 ArrayJobId=7 ArrayTaskId=2-4%2 JobState=PENDING Reason=JobArrayTaskLimit NodeList=(null)\n"
            "JobId=9 ArrayJobId=7 ArrayTaskId=1 JobState=TIMEOUT Reason=TimeLimit NodeList=n1 ExitCode=0:15\n"
            "JobId=12 JobState=COMPLETED Reason=None NodeList=n2 ExitCode=0:0\n")
    states = parse_scontrol(text)
    assert set(states) == {"7_2", "7_3", "7_4", "7_1", "12"}
    assert states["7_3"].queued and states["7_3"].active
    assert states["7_1"].describe("7_1") == "Slurm job 7_1 TIMEOUT (TimeLimit) on n1, exit code 0:15"
    assert not states["12"].active and states["12"].describe("12") == "Slurm job 12 COMPLETED on n2"
    assert parse_sacct("5_1|CANCELLED by 0|n3|0:0|None\n5_1.batch|CANCELLED||0:15|\n") == {
        "5_1": JobState("CANCELLED", "None", "n3", "0:0")}


def test_cluster_options_are_checked_before_anything_is_submitted(tmp_path: Path) -> None:
    assert slurm_time("1-12:00:00") == "1-12:00:00"
    for bad in ("1h", "", "12:00:00:00"):
        with pytest.raises(Exception):
            slurm_time(bad)
    assert key_value("account=lab") == ("account", "lab")
    done = pybench("run", "--partition", "gpu", "--results", str(tmp_path), check_rc=2)
    assert done.stderr.strip() == "pybench: error: --partition needs --executor slurm"
    done = pybench("run", "--executor", "slurm", "--slurm-opt", "time=5", "--results", str(tmp_path), check_rc=2)
    assert "set by pybench" in done.stderr
    done = pybench("collect", str(tmp_path), check_rc=2)
    assert "not a pybench Slurm submission" in done.stderr


def test_gpu_cells_ask_for_a_gpu_and_threads_for_cores() -> None:
    config = SlurmConfig.of(SlurmOptions(partitions=("a", "b", "a"), time="30", max_parallel=4), "cuda")
    assert config.partitions == ("a", "b")
    params = config.parameters("a")
    assert params["gpus_per_node"] == 1 and params["exclusive"] and params["array_parallelism"] == 4
    assert params["additional_parameters"]["time"] == "30" and params["partition"] == "a"


def test_report_names_each_machine_from_its_records_never_from_the_partition() -> None:
    from pybench.report.markdown import render_tables
    from factories import record, results_file, train

    docs = []
    for node, partition in (("node1", "gpu-a"), ("node2", "gpu-b")):
        doc = results_file([record(f, "resnet18", train(0.01, 0.02, 0.005), label=node) for f in ("pytorch", "jax")])
        doc.environment.update(label=node, hostname=node, slurm={"job_id": "7_0", "partition": partition})
        docs.append(doc)
    text = render_tables(docs)
    assert "GPU USED --- NVIDIA H200 (node1)" in text and "GPU USED --- NVIDIA H200 (node2)" in text
    assert "gpu-a" not in text and "gpu-b" not in text
