"""Process lifetime and file safety, with real processes, real signals and real files.

Orchestrators here are small `python -c` scripts (or `python -m pybench` itself) driving the real
runner; workers are `python -c` children that report their pids through a file and hang.
"""

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factories import record, results_file, train
from processes import children, cmdline, running, wait_for
from pybench.records import results
from pybench.backends.flux import julia_env
from pybench.errors import UserError
from pybench.protocol.group import StopRule
from pybench.report.markdown import BEGIN_MARKER, END_MARKER, update_readme
from pybench.rounds.runner import run_cell
from pybench.records.spec import CellSpec


@pytest.fixture(autouse=True)
def hangup_as_default():
    """Under nohup (or a CI runner that ignores SIGHUP) children would inherit an ignored SIGHUP, and
    these tests are about what SIGHUP does; the test of the ignored case sets it up itself."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGHUP, previous)


PY = sys.executable
FAST = StopRule(precision=0.5, min_samples=5, max_samples=8, max_time=1)
SPEC = CellSpec("pytorch", "resnet18", "cpu", 1, 64, threads=1, stop=FAST)

# A worker that hangs after writing "<its pid> <its child's pid>" to argv[1] (atomically).
HANGING_WORKER = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]).pid if sys.argv[2] == "1" else 0
with open(sys.argv[1] + ".part", "w") as f:
    f.write(f"{os.getpid()} {child}")
os.rename(sys.argv[1] + ".part", sys.argv[1])
time.sleep(600)
"""

# An orchestrator: the real runner with pybench's signal handling, saving into a results folder.
ORCHESTRATOR = f"""
import sys
from pybench.machine import lifetime
from pybench.records import results
from pybench.rounds import runner
from pybench.protocol.group import StopRule
from pybench.records.spec import CellSpec
lifetime.install_signal_handlers()
store = results.ResultsFile.create(sys.argv[1], {{"label": "t"}}, [])
spec = CellSpec("pytorch", "resnet18", "cpu", 1, 64, threads=1, stop=StopRule(max_time=1))
worker = [sys.executable, "-c", {HANGING_WORKER!r}, sys.argv[2], sys.argv[3]]
try:
    store.add(runner.run_cell(spec, timeout=600, command=worker))
except lifetime.Terminated as exc:
    print(f"terminated by {{exc.name}}", file=sys.stderr)
    sys.exit(128 + exc.signum)
"""


@pytest.fixture
def leftovers():
    """Pids to SIGKILL after the test, should it fail half-way: a failing test leaks nothing."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if running(pid):
            os.kill(pid, signal.SIGKILL)


def worker_pids(pid_file: Path, orchestrator: subprocess.Popen, leftovers: list[int]) -> tuple[int, int]:
    leftovers.append(orchestrator.pid)
    assert wait_for(lambda: pid_file.exists() or orchestrator.poll() is not None, 60), "no worker"
    assert orchestrator.poll() is None, orchestrator.communicate()
    worker, child = map(int, pid_file.read_text().split())
    leftovers += [worker, child]
    return worker, child


# --- results files: unique names, full disks, long labels -------------------------------------

def test_runs_started_in_the_same_second_get_a_file_each(tmp_path):
    start = time.time() + 1.5  # all four create at the same wall-clock instant
    code = ("import sys, time; from pybench.records import results; time.sleep(max(0, float(sys.argv[2]) - time.time())); "
            "print(results.ResultsFile.create(sys.argv[1], {'label': 'box'}, []).path)")
    procs = [subprocess.Popen([PY, "-c", code, str(tmp_path), str(start)], stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    paths = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(paths)) == 4
    assert sorted(str(p) for p in tmp_path.iterdir()) == sorted(paths)
    for p in paths:  # each claimed with a complete document from the start
        assert results.load(Path(p)).records == []


FULL_DISK = """
import resource, sys
from pybench.records import results
from pybench.rounds import runner
from pybench.errors import UserError
from pybench.records.spec import CellSpec
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
spec = CellSpec("pytorch", "resnet18", "cpu", 1, 64, threads=1)
try:
    if sys.argv[2] == "probe":  # less room than the writability check writes
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
        results.ensure_writable(sys.argv[1])
    else:
        store = results.ResultsFile.create(sys.argv[1], {}, [])
        store.add(runner.failed_record(spec, "small"))
        resource.setrlimit(resource.RLIMIT_FSIZE, (store.path.stat().st_size + 1000, hard))
        store.add(runner.failed_record(spec, "x" * 100_000))
