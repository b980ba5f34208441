"""GPU rows without a GPU: what NVML would report is faked (tests/fakes.py's FakeNVML: clocks,
throttle reasons, CPU affinity, compute processes, the driver's CUDA); the logic that reads it, warms up, pins, labels and records is
the real one.  Also the install checks (driver vs torch build, JAX's CUDA plugin, Triton's C
toolchain), TF32 under torch's two APIs, GC time per sample, and the fp16 label of Flux rows."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fakes import A100, H100, SLICE_1, mig_a100, two_h100s
from pybench.machine import gpu_probe
from pybench.rounds import worker
from pybench.backends.jax import Jax
from pybench.backends.pytorch import PyTorch
from pybench.machine.devices import Device
from pybench.errors import UserError
from pybench.protocol.phases import GC_SUFFIX
from pybench.protocol.group import GPU_WARMUP_MAX, GPU_WARMUP_MIN_TIME, PhaseSamples, StopRule, measure
from pybench.records.record import Malformed
from pybench.records.round import Round
from pybench.records.spec import CellSpec, cuda_index


# --- clocks ----------------------------------------------------------------------------------------


def test_clock_state_names_the_reasons_and_asks_a_slices_gpu(nvml):
    devices = mig_a100()
    devices[0].update(sm_mhz=1410, reasons=0x4 | 0x1)  # power cap + idle, on the slice's parent
    nvml(devices)
    assert gpu_probe.clock_state(SLICE_1) == {"sm_mhz": 1410, "reasons": ["gpu_idle", "sw_power_cap"]}


def test_clock_reasons_fall_back_to_the_old_throttle_call(nvml):
    devices = two_h100s()
    devices[1]["reasons"] = 0x40
    nvml(devices, fail=("nvmlDeviceGetCurrentClocksEventReasons",))
    assert gpu_probe.clock_state(H100)["reasons"] == ["hw_thermal"]


def test_clock_state_without_nvml_is_unknown(nvml):
    nvml(two_h100s(), fail=("nvmlInit",))
    assert gpu_probe.clock_state(H100) == {"sm_mhz": None, "reasons": None}


def test_unsettled_or_slowed_clocks_warn_and_settled_ones_do_not():
    settled = {"start": {"sm_mhz": 1980, "reasons": ["gpu_idle"]}, "end": {"sm_mhz": 1965, "reasons": []}}
    ramping = {"start": {"sm_mhz": 345, "reasons": []}, "end": {"sm_mhz": 1980, "reasons": []}}
    hot = {"start": {"sm_mhz": 1700, "reasons": []}, "end": {"sm_mhz": 1690, "reasons": ["hw_thermal"]}}
    unknown = {"start": {"sm_mhz": None, "reasons": None}, "end": {"sm_mhz": None, "reasons": None}}
    assert gpu_probe.clock_warnings({"train": settled, "inference": unknown}) == []
    warnings = gpu_probe.clock_warnings({"train": ramping, "step": hot})
    assert warnings == ["train: SM clock not settled (345 MHz at the start of sampling, 1980 MHz at the end)",
                        "step: clocks slowed down during sampling (hw_thermal)"]


class Scripted:
    """Iterations of scripted seconds, advancing an injected clock; logs samples and clock marks."""

    def __init__(self, seconds: float, gc: float | None = None) -> None:
        self.now, self.seconds, self.gc, self.log = 0.0, seconds, gc, []

    def clock(self) -> float:
        return self.now

    def sample(self, group: str, n: int) -> dict[str, list[int]]:
        phases = {"train": ("forward", "backward"), "inference": ("inference",)}[group]
        out: dict[str, list[int]] = {}
        for p in phases:
            self.now += self.seconds
            out[p] = [round(self.seconds * 1e9)]
            if self.gc is not None:
                out[p + GC_SUFFIX] = [round(self.gc * 1e9)]
        self.log.append("sample")
        return out

    def finish(self, group: str) -> None:
        self.log.append("finish")

    def mark(self, group: str, when: str) -> None:  # protocol.ClockProbe
        self.log.append(f"{when} {group}")


def test_gpu_warmup_lasts_a_minimum_time_even_when_settled():
    """2 ms iterations settle at once; the warm-up still runs >= GPU_WARMUP_MIN_TIME of work, past
    the iteration cap, so an idle GPU reaches its load clocks before the first sample."""
    s = Scripted(0.002)
    m = measure(s, ("inference",), StopRule(max_time=30), gpu=True, clock=s.clock, clocks=s)
    warmup = m.phases["inference"].warmup
    assert sum(warmup) >= GPU_WARMUP_MIN_TIME and len(warmup) > GPU_WARMUP_MAX
    assert sum(warmup) < GPU_WARMUP_MIN_TIME + 0.01  # and stops once warm and settled
    # the clocks are read once the warm-up is over, and again when sampling ends
    assert s.log.index("start inference") == 1 + len(warmup)
    assert s.log[-2:] == ["end inference", "finish"]


def test_the_cpu_samples_right_after_the_first_run():
    s = Scripted(0.002)  # no warm-up on the CPU: the round's median absorbs one slow first sample
    m = measure(s, ("inference",), StopRule(max_time=5), gpu=False, clock=s.clock)
    assert m.phases["inference"].warmup == [] and len(m.phases["inference"].samples) >= 3


# --- GC time per sample ------------------------------------------------------------------------------


def test_gc_time_per_sample_is_kept_beside_the_samples_and_summed_for_derived_phases():
    s = Scripted(0.010, gc=0.001)
    m = measure(s, ("forward", "backward", "total"), StopRule(max_time=2), gpu=False, clock=s.clock)
    for name, gc in (("forward", 0.001), ("backward", 0.001), ("total", 0.002)):
        p = m.phases[name]
        assert p.gc == pytest.approx([gc] * len(p.samples)), name
    assert not any(k.endswith(GC_SUFFIX) for k in m.phases)


def test_frameworks_that_report_no_gc_have_none():
    s = Scripted(0.010)
    m = measure(s, ("inference",), StopRule(max_time=1), gpu=False, clock=s.clock)
    assert m.phases["inference"].gc is None
    assert "gc" not in m.phases["inference"].to_json()


def _round(gc: list | None) -> dict:
    phase = PhaseSamples(first_run=1.0, warmup=[], samples=[0.5, 0.5], stop_reason="noisy", gc=gc)
    return Round(phases={"inference": phase}, clocks={"inference": {"start": {"sm_mhz": 1980}}}).to_json()


def test_gc_and_clocks_survive_the_record_and_are_validated():
    back = Round.from_json(_round([0.0, 0.25]), "round")
    assert back.phases["inference"].gc == [0.0, 0.25]
    assert back.clocks["inference"]["start"]["sm_mhz"] == 1980
    with pytest.raises(Malformed, match="1 values for 2 samples"):
        Round.from_json({**_round(None), "phases": {"inference": {**_round(None)["phases"]["inference"],
                                                                  "gc": [0.1]}}}, "round")
    bad = _round([0.0, 0.6])  # more GC than the sample it is inside
    with pytest.raises(Malformed, match="between 0 and its sample"):
        Round.from_json(bad, "round")


def test_details_show_the_gc_share_per_group():
    from factories import record
    from pybench.report.format import detail_texts
    from pybench.report.view import details_of

    rec = record("flux", "resnet18", samples={"inference": [0.1, 0.1, 0.1, 0.1]})
    (inference,) = details_of(rec, "median")
    assert detail_texts(inference)["gc"] == "-"  # not reported
    for r in rec.rounds:
        r.phases["inference"].gc = [0.01] * 4
    (inference,) = details_of(rec, "median")
    assert inference.gc_share == pytest.approx(0.1) and detail_texts(inference)["gc"] == "10.0%"


# --- which cores, which process ---------------------------------------------------------------------


def test_gpu_workers_get_every_allowed_core_local_to_their_gpu(nvml, monkeypatch):
    devices = two_h100s()
    devices[1]["affinity"] = [0b1111_0000, 0b11]  # cores 4-7 and 64-65
    nvml(devices)
    assert gpu_probe.local_cores(H100) == [4, 5, 6, 7, 64, 65]
    pinned = []
    monkeypatch.setattr(worker.os, "sched_getaffinity", lambda pid: set(range(2, 66)) - {5})
    monkeypatch.setattr(worker.os, "sched_setaffinity", lambda pid, cores: pinned.append(cores))
    assert worker.pin_cores(1, H100) == [4, 6, 7, 64, 65]  # all of them, not --threads
    assert worker.pin_cores(2) == [2, 3]  # a CPU worker: exactly --threads
    nvml(devices, fail=("nvmlDeviceGetCpuAffinity",))
    assert worker.pin_cores(1, H100) == [c for c in range(2, 66) if c != 5]  # unknown: every allowed core
    assert len(pinned) == 3


def test_a_framework_without_uuids_is_confirmed_by_nvmls_process_list(nvml):
    devices = two_h100s()
    devices[1]["pids"] = [4242, 99]
    nvml(devices)
    spec = CellSpec("jax", "resnet18", "cuda:0", 8, 224, 1, gpu=Device("cuda", 0, H100, "NVIDIA H100 80GB HBM3"))
    env = {"gpu": "NVIDIA H100 80GB HBM3"}
    worker.check_gpu(spec, env)
    assert env["gpu_identity"]["uuid"] is None and "pid" in env["gpu_identity"]["note"]
    identity = gpu_probe.process_identity(H100, "H100", 4242)
    assert identity["uuid"] == H100 and identity["via"] == "nvml compute processes"
    nvml(devices, fail=("nvmlDeviceGetComputeRunningProcesses",))
    assert gpu_probe.process_identity(H100, "H100", 4242)["note"] == "NVML cannot list the GPU's processes"


# --- install checks ----------------------------------------------------------------------------------


def test_driver_cuda_version_decides_what_to_install(nvml):
    nvml(two_h100s())  # FakeNVML's driver supports CUDA 12.8
    assert gpu_probe.driver_cuda() == (12, 8)
    line = gpu_probe.install_advice((12, 8), "13.0")
    assert "CUDA 13.0 build" in line and "CUDA 12.8" in line and "whl/cu126" in line and ".[cuda12]" in line
    assert gpu_probe.install_advice((13, 0), "13.0") is None
    assert gpu_probe.install_advice((12, 8), "12.6") is None
    assert gpu_probe.install_advice(None, "13.0") is None and gpu_probe.install_advice((12, 8), None) is None
    assert "update the NVIDIA driver" in gpu_probe.install_advice((11, 8), "13.0")


def test_env_and_list_print_the_advice(monkeypatch, capsys):
    from pybench.cli import main as cli

    monkeypatch.setattr(cli, "driver_advice", lambda: ["torch is a CUDA 13.0 build, but the driver ..."])
    assert cli.main(["list"]) == 0
    assert "torch is a CUDA 13.0 build" in capsys.readouterr().out


def cuda_spec(framework: str, **options: object) -> CellSpec:
    return CellSpec(framework, "resnet18", "cuda:0", 8, 224, 1, gpu=Device("cuda", 0, A100, "A100"), **options)


def test_jax_on_cuda_without_its_plugin_is_a_skipped_row_naming_the_fix(monkeypatch):
    from pybench.backends import jax as jax_framework

    monkeypatch.setattr(jax_framework, "cuda_plugins", lambda: [])
    assert '".[cuda]"' in Jax().unsupported(cuda_spec("jax"))
    assert Jax().unsupported(CellSpec("jax", "resnet18", "cpu", 8, 224, 1)) is None
    monkeypatch.setattr(jax_framework, "cuda_plugins", lambda: ["xla_cuda13"])
    assert Jax().unsupported(cuda_spec("jax")) is None


def test_describing_jax_does_not_preallocate_the_gpus(monkeypatch):
    from pybench.backends import jax as jax_framework

    seen = {}

    def run(cmd, **kw):
        seen.update(kw["env"])
        return SimpleNamespace(stdout='{"backend": "cpu", "devices": ["cpu"]}\n')

    monkeypatch.setattr(jax_framework.subprocess, "run", run)
    assert Jax().describe()["backend"] == "cpu"
    assert seen["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"


def test_compile_on_a_gpu_needs_a_c_toolchain_up_front(monkeypatch):
    from pybench.backends import pytorch as torch_framework

    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(torch_framework.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="no C compiler.*apt install gcc python3-dev"):
        PyTorch().preflight(cuda_spec("pytorch", compile=True))
    PyTorch().preflight(cuda_spec("pytorch"))  # no --compile: nothing to build
    with pytest.raises(UserError, match="needs a C\\+\\+ compiler"):  # the CPU's kernels are C++
        PyTorch().preflight(CellSpec("pytorch", "resnet18", "cpu", 8, 224, 1, compile=True))
    monkeypatch.setenv("CC", "gcc")
    monkeypatch.setattr(torch_framework.sysconfig, "get_paths", lambda scheme=None: {"include": "/nonexistent"})
    with pytest.raises(UserError, match="no Python.h in /nonexistent"):
        PyTorch().preflight(cuda_spec("pytorch", compile=True))


def test_tf32_leaves_every_getter_inductor_reads_working():
    """torch >= 2.9 raises in the legacy getters once only the new fp32_precision settings were set;
    set_tf32 goes through the flags, which keep both APIs consistent either way."""
    import torch

    from pybench.backends.pytorch.backend import set_tf32

    try:
        for on in (True, False, True):
            got = set_tf32(on)
            assert torch.backends.cuda.matmul.allow_tf32 is on and torch.backends.cudnn.allow_tf32 is on
            assert torch.get_float32_matmul_precision() == ("high" if on else "highest")
            assert got["tf32_matmul"] is on and got["float32_matmul_precision"] in ("high", "highest")
            if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
                assert torch.backends.cuda.matmul.fp32_precision == ("tf32" if on else "ieee")
    finally:
        set_tf32(False)
        torch.backends.cudnn.allow_tf32 = True  # torch's default


def test_a_bare_cuda_device_is_device_0():
    assert [cuda_index(d) for d in ("cpu", "cuda", "cuda:0", "cuda:3")] == [-1, 0, 0, 3]
    assert cuda_spec("jax").cuda_index == 0


# --- Flux: fp16 labelled, OpenSSL bounded --------------------------------------------------------------


def test_flux_fp16_rows_say_they_are_not_comparable(monkeypatch):
    from pybench.backends.flux import backend as flux

    class FakeAPI:
        def build_model(self, *args):
            return "model"

        def param_count(self, model):
            return 11_689_512

        def prepare(self, *args):
            return "bench"

    monkeypatch.setattr(flux, "start_julia", lambda *args: FakeAPI())
    fp16 = flux.FluxBackend(cuda_spec("flux", dtype="fp16")).prepare()
    assert flux.FP16_NOTE in fp16.notes and "autocasts over fp32 weights" in flux.FP16_NOTE
    assert flux.FP16_NOTE not in flux.FluxBackend(cuda_spec("flux")).prepare().notes


def test_a_manifest_openssl_newer_than_pythons_is_unavailable():
    from pybench.backends.flux.julia_env import openssl_too_new

    assert openssl_too_new({"OpenSSL_jll": "3.0.15+2"}, (3, 0, 13, 0, 15)) is None
    assert openssl_too_new({"OpenSSL_jll": "3.0.15+2"}, (3, 5, 1, 0, 15)) is None
    assert openssl_too_new({}, (3, 0, 13, 0, 15)) is None
    reason = openssl_too_new({"OpenSSL_jll": "3.5.4+0"}, (3, 0, 13, 0, 15))
    assert "OpenSSL_jll 3.5.4+0" in reason and "3.0.13" in reason and "setup-julia" in reason


def test_a_compile_run_without_c_toolchain_stops_before_anything_runs(nvml, monkeypatch, tmp_path, capsys):
    from pybench.cli import main as cli
    from pybench.backends import pytorch as torch_framework

    nvml(two_h100s())
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(torch_framework.shutil, "which", lambda name: None)
    code = cli.main(["run", "--framework", "pytorch", "--model", "resnet18", "--device", "cuda:0", "--compile",
                     "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "needs Triton to build C code" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # nothing written
