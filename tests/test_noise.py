"""The noise audit: real /proc reads, crafted /proc and /sys trees, a real busy process, a fake NVML."""

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from pybench.machine import noise
from pybench.errors import UserError
from pybench.machine.noise import (
    BusyProcess, CpuShare, GpuState, NoiseAudit, StealMeter, advice, busy_processes, capture_end,
    capture_start, cpu_frequency, gpu_states, load_average,
)

TICK = os.sysconf("SC_CLK_TCK")


def _spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _stat_line(user, idle, steal):
    return f"cpu  {user} 0 0 {idle} 0 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"


def test_real_audit_round_trips_through_json():
    meter = StealMeter()
    audit = capture_start(window=0.05)
    _spin(0.1)
    audit = capture_end(audit, meter)
    assert audit.cores >= 1 and len(audit.load_avg) == 3
    assert audit.during is not None and 0 <= audit.during.steal <= 1 and 0 <= audit.during.other_busy <= 1
    assert all(p.pid != os.getpid() for p in audit.busy_processes)
    assert NoiseAudit.from_json(json.loads(json.dumps(audit.to_json()))) == audit


def test_steal_and_other_work_from_a_crafted_proc_stat(tmp_path):
    (tmp_path / "stat").write_text(_stat_line(user=1000, idle=1000, steal=0))
    meter = StealMeter(tmp_path)
    # 1000 ticks later: 100 stolen, 300 busy (this test's own CPU time is a tick or so), 600 idle.
    (tmp_path / "stat").write_text(_stat_line(user=1300, idle=1600, steal=100))
    share = meter.read()
    assert share.steal == pytest.approx(0.1)
    assert share.other_busy == pytest.approx(0.3, abs=0.01)


def test_unreadable_proc_gives_none(tmp_path):
    assert StealMeter(tmp_path).read() is None
    assert load_average(tmp_path) is None
    (tmp_path / "loadavg").write_text("0.50 0.40 0.30 1/100 42\n")
    assert load_average(tmp_path) == (0.5, 0.4, 0.3)


def _proc(root, pid, comm, ppid, utime, stime):
    d = root / str(pid)
    d.mkdir(exist_ok=True)
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} 1 1 0 -1 0 0 0 0 0 {utime} {stime} 0 0 20 0\n")


def test_busy_processes_from_crafted_proc_exclude_this_process_tree(tmp_path):
    me = os.getpid()
    _proc(tmp_path, 100, "my (odd) name", 1, 0, 0)
    _proc(tmp_path, 101, "idle", 1, 0, 0)
    _proc(tmp_path, 102, "worker", me, 0, 0)  # our child: the benchmark's own work
    _proc(tmp_path, 103, "grandchild", 102, 0, 0)
    before = noise._processes(tmp_path)
    _proc(tmp_path, 100, "my (odd) name", 1, TICK // 2, 0)  # half a core for one second
    _proc(tmp_path, 101, "idle", 1, 0, 0)
    _proc(tmp_path, 102, "worker", me, TICK, 0)
    _proc(tmp_path, 103, "grandchild", 102, TICK, 0)
    after = noise._processes(tmp_path)
    assert noise._busy(before, after, 1.0, me, 5.0) == (BusyProcess(100, "my (odd) name", 50.0),)


def test_a_real_busy_process_is_listed_and_our_own_child_is_not():
    loop = [sys.executable, "-c", "while True: pass"]
    child = subprocess.Popen(loop)
    # An orphan (its parent shell exits at once) is not ours: it stands for someone else's job.
    orphan = int(subprocess.run(["sh", "-c", f"{shlex.join(loop)} >/dev/null 2>&1 & echo $!"],
                                capture_output=True, text=True, check=True).stdout)
    try:
        time.sleep(0.2)
        pids = {p.pid for p in busy_processes(window=0.5)}
        assert orphan in pids and child.pid not in pids
    finally:
        os.kill(orphan, signal.SIGKILL)
        child.kill()
        child.wait()


def test_cpu_frequency_from_crafted_sys(tmp_path):
    cpu = tmp_path / "devices/system/cpu"
    for i, khz in enumerate((2_000_000, 3_000_000)):
        d = cpu / f"cpu{i}/cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_cur_freq").write_text(f"{khz}\n")
        (d / "scaling_governor").write_text("powersave\n" if i else "performance\n")
    (cpu / "intel_pstate").mkdir()
    (cpu / "intel_pstate/no_turbo").write_text("0\n")
    assert cpu_frequency(tmp_path) == (2500.0, "performance,powersave", True)
    (cpu / "intel_pstate/no_turbo").unlink()
    (cpu / "cpufreq").mkdir()
    (cpu / "cpufreq/boost").write_text("0\n")
    assert cpu_frequency(tmp_path)[2] is False
    assert cpu_frequency(tmp_path / "missing") == (None, None, None)


class FakeNvml(SimpleNamespace):
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid != "GPU-1":
            raise RuntimeError("NVML_ERROR_NOT_FOUND")
        return "h"

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return 0x4 | 0x40

    def nvmlDeviceGetClockInfo(self, h, kind):
        return {1: 1500, 2: 2600}[kind]

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return 1980

    def nvmlDeviceGetTemperature(self, h, sensor):
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")

    def nvmlShutdown(self):
        raise RuntimeError("already shut down")  # must not escape either


def test_gpu_states_wrap_every_nvml_error(monkeypatch):
    monkeypatch.setattr(noise, "nvml_session", lambda: contextlib.nullcontext(FakeNvml()))
    ok, missing = gpu_states(["GPU-1", "GPU-2"])
    assert ok == GpuState("GPU-1", 1500, 1980, 2600, None, ("sw_power_cap", "hw_thermal"))
    assert missing == GpuState("GPU-2", None, None, None, None, None)
    monkeypatch.setattr(noise, "nvml_session", lambda: contextlib.nullcontext(None))  # no driver
    assert gpu_states(["GPU-1"]) == (GpuState("GPU-1", None, None, None, None, None),)
    assert gpu_states([]) == ()


def _audit(**kw):
    quiet = dict(cores=2, load_avg=(0.1, 0.1, 0.1), busy_processes=(), cpu_freq_mhz=None,
                 governor="performance", turbo=False)
    return NoiseAudit(**{**quiet, **kw})


def test_advice_names_every_source_of_noise_once():
    throttled = GpuState("GPU-1", 1200, 1980, 2600, 85, ("gpu_idle", "hw_thermal"))
    lines = advice(_audit(
        load_avg=(3.0, 2.0, 1.0), busy_processes=(BusyProcess(42, "stress", 99.0),),
        governor="powersave", turbo=True, during=CpuShare(steal=0.05, other_busy=0.3, seconds=60),
        gpus=(throttled,), gpus_end=(throttled,)))
    text = "\n".join(lines)
    for word in ("load average 3.00", "'stress' (pid 42)", "stole 5.0%", "other work used 30%",
                 "'powersave'", "turbo", "hw_thermal"):
        assert word in text
    assert len(lines) == 7 and "gpu_idle" not in text
    assert advice(_audit(gpus=(GpuState("GPU-1", 210, 1980, 1600, 30, ("gpu_idle",)),))) == []


def test_malformed_audit_is_a_user_error():
    with pytest.raises(UserError, match="malformed noise audit"):
        NoiseAudit.from_json({"cores": 2})
