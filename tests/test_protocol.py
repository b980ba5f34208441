"""The statistics and the stopping rule, against hand-computed values."""

import math
import time

import pytest

from pybench.protocol import PythonLoopSampler, measure, median_ci_ranks, precise, summarize
from pybench.spec import StopRule


def test_median_ci_ranks_match_binomial_tables():
    # n=5: no interval reaches 95% (best coverage 1 - 2/32 = 93.75%).
    assert median_ci_ranks(5) is None
    # n=6: [x(1), x(6)] covers 1 - 2/64 = 96.9%.
    assert median_ci_ranks(6) == (0, 5)
    # n=10: the textbook interval is [x(2), x(9)] (coverage 97.9%).
    assert median_ci_ranks(10) == (1, 8)
    # n=20: [x(6), x(15)] (coverage 95.9%).
    assert median_ci_ranks(20) == (5, 14)


def test_summarize_hand_computed():
    s = summarize([5.0, 1.0, 4.0, 2.0, 3.0, 6.0])
    assert s.n == 6
    assert s.median == 3.5
    assert s.min == 1.0
    assert s.mean == 3.5
    assert s.std == pytest.approx(math.sqrt(17.5 / 5))
    assert s.iqr == pytest.approx(4.75 - 2.25)  # linear-interpolated quartiles
    assert (s.ci_low, s.ci_high) == (1.0, 6.0)


def test_precision_needs_the_whole_interval_inside():
    rule = StopRule(precision=0.02)
    assert precise(sorted([1.00, 1.01, 0.99, 1.00, 1.005, 0.995]), rule)
    assert not precise(sorted([1.00, 1.01, 0.99, 1.00, 1.005, 1.05]), rule)  # x(6) is 5% above
    assert not precise([1.0] * 5, rule)  # too few samples for any 95% interval
    assert precise([1.0] * 6, rule)


class FakeSteps:
    """Real sleeps of known length: the protocol must time exactly the step it brackets."""

    def __init__(self, fwd=0.002, bwd=0.004, inf=0.001, first_extra=0.02):
        self.d = {"forward": fwd, "backward": bwd, "inference": inf}
        self.first_extra = first_extra
        self.calls = {k: 0 for k in self.d}
        self.zeroed = 0
        self.syncs = 0

    def _step(self, kind):
        extra = self.first_extra if self.calls[kind] == 0 else 0.0
        self.calls[kind] += 1
        time.sleep(self.d[kind] + extra)

    def zero_grad(self):
        self.zeroed += 1
        time.sleep(0.003)  # untimed work must not show up in any phase

    def forward(self):
        self._step("forward")

    def backward(self):
        self._step("backward")

    def inference(self):
        self._step("inference")

    def synchronize(self):
        self.syncs += 1


def test_measure_times_phases_apart_and_excludes_first_run():
    steps = FakeSteps()
    stop = StopRule(precision=0.10, min_samples=5, max_time=20)
    res = measure(PythonLoopSampler(steps), ("forward", "backward", "total", "inference"), stop, gpu=False)
    f, b, t, i = (res[p] for p in ("forward", "backward", "total", "inference"))
    assert f.summary.median == pytest.approx(0.002, rel=0.5)
    assert b.summary.median == pytest.approx(0.004, rel=0.5)
    assert i.summary.median == pytest.approx(0.001, rel=1.0)
    assert f.first_run > 0.02 and b.first_run > 0.02  # first call recorded apart...
    assert max(f.samples) < 0.02  # ...and never in the statistics
    for k in range(len(t.samples)):  # total is the per-iteration sum
        assert t.samples[k] == pytest.approx(f.samples[k] + b.samples[k])
    assert steps.zeroed == len(f.samples) + 1  # cleared before every iteration, first run included
    assert all(r.stop_reason == "converged" and not r.noisy for r in res.values())
    assert f.summary.n >= 6


def test_stops_at_max_samples_and_flags_noisy():
    class Noisy(FakeSteps):
        def inference(self):
            self.calls["inference"] += 1
            time.sleep(0.001 * (1 + self.calls["inference"] % 3))  # a spread no CI can tighten

    stop = StopRule(precision=0.001, min_samples=5, max_samples=12, max_time=30)
    res = measure(PythonLoopSampler(Noisy()), ("inference",), stop, gpu=False)
    assert res["inference"].stop_reason == "max_samples"
    assert res["inference"].noisy
    assert res["inference"].summary.n == 12


def test_stops_at_max_time_and_flags_noisy():
    stop = StopRule(precision=1e-9, min_samples=5, max_samples=10**6, max_time=0.5)
    t0 = time.monotonic()
    res = measure(PythonLoopSampler(FakeSteps()), ("inference",), stop, gpu=False)
    assert time.monotonic() - t0 < 2.0
    assert res["inference"].stop_reason == "max_time"
    assert res["inference"].noisy


def test_gpu_warmup_runs_until_settled_and_stays_out_of_samples():
    class Autotuning(FakeSteps):
        # The first few iterations are slow, as when cudnn.benchmark tries algorithms.
        def inference(self):
            self.calls["inference"] += 1
            time.sleep(0.02 if self.calls["inference"] <= 3 else 0.002)

    stop = StopRule(precision=0.2, min_samples=5, max_time=20)
    res = measure(PythonLoopSampler(Autotuning()), ("inference",), stop, gpu=True)["inference"]
    assert len(res.warmup) >= 3
    assert max(res.samples) < 0.015  # no autotuning iteration leaks into the statistics


def test_memory_probe_is_reset_per_group():
    class Probe:
        def __init__(self):
            self.resets = 0

        def reset(self):
            self.resets += 1

        def read(self):
            return {"peak": self.resets}

    probe = Probe()
    stop = StopRule(precision=0.5, max_time=5)
    res = measure(PythonLoopSampler(FakeSteps()), ("forward", "inference"), stop, False, memory=probe)
    assert probe.resets == 2
    assert res["forward"].memory == {"peak": 1} and res["inference"].memory == {"peak": 2}
    assert list(res) == ["forward", "inference"]
