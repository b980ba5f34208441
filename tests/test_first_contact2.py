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
