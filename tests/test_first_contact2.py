"""Issue 28, "first contact, round two", checked without a GPU or Julia: NVML through one module and
a fake pynvml, the GPU worker's core pinning through a scripted affinity, the Julia version a worker
would start, the fp16 Flux rows, what a Flux worker's signals leave in its record, and the device
check's warm-up rule."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest

from pybench.machine import gpu_probe, noise, nvml
from pybench.rounds import worker

GPU = "GPU-8e1d7f4c-0000-4000-8000-000000000001"


# --- one NVML module ---------------------------------------------------------------------------------


class OldPynvml(SimpleNamespace):
    """An old pynvml shadowing nvidia-ml-py: neither clock-reason call, no temperature or max clock."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return "h"

    def nvmlDeviceIsMigDeviceHandle(self, h):
        return False

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1755

    def nvmlShutdown(self):
        pass


class SyncBoosted(OldPynvml):
    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):  # a driver before 535: the old name only
        return 0x10 | 0x1  # sync boost, idle

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return 1980

    def nvmlDeviceGetTemperature(self, h, sensor):
        return 40


def session(fake):
    return lambda: contextlib.nullcontext(fake)


def test_a_function_this_pynvml_lacks_is_a_missing_fact(monkeypatch):
    monkeypatch.setattr(gpu_probe, "nvml_session", session(OldPynvml()))
    assert gpu_probe.clock_state(GPU) == {"sm_mhz": 1755, "reasons": None}
    assert nvml.nvml_call(OldPynvml(), "nvmlDeviceGetCurrentClocksEventReasons", "h") is None
    assert nvml.nvml_call(OldPynvml(), "nvmlDeviceGetClockInfo", "h", 1) == 1755


def test_the_clock_probe_and_the_noise_audit_read_one_table(monkeypatch):
    """Sync boost holds a GPU to its group's lowest clock: a slowdown for both readers alike."""
    monkeypatch.setattr(gpu_probe, "nvml_session", session(SyncBoosted()))
    monkeypatch.setattr(noise, "nvml_session", session(SyncBoosted()))
    state = gpu_probe.clock_state(GPU)
    assert state == {"sm_mhz": 1755, "reasons": ["gpu_idle", "sync_boost"]}
    assert gpu_probe.clock_warnings({"train": {"start": state, "end": state}}) == [
        "train: clocks slowed down during sampling (sync_boost)"]
    (audit_gpu,) = noise.gpu_states([GPU])
    assert audit_gpu.reasons == ("gpu_idle", "sync_boost")
    audit = noise.NoiseAudit(cores=2, load_avg=None, busy_processes=(), cpu_freq_mhz=None, governor=None,
                             turbo=None, gpus=(audit_gpu,))
    assert any("sync_boost" in line for line in noise.advice(audit))
    assert "gpu_idle" not in nvml.SLOWDOWNS


def test_the_noise_audit_of_an_old_pynvml_keeps_what_it_can_read(monkeypatch):
    monkeypatch.setattr(noise, "nvml_session", session(OldPynvml()))
    assert noise.gpu_states([GPU]) == (noise.GpuState(GPU, 1755, None, 1755, None, None),)


# --- pinning a GPU worker ---------------------------------------------------------------------------


def test_a_gpu_worker_falls_back_to_every_allowed_core_when_too_few_are_local(monkeypatch):
    pinned = []
    monkeypatch.setattr(worker.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 8, 9})  # a cgroup's share
    monkeypatch.setattr(worker.os, "sched_setaffinity", lambda pid, cores: pinned.append(cores))
    monkeypatch.setattr(worker, "local_cores", lambda uuid: [0, 1, 4, 5, 6, 7])  # NUMA node 0
    assert worker.pin_cores(2, GPU) == [0, 1]  # enough local cores: all of them
    assert worker.pin_cores(3, GPU) == [0, 1, 2, 3, 8, 9]  # two local, three threads: every allowed core
    monkeypatch.setattr(worker, "local_cores", lambda uuid: None)
    assert worker.pin_cores(3, GPU) == [0, 1, 2, 3, 8, 9]
    assert pinned == [[0, 1], [0, 1, 2, 3, 8, 9], [0, 1, 2, 3, 8, 9]]


# --- which Julia a worker starts --------------------------------------------------------------------


