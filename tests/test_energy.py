"""Energy over the sampling window: counters read at the window's edges, wrap-around, the window
shared with peak memory, and the record refusing rounds from another version or environment."""

import pytest

from factories import record, train
from fakes import TRAIN, Clock, Probe, Scripted
from pybench.machine.energy import EnergyMeter, rapl_packages
from pybench.protocol.group import StopRule, measure
from pybench.records.round import Round


class Counter:
    def __init__(self, *values):
        self.values = list(values)

    def __call__(self, *_):
        return self.values.pop(0)


def _package(root, name, energy, wrap):
    d = root / name
    d.mkdir()
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{wrap}\n")
    return d


def test_gpu_counter_and_cpu_time_over_the_window(tmp_path):
    meter = EnergyMeter("GPU-1", powercap=tmp_path / "absent", clock=Counter(10, 3_000_000_010),
                        cpu_ns=Counter(5, 2_000_000_005), gpu_mj=Counter(1_000, 451_000))
    meter.reset()
    assert meter.read() == {"gpu_mj": 450_000, "cpu_ns": 2_000_000_000, "window_ns": 3_000_000_000}


def test_rapl_packages_summed_with_wrap_around_and_subzones_ignored(tmp_path):
    a = _package(tmp_path, "intel-rapl:0", 900, 1000)
    b = _package(tmp_path, "intel-rapl:1", 100, 1000)
    _package(tmp_path, "intel-rapl:0:0", 5, 1000)  # a core subzone, inside package 0
    assert set(rapl_packages(tmp_path)) == {a, b}
    meter = EnergyMeter(None, powercap=tmp_path, clock=Counter(0, 1), cpu_ns=Counter(0, 1))
    meter.reset()
    (a / "energy_uj").write_text("50\n")  # wrapped: 900 -> 1000 -> 50
    (b / "energy_uj").write_text("400\n")
    assert meter.read()["rapl_uj"] == 150 + 300


def test_unreadable_counters_are_absent_not_zero(tmp_path):
    meter = EnergyMeter("GPU-1", powercap=tmp_path, clock=Counter(0, 5), cpu_ns=Counter(0, 2),
                        gpu_mj=Counter(None, None))
    meter.reset()
    assert meter.read() == {"cpu_ns": 2, "window_ns": 5}


def test_energy_window_is_the_memory_window():
    clock, log = Clock(), []
    energy_log = []
    m = measure(Scripted(clock, {"train": TRAIN}, log), ("forward", "backward", "total"),
                StopRule(precision=0.5, max_time=5), gpu=True, memory=Probe(log), clock=clock,
                energy=Probe(energy_log))
    assert energy_log == [("reset", None)] and m.energy == {"train": {"peak": 1}}
    assert Round.of(m).energy == m.energy
    again = Round.from_json(Round.of(m).to_json(), "round")
    assert again.energy == m.energy


def test_add_round_refuses_another_version_or_environment():
    first = record("pytorch", "resnet18", train(0.1, 0.2))
    other = record("pytorch", "resnet18", train(0.1, 0.2))
    other.framework_env["cores"] = [3]  # which cores a worker got may change
    first.add_round(other)
    assert len(first.rounds) == 2
    newer = record("pytorch", "resnet18", train(0.1, 0.2))
    newer.title = "PyTorch 2.15.0"
    with pytest.raises(ValueError, match="PyTorch 2.15.0"):
        first.add_round(newer)
    changed = record("pytorch", "resnet18", train(0.1, 0.2))
    changed.framework_env["threads"] = 4
    with pytest.raises(ValueError, match="threads"):
        first.add_round(changed)
    assert len(first.rounds) == 2