except UserError as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
"""


@pytest.mark.parametrize("stage", ["probe", "save"])
def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, stage):
    # RLIMIT_FSIZE makes writes fail (EFBIG) as a full disk does (ENOSPC), without root.
    p = subprocess.run([PY, "-c", FULL_DISK, str(tmp_path), stage], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "File too large" in p.stderr
    files = list(tmp_path.iterdir())
    if stage == "probe":
        assert "not writable" in p.stderr and files == []
    else:
        assert "left as it was" in p.stderr
        (path,) = files  # no temp file either
        assert [r.error for r in results.load(path).records] == ["small"]


@pytest.mark.parametrize("label, stem", [
    ("my box", "my-box"), ("../../etc/passwd", "etc-passwd"), ("-rf", "rf"), (".hidden", "hidden"),
    ("機械", "run"), ("", "run"), ("a" * 5000, "a" * results.STEM_MAX), ("x" + " /" * 100 + "y", "x-y"),
])
def test_safe_file_stem(label, stem):
    assert results.safe_file_stem(label) == stem


def test_a_very_long_label_still_makes_a_valid_file_and_temp_file(tmp_path):
    store = results.ResultsFile.create(tmp_path, {"label": "é" + "x" * 5000}, [])
    assert len(store.path.name) < 160 and store.path.name.startswith("x")
    store.add(record("pytorch", "resnet18", train(1, 1)))
    assert len(results.load(store.path).records) == 1
    assert [p.name for p in tmp_path.iterdir()] == [store.path.name]


# --- signals to the orchestrator -----------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_to_the_orchestrator_kills_the_worker_and_its_children(tmp_path, leftovers, sig):
    pid_file = tmp_path / "pids"
    proc = subprocess.Popen([PY, "-c", ORCHESTRATOR, str(tmp_path / "r"), str(pid_file), "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker, child = worker_pids(pid_file, proc, leftovers)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    if sig == signal.SIGINT:
        assert "KeyboardInterrupt" in err
    else:
        assert proc.returncode == 128 + sig and err == f"terminated by {sig.name}\n"
    assert wait_for(lambda: not running(worker) and not running(child), 10)
    assert [p.name for p in (tmp_path / "r").iterdir() if p.suffix != ".json"] == []


@pytest.mark.slow
def test_sigterm_to_pybench_run_is_one_line_and_leaves_no_worker(tmp_path, leftovers):
    proc = subprocess.Popen(
        [PY, "-m", "pybench", "run", "--framework", "pytorch", "--model", "resnet18", "--device",
         "cpu", "--batch-size", "1", "--image-size", "64", "--threads", "1", "--precision",
         "0.0001", "--max-time", "60", "--results", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    leftovers.append(proc.pid)

    def workers() -> list[int]:
        return [c for c in children(proc.pid) if "pybench.rounds.worker" in cmdline(c)]

    assert wait_for(lambda: workers() or proc.poll() is not None, 120), "no worker"
    (worker,) = workers()
    leftovers.append(worker)
    time.sleep(1)  # the worker is importing torch or measuring
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in err
    assert wait_for(lambda: not running(worker), 10)
    (path,) = tmp_path.iterdir()  # the run's file, claimed at start; no temp file
    assert results.load(path).records == []
    assert err.splitlines()[-2:] == [f"pybench: 0 cell(s) kept in {path}", "pybench: terminated by SIGTERM"]


def test_sigkill_to_the_orchestrator_takes_the_worker_with_it(tmp_path, leftovers):
    pid_file = tmp_path / "pids"
    proc = subprocess.Popen([PY, "-c", ORCHESTRATOR, str(tmp_path / "r"), str(pid_file), "0"])
    worker, _ = worker_pids(pid_file, proc, leftovers)
    proc.kill()
    proc.wait()
    assert wait_for(lambda: not running(worker), 10), "worker orphaned"


# A worker started without the parent-death signal (as where there is none): its watchdog.
WATCHED = """
import subprocess, sys, time
watched = "import sys; from pybench.machine.lifetime import watch_parent; watch_parent(0.1); exec(sys.argv[3])"
subprocess.Popen([sys.executable, "-c", watched, sys.argv[1], "1", sys.argv[2]], start_new_session=True)
time.sleep(600)
"""


def test_a_worker_whose_parent_vanishes_kills_itself_and_its_children(tmp_path, leftovers):
    pid_file = tmp_path / "pids"
    proc = subprocess.Popen([PY, "-c", WATCHED, str(pid_file), HANGING_WORKER])
    worker, child = worker_pids(pid_file, proc, leftovers)
    proc.kill()
    proc.wait()
    assert wait_for(lambda: not running(worker) and not running(child), 10)


# Saves as fast as it can until a signal; a signal must never cost the file or leave a temp file.
SAVING = """
import sys
from pybench.machine import lifetime
from pybench.records import results
from pybench.rounds import runner
from pybench.records.spec import CellSpec
lifetime.install_signal_handlers()
store = results.ResultsFile.create(sys.argv[1], {}, [])
rec = runner.failed_record(CellSpec("pytorch", "resnet18", "cpu", 1, 64, threads=1), "x" * 20_000)
print("saving", flush=True)
try:
    while True:
        store.add(rec)