def fake_julia(path, version: str):
    """An executable that answers `--version` as Julia does (and nothing else)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\n[ "$1" = --version ] && echo "julia version {version}" && exit 0\nexit 1\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def no_julia(tmp_path, monkeypatch):
    from pybench.backends.flux import julia_env

    for var in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE", "PYTHON_JULIAPKG_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("JULIAUP_DEPOT_PATH", str(tmp_path / "depot"))
    monkeypatch.setattr(julia_env, "PROJECT", tmp_path / "project")
    monkeypatch.setattr(julia_env.sys, "prefix", str(tmp_path / "venv"))
    return tmp_path


def juliaup_adds(root, version: str):
    """What `juliaup add` leaves: the binary under the juliaup folder, listed in juliaup.json."""
    import json

    folder = root / "depot" / "juliaup"
    name = f"julia-{version}+0.x64.linux.gnu"
    fake_julia(folder / name / "bin" / "julia", version)
    meta = folder / "juliaup.json"
    data = json.loads(meta.read_text()) if meta.exists() else {"Default": "release", "InstalledVersions": {}}
    data["InstalledVersions"][f"{version}+0.x64.linux.gnu"] = {"Path": name}
    meta.write_text(json.dumps(data))
    return str(folder / name / "bin" / "julia")


def test_a_julia_on_the_path_outside_the_compat_range_is_refused_with_the_fix(no_julia):
    from pybench.backends.flux import julia_env

    exe = fake_julia(no_julia / "bin" / "julia", "1.12.1")
    assert julia_env.find_julia() is None
    exe_found, why = julia_env.locate_julia()
    assert exe_found is None and "\n" not in why
    assert f"{exe} is Julia 1.12.1" in why and "1.10.3 - 1.11" in why
    assert "juliaup add 1.11" in why and "setup-julia" in why
    assert julia_env.juliacall_env(2).get("PYTHON_JULIACALL_EXE") is None  # no worker is pointed at it
    fake_julia(exe, "1.11.7")
    assert julia_env.find_julia() == str(exe)


def test_a_matching_julia_that_juliaup_added_is_found_beside_a_newer_default(no_julia, monkeypatch):
    from pybench.backends.flux import julia_env

    fake_julia(no_julia / "bin" / "julia", "1.12.1")  # juliaup's launcher, on the release channel
    juliaup_adds(no_julia, "1.10.9")
    newest = juliaup_adds(no_julia, "1.11.7")
    juliaup_adds(no_julia, "1.12.1")
    assert julia_env.find_julia() == newest
    monkeypatch.setenv("PYTHON_JULIACALL_EXE", str(no_julia / "bin" / "julia"))  # named: the only one
    assert julia_env.find_julia() is None and "is Julia 1.12.1" in julia_env.locate_julia()[1]


def test_pkg_compat_specifiers_read_as_pkg_reads_them():
    from pybench.backends.flux.julia_env import JULIA_COMPAT
    from pybench.backends.flux.julia_version import in_compat, newest_channel, project_compat

    assert JULIA_COMPAT == "1.10.3 - 1.11" and newest_channel(JULIA_COMPAT) == "1.11"
    inside = [(1, 10, 3), (1, 10, 10), (1, 11, 0), (1, 11, 99)]
    outside = [(1, 10, 2), (1, 12, 0), (1, 9, 4), (2, 0, 0)]
    assert all(in_compat(v, JULIA_COMPAT) for v in inside)
    assert not any(in_compat(v, JULIA_COMPAT) for v in outside)
    assert in_compat((1, 11, 2), "1.10 - 1.11.2") and not in_compat((1, 11, 3), "1.10 - 1.11.2")
    assert in_compat((1, 9, 0), "1.6") and not in_compat((2, 0, 0), "^1.6")
    assert in_compat((0, 2, 9), "0.2.3") and not in_compat((0, 3, 0), "0.2.3")
    assert in_compat((0, 0, 3), "0.0.3") and not in_compat((0, 0, 4), "0.0.3")
    assert in_compat((1, 12, 0), "1.10, 1.12") and not in_compat((0, 9, 0), "1.10, 1.12")
    toml = '[deps]\njulia = "nope"\n\n[compat]\nFlux = "0.16"\njulia = "1.10 - 1.11"\n\n[extras]\n'
    assert project_compat(toml, "julia") == "1.10 - 1.11" and project_compat(toml, "CUDA") is None
    with pytest.raises(ValueError):
        in_compat((1, 10, 0), ">= 1.10")


def test_project_bounds_partialfunctions_where_functors_can_rebuild_it():
    from pybench.backends.flux.julia_env import PROJECT
    from pybench.backends.flux.julia_version import project_compat

    text = (PROJECT / "Project.toml").read_text()
    assert project_compat(text, "PartialFunctions") == "1.2.1"
    deps = text.split("[deps]")[1].split("[compat]")[0]
    assert 'PartialFunctions = "570af359-4316-4cb7-8c74-252c00c2016b"' in deps  # Pkg bounds deps only


# --- fp16 Flux rows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model, refused", [
    ("resnet50", True), ("resnet18", True), ("vgg16_bn", True), ("batchnorm2d", True),
    ("vgg16", False), ("vgg19", False), ("conv3x3_s1", False), ("dense1024_512", False)])
def test_fp16_flux_rows_with_batchnorm_are_refused_with_the_reason(model, refused):
    from pybench.backends.flux import FP16_BATCHNORM, FRAMEWORK
    from pybench.machine.devices import Device
    from pybench.protocol.workloads import get_workload
    from pybench.records.spec import CellSpec

    gpu = Device("cuda", 0, GPU, "NVIDIA H100 80GB HBM3")
    size = 224 if not get_workload(model).is_layer else 32
    fp16 = CellSpec("flux", model, "cuda:0", 8, size, 1, gpu=gpu, dtype="fp16")
    assert FRAMEWORK.unsupported(fp16) == (FP16_BATCHNORM if refused else None)
    assert FRAMEWORK.unsupported(CellSpec("flux", model, "cuda:0", 8, size, 1, gpu=gpu)) is None
    on_cpu = FRAMEWORK.unsupported(CellSpec("flux", model, "cpu", 8, size, 1, dtype="fp16"))
    assert on_cpu is not None and "does not run fp16 on the CPU" in on_cpu


# --- a Flux worker timed out or interrupted -----------------------------------------------------------

# A worker as juliacall with PYTHON_JULIACALL_HANDLE_SIGNALS=yes leaves it (signals-unix.c): SIGTERM and
# SIGINT blocked in the thread that started Julia, a signal thread waiting for them, and on SIGTERM a
# backtrace and exit status 128 + 15.  Then, as FluxBackend.prepare does, the Flux backend's
# `default_signals` (or not, in the control), and the round's wait.
JULIA_LIKE_WORKER = """
import os, signal, sys, threading, time
wanted = {signal.SIGTERM, signal.SIGINT}
signal.pthread_sigmask(signal.SIG_BLOCK, wanted)

def julia_signal_thread():
    sig = signal.sigwait(wanted)
    sys.stderr.write(f"\\n[{os.getpid()}] signal ({sig}): Terminated\\nin expression starting at none:0\\n"
                     "epoll_wait at /lib/x86_64-linux-gnu/libc.so.6 (unknown line)\\n"
                     "Allocations: 43215 (Pool: 43160; Big: 55); GC: 0\\n")
    sys.stderr.flush()
    os._exit(128 + sig)

threading.Thread(target=julia_signal_thread, daemon=True).start()
if sys.argv[2] == "restore":
    from pybench.backends.flux.backend import default_signals
    default_signals()
print("julia: loading PyBench.jl", file=sys.stderr, flush=True)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""


def run_flux_round(tmp_path, restore: bool, sig: int | None, timeout: float = 60):
    """One round of a Flux cell through the real runner, its worker being JULIA_LIKE_WORKER; `sig`
    is sent to the worker once it waits."""
    import os
    import sys
    import threading
    import time

    from pybench.records.spec import CellSpec
    from pybench.rounds.runner import run_cell

    script, pidfile = tmp_path / "worker.py", tmp_path / "worker.pid"
    script.write_text(JULIA_LIKE_WORKER)
    spec = CellSpec("flux", "resnet18", "cpu", 2, 64, threads=1)
    got = []
    round_ = threading.Thread(target=lambda: got.append(run_cell(
        spec, timeout, [sys.executable, str(script), str(pidfile), "restore" if restore else "as-is"])))
    round_.start()
    if sig is not None:
        deadline = time.monotonic() + 30
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(int(pidfile.read_text()), sig)
    round_.join(60)
    return got[0]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_an_interrupted_flux_worker_leaves_a_record_naming_the_signal(tmp_path, sig):
    import signal

    record = run_flux_round(tmp_path, restore=True, sig=getattr(signal, sig))
    assert record.status == "failed" and record.error == f"worker killed by {sig}"
    assert not any("Allocations" in line for line in record.stderr_tail)