except lifetime.Terminated as exc:
    sys.exit(128 + exc.signum)
"""


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.13, 0.31])
def test_a_signal_during_saves_leaves_a_whole_file_and_no_temp_file(tmp_path, delay):
    proc = subprocess.Popen([PY, "-c", SAVING, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "saving\n"
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    (path,) = tmp_path.iterdir()
    results.load(path)


DEFERRED = """
import os, signal
from pybench.machine import lifetime
lifetime.install_signal_handlers()
try:
    with lifetime.signals_deferred():
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(10**5):
            pass
        print("block finished", flush=True)
except lifetime.Terminated as exc:
    print("then", exc.name, flush=True)
"""


def test_a_signal_inside_a_deferred_block_is_raised_after_it():
    p = subprocess.run([PY, "-c", DEFERRED], capture_output=True, text=True, timeout=30)
    assert p.stdout == "block finished\nthen SIGHUP\n", p.stderr


def test_an_ignored_hangup_stays_ignored():  # nohup pybench run ...
    code = ("import os, signal, time; from pybench.machine import lifetime; lifetime.install_signal_handlers(); "
            "os.kill(os.getpid(), signal.SIGHUP); time.sleep(0.2); print('alive')")
    p = subprocess.run(["nohup", PY, "-c", code], capture_output=True, text=True, timeout=30)
    assert p.stdout == "alive\n"


def test_a_tiny_timeout_is_shown_as_given():
    rec = run_cell(SPEC, timeout=0.001, command=[PY, "-c", "import time; time.sleep(60)"])
    assert rec.error.startswith("timed out after 0.001 s (hung?)")


# --- files read by report and diff ---------------------------------------------------------------

def good_file(folder: Path, name: str = "good.json", records: list | None = None) -> Path:
    store = results.ResultsFile(folder / name, results_file([]).environment, ["pybench", "run"])
    store.records = [record("pytorch", "resnet18", train(0.1, 0.2))] if records is None else records
    store.save()
    return store.path


def test_a_fifo_is_refused_at_once_and_skipped_in_a_folder(tmp_path):
    fifo = tmp_path / "x.json"
    os.mkfifo(fifo)
    good_file(tmp_path)
    p = subprocess.run([PY, "-m", "pybench", "report", str(fifo)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and p.stderr == f"pybench: error: {fifo}: not a regular file\n"
    assert len(results.collect([tmp_path])) == 1


def test_devices_and_huge_files_are_refused_without_reading_them(tmp_path):
    with pytest.raises(UserError, match="not a regular file"):
        results.load(Path("/dev/zero"))
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(results.MAX_FILE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(UserError, match="more than the"):
        results.load(huge)


def test_a_file_without_records_says_so(tmp_path):
    empty = good_file(tmp_path, "empty.json", records=[])
    p = subprocess.run([PY, "-m", "pybench", "report", str(empty)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no records in" in p.stderr


# --- README and plot -----------------------------------------------------------------------------

def test_readme_through_a_symlink_keeps_the_link_and_the_mode(tmp_path):
    real = tmp_path / "docs" / "README.md"
    real.parent.mkdir()
    real.write_text(f"intro\n{BEGIN_MARKER}\nold\n{END_MARKER}\nend\n")
    real.chmod(0o640)
    link = tmp_path / "README.md"
    link.symlink_to(Path("docs") / "README.md")
    update_readme(link, "new")
    assert link.is_symlink()
    assert real.read_text() == f"intro\n{BEGIN_MARKER}\nnew\n{END_MARKER}\nend\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert sorted(p.name for p in real.parent.iterdir()) == ["README.md"]


def test_a_new_plot_gets_the_umask_mode(tmp_path):
    from pybench.report.plot import plot

    old = os.umask(0o027)
    try:
        plot([results_file([record("pytorch", "resnet18", train(0.1, 0.2), device="cpu")])],
             tmp_path / "p.svg")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p.svg").stat().st_mode) == 0o640


def without_root_powers() -> list[str]:
    """A command prefix under which permission bits bind: as root, drop the capabilities that
    override them (setpriv); as anyone else, nothing."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop its file powers")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


@pytest.mark.parametrize("target", ["readme", "plot"])
def test_unwritable_readme_or_plot_is_one_line_exit_2(tmp_path, target):
    good = good_file(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    readme = locked / "README.md"
    readme.write_text(f"{BEGIN_MARKER}\n{END_MARKER}\n")
    locked.chmod(0o555)  # nothing can be created in it: no temp file, so no atomic replace
    option = ["--readme", readme] if target == "readme" else ["--plot", locked / "p.png"]
    try:
        p = subprocess.run([*without_root_powers(), PY, "-m", "pybench", "report", good,
                            *map(str, option)], capture_output=True, text=True, timeout=120)
    finally:
        locked.chmod(0o755)
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("pybench: error: ")
    assert "Permission denied" in p.stderr
    assert [p.name for p in locked.iterdir()] == ["README.md"]
    assert readme.read_text() == f"{BEGIN_MARKER}\n{END_MARKER}\n"


def test_a_read_only_readme_is_left_alone(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{BEGIN_MARKER}\n{END_MARKER}\n")
    readme.chmod(0o444)
    code = f"from pybench.report.markdown import update_readme; update_readme({str(readme)!r}, 'new')"
    p = subprocess.run([*without_root_powers(), PY, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode != 0 and f"UserError: {readme}: not writable" in p.stderr
    assert readme.read_text() == f"{BEGIN_MARKER}\n{END_MARKER}\n"


# --- terminal output -----------------------------------------------------------------------------

@pytest.mark.slow
def test_piped_output_is_not_cut_to_80_columns():
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    p = subprocess.run([PY, "-m", "pybench", "list"], capture_output=True, text=True, timeout=120,
                       env=env)
    assert p.returncode == 0, p.stderr
    (row,) = [ln for ln in p.stdout.splitlines() if "138,357,544" in ln]  # vgg16, on one line
    assert "forward, backward, total, inference" in row and len(row) > 80
    assert "…" not in p.stdout


# --- setup-julia on a network that never answers -------------------------------------------------

@pytest.fixture
def juliacall_present(monkeypatch):
    """setup_julia starts only where juliacall is installed; pretend it is (it is not imported)."""
    find_spec = julia_env.importlib.util.find_spec
    monkeypatch.setattr(julia_env.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "juliacall" else find_spec(name, *a))


def test_installing_julia_from_a_silent_server_fails_in_one_line(tmp_path, monkeypatch, capfd,
                                                                  juliacall_present):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    fake = tmp_path / "juliapkg"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "compat.py").write_text("class Compat:\n    parse = staticmethod(str)\n")
    (fake / "find_julia.py").write_text(
        "import urllib.request\n"
        "def find_julia(compat, prefix, install):\n"
        "    print('Querying Julia versions')\n"
        f"    urllib.request.urlopen('http://127.0.0.1:{silent.getsockname()[1]}/versions.json')\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setattr(julia_env, "find_julia", lambda: None)
    monkeypatch.setattr(julia_env, "NETWORK_STALL_S", 0.5)
    try:
        assert julia_env.setup_julia() == 1
    finally:
        silent.close()
    err = capfd.readouterr().err.splitlines()
    assert err[0] == "Querying Julia versions"  # juliapkg's progress, shown
    assert err[-1].startswith("pybench: could not install Julia (") and "timed out" in err[-1]
    assert err[-1].endswith("then rerun python -m pybench setup-julia")


def test_a_julia_step_that_hangs_is_stopped_with_its_children(tmp_path, monkeypatch, capfd,
                                                               juliacall_present, leftovers):
    pid_file = tmp_path / "pids"
    julia = tmp_path / "julia"
    julia.write_text(f"#!/bin/sh\nsleep 600 &\necho $$ $! > {pid_file}\nwait\n")
    julia.chmod(0o755)
    monkeypatch.setattr(julia_env, "locate_julia", lambda: (str(julia), ""))
    monkeypatch.setattr(julia_env, "INSTANTIATE_TIMEOUT_S", 1)
    assert julia_env.setup_julia() == 1
    err = capfd.readouterr().err
    assert err == ("pybench: downloading Julia packages took over 1 s and was stopped: check the "
                   "network or proxy (HTTPS_PROXY, JULIA_PKG_SERVER), then rerun python -m pybench "
                   "setup-julia\n")
    shell, sleep = map(int, pid_file.read_text().split())
    leftovers += [shell, sleep]
    assert wait_for(lambda: not running(shell) and not running(sleep), 10)