def test_a_flux_worker_without_the_hand_back_answers_sigterm_with_a_backtrace(tmp_path):
    import signal

    record = run_flux_round(tmp_path, restore=False, sig=signal.SIGTERM)
    assert record.error.startswith("worker exited with code 143: Allocations")


@pytest.mark.slow
def test_a_flux_worker_past_its_timeout_is_a_record_saying_so(tmp_path):
    record = run_flux_round(tmp_path, restore=False, sig=None, timeout=3)  # SIGKILLed: Julia has no say
    assert record.status == "failed" and record.error == "timed out after 3 s (hung?); worker killed"
    assert record.stderr_tail == ["julia: loading PyBench.jl"]


# --- the device check's warm-up rule ------------------------------------------------------------------


@pytest.fixture
def device_check(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import device_check

    return device_check


def warmed_record(warmup: dict[str, list[float]], device: str = "cuda:0"):
    from pybench.protocol.group import PhaseSamples
    from pybench.records.record import CellRecord
    from pybench.records.round import Round
    from pybench.records.spec import CellSpec
    spec = CellSpec("pytorch", "resnet18", device, 8, 224, 1, phases=tuple(warmup))
    phases = {p: PhaseSamples(first_run=1.0, warmup=w, samples=[0.01] * 5, stop_reason="converged")
              for p, w in warmup.items()}
    return CellRecord(spec=spec, status="ok", title="PyTorch", rounds=[Round(phases=phases, number=1, run="r")])


def test_the_device_check_holds_only_each_groups_headline_phase_to_the_warm_up_time(device_check):
    """What an H100 gives resnet18: forward 0.35 s and backward 0.65 s of a 1 s train warm-up."""
    warmup_checks = device_check.warmup_checks
    gpu = {"forward": [0.035] * 10, "backward": [0.065] * 10, "total": [0.1] * 10,
           "inference": [0.2] * 5, "step": [0.25] * 4}
    checks = warmup_checks(warmed_record(gpu), gpu=True)
    assert [passed for passed, _ in checks] == [True] * 3
    assert checks[0][1].endswith("train: 10 warm-up iterations of total, 1.000 s (the protocol's 3+, at least 1 s)")
    short = warmed_record({**gpu, "total": [0.09] * 10, "step": [0.5, 0.5]})
    assert [passed for passed, _ in warmup_checks(short, gpu=True)] == [False, False, True]  # 0.9 s; 2 < 3


def test_the_cpu_dry_run_applies_the_same_warm_up_rule_with_the_cpus_bounds(device_check):
    warmup_checks = device_check.warmup_checks
    none = {"forward": [], "backward": [], "total": []}  # the CPU has no warm-up (a primed cache)
    one = {"forward": [0.4], "backward": [0.8], "total": [1.2]}
    assert warmup_checks(warmed_record(none, "cpu"), gpu=False)[0][0]
    assert not warmup_checks(warmed_record(one, "cpu"), gpu=False)[0][0]
    assert not warmup_checks(warmed_record(one), gpu=True)[0][0]  # 1.2 s but one iteration on a GPU


def test_the_device_check_prints_each_rounds_anatomy_where_it_was_recorded(device_check, capsys):
    rec = warmed_record({"forward": [0.4], "backward": [0.8], "total": [1.2]}, "cpu")
    device_check.anatomy(rec)  # no timeline: nothing to say
    rec.rounds[0].timeline = {"started": 0.5, "imported": 2.0, "prepared": 3.0, "train.first_run": 4.0,
                              "train.warmup": 5.5, "train.sampling": 9.0, "exited": 9.5}
    device_check.anatomy(rec)
    out = capsys.readouterr().out
    assert out.count("anatomy") == 1 and "round 1 anatomy, 9.50 s: start 0.50, imports 1.50" in out
