"""The protocol driven by a scripted sampler and an injected clock (as pyperf's tests replace the
clock): every assertion is exact, nothing depends on how busy the machine is."""

import statistics

import pytest

from pybench.protocol.group import CPU_WARMUP_MAX, StopRule, measure, precise
from pybench.protocol.ranks import median_ci_ranks
from pybench.protocol.sampling import Loop, PythonLoopSampler
from pybench.records.statistics import estimate

from fakes import TRAIN, Clock, Probe, Scripted, const, scattered


def test_median_ci_ranks_match_binomial_tables():
    # n=5: no interval reaches 95% (best coverage 1 - 2/32 = 93.75%).
    assert median_ci_ranks(5) is None
    # n=6: [x(1), x(6)] covers 1 - 2/64 = 96.9%.
    assert median_ci_ranks(6) == (0, 5)
    # n=10: the textbook interval is [x(2), x(9)] (coverage 97.9%).
    assert median_ci_ranks(10) == (1, 8)
    # n=20: [x(6), x(15)] (coverage 95.9%).
    assert median_ci_ranks(20) == (5, 14)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.95 ** 0.5, 0.99])
def test_rank_table_equals_scipys_binomial(confidence):
    # The numpy table (the worker may run without scipy) against the scipy formula it replaced.
    import numpy as np
    from scipy.stats import binom

    from pybench.protocol.ranks import _lower_ranks

    alpha = (1 - confidence) / 2
    n = np.arange(2049)
    j = binom.ppf(alpha, n, 0.5).astype(int)
    j += binom.cdf(j, n, 0.5) <= alpha
    assert np.array_equal(_lower_ranks(2048, confidence), j)


def test_one_round_estimate_hand_computed():
    samples = [5.0, 1.0, 4.0, 2.0, 3.0, 6.0]
    s = estimate([samples])
    assert s.n_samples == 6 and s.n_rounds == 1 and not s.between_rounds
    assert s.value == 3.5
    assert estimate([samples], stat="min").value == 1.0
    # the mean's t interval: 3.5 +- t(5, 0.975) 1.8708 / sqrt(6)
    assert (s.ci_low, s.ci_high) == pytest.approx((1.53669, 5.46331), abs=1e-5)
    assert (estimate([samples], stat="median").ci_low, estimate([samples], stat="median").ci_high) == (1.0, 6.0)


def test_precision_needs_the_whole_interval_inside():
    rule = StopRule(precision=0.02)
    assert precise(sorted([1.00, 1.01, 0.99, 1.00, 1.005, 0.995]), rule)
    assert not precise(sorted([1.00, 1.01, 0.99, 1.00, 1.005, 1.05]), rule)  # x(6) is 5% above
    assert not precise([1.0] * 5, rule)  # too few samples for any 95% interval
    assert precise([1.0] * 6, rule)


def test_phases_are_timed_apart_the_first_run_excluded_and_total_derived():
    clock = Clock()
    sampler = Scripted(clock, {"train": TRAIN, "inference": {"inference": const(0.001, first=0.5)},
                               "step": {"step": const(0.007, first=2.0)}})
    stop = StopRule(precision=0.02, min_samples=5, max_time=20)
    m = measure(sampler, ("forward", "backward", "total", "inference", "step"), stop, gpu=False, clock=clock)
    f, b, t, i, s = (m.phases[p] for p in ("forward", "backward", "total", "inference", "step"))
    assert statistics.median(f.samples) == pytest.approx(0.002)
    assert statistics.median(b.samples) == pytest.approx(0.004)
    assert statistics.median(i.samples) == pytest.approx(0.001)
    assert statistics.median(s.samples) == pytest.approx(0.007)
    assert (f.first_run, b.first_run, t.first_run) == pytest.approx((0.02, 0.03, 0.05))
    assert i.first_run == pytest.approx(0.5) and s.first_run == pytest.approx(2.0)
    assert max(f.samples) < 0.01  # the first run never enters the statistics
    assert t.samples == pytest.approx([a + c for a, c in zip(f.samples, b.samples)])
    assert all(p.stop_reason == "converged" for p in m.phases.values())
    assert len(f.samples) == 6  # constant times: the first n with a 95% interval
    assert list(m.phases) == ["forward", "backward", "total", "inference", "step"]
    assert list(m.memory) == ["train", "step", "inference"]  # groups measured in this order


def test_stops_at_max_samples():
    clock = Clock()
    wobble = {"inference": lambda i: 0.001 * (1 + i % 3)}  # a spread no interval can tighten
    stop = StopRule(precision=0.001, min_samples=5, max_samples=12, max_time=30)
    m = measure(Scripted(clock, {"inference": wobble}), ("inference",), stop, gpu=False, clock=clock)
    assert m.phases["inference"].stop_reason == "max_samples"
    assert len(m.phases["inference"].samples) == 12


def test_time_limit_separates_noisy_from_too_few_samples():
    wobble = {"inference": scattered(0.1)}
    clock = Clock()
    stop = StopRule(precision=0.001, max_time=30)  # ~150 samples fit: an interval, still too wide
    m = measure(Scripted(clock, {"inference": wobble}), ("inference",), stop, gpu=False, clock=clock)
    assert m.phases["inference"].stop_reason == "noisy" and len(m.phases["inference"].samples) > 6
    clock = Clock()
    stop = StopRule(precision=0.001, max_time=0.5)  # three samples: no 95% interval exists
    m = measure(Scripted(clock, {"inference": wobble}), ("inference",), stop, gpu=False, clock=clock)
    assert m.phases["inference"].stop_reason == "too_few_samples"
    assert 1 <= len(m.phases["inference"].samples) < 6


def test_the_budget_starts_after_the_first_run():
    # A 100 s compile (Inductor, XLA, Julia) must not eat a 1 s sampling budget.
    clock = Clock()
    sampler = Scripted(clock, {"inference": {"inference": scattered(0.01, first=100.0)}})
    m = measure(sampler, ("inference",), StopRule(precision=1e-9, max_time=1.0), gpu=False, clock=clock)
    assert len(m.phases["inference"].samples) >= 70  # 1 s of ~12.5 ms samples


def test_groups_share_the_budget_and_pass_on_what_they_leave():
    clock = Clock()
    slow = {"forward": const(1.0), "backward": lambda i: 1.0 + 0.5 * (i % 2)}  # never converges
    sampler = Scripted(clock, {"train": slow, "inference": {"inference": const(0.01)}})
    m = measure(sampler, ("forward", "backward", "total", "inference"), StopRule(max_time=40), gpu=False,
                clock=clock)
    # Train may use 3/4 of the budget (weights 3:1); inference converges at once on what is left.
    assert 10 <= len(m.phases["forward"].samples) <= 16
    assert m.phases["inference"].stop_reason == "converged"


def test_gpu_warmup_runs_until_settled_and_stays_out_of_samples():
    clock = Clock()
    tuning = {"inference": lambda i: 0.02 if i <= 3 else 0.002}  # cudnn.benchmark trying algorithms
    sampler = Scripted(clock, {"inference": tuning})
    res = measure(sampler, ("inference",), StopRule(precision=0.2, max_time=20), gpu=True,
                  clock=clock).phases["inference"]
    assert len(res.warmup) >= 3
    assert max(res.samples) == pytest.approx(0.002)  # no autotuning iteration in the statistics


def test_the_cpu_has_no_warmup_and_the_median_absorbs_one_slow_sample():
    clock = Clock()  # JAX on the CPU from a primed cache: one slowish iteration after the first run
    slow_start = {"inference": lambda i: {0: 5.0, 1: 0.05}.get(i, 0.01)}
    res = measure(Scripted(clock, {"inference": slow_start}), ("inference",),
                  StopRule(precision=0.5, max_time=1), gpu=False, clock=clock).phases["inference"]
    assert CPU_WARMUP_MAX == 0 and res.warmup == [] and res.first_run == pytest.approx(5.0)
    assert res.samples[0] == pytest.approx(0.05) and len(res.samples) >= 3
    assert sorted(res.samples)[len(res.samples) // 2] == pytest.approx(0.01)  # the median ignores it


def test_memory_window_opens_after_warmup_and_groups_are_finished_in_order():
    clock, log = Clock(), []
    tuning = {"inference": lambda i: 0.02 if i <= 3 else 0.002}
    sampler = Scripted(clock, {"train": TRAIN, "inference": tuning}, log)
    m = measure(sampler, ("forward", "inference"), StopRule(precision=0.5, max_time=5), gpu=True,
                memory=Probe(log), clock=clock)
    events = [e for e, _ in log]
    assert events.count("reset") == 2 and events.count("finish") == 2
    first_inference = log.index(("sample", "inference"))
    assert log.index(("finish", "train")) < first_inference  # gradients released before inference
    reset = events.index("reset", first_inference)
    warmups = len(m.phases["inference"].warmup)
    # first run and every warm-up iteration come before the window opens
    assert events[first_inference:reset].count("sample") == 1 + warmups
    assert set(m.memory) == {"train", "inference"} and m.memory["train"]["peak"] > 0
    assert list(m.phases) == ["forward", "inference"]


def test_python_loop_runs_untimed_setup_then_phases_in_order():
    calls = []
    loop = Loop(phases=(("forward", lambda: calls.append("f")), ("backward", lambda: calls.append("b"))),
                before=lambda: calls.append("zero"), finish=lambda: calls.append("free"))
    sampler = PythonLoopSampler({"train": loop}, synchronize=lambda: calls.append("sync"))
    out = sampler.sample("train", 2)
    assert calls == ["zero", "sync", "f", "sync", "b", "sync"] * 2
    assert set(out) == {"forward", "backward"} and all(len(v) == 2 and min(v) >= 0 for v in out.values())
    sampler.finish("train")
    assert calls[-1] == "free"


def test_planned_groups_get_their_samples_even_after_a_slow_group():
    # train overruns its share; inference still gets its planned 12 (its own cap is 60 x 1/7 s)
    clock = Clock()
    sampler = Scripted(clock, {"train": {"forward": const(2.0), "backward": const(4.0)},
                               "inference": {"inference": const(0.05)}})
    m = measure(sampler, ("forward", "backward", "total", "inference"), StopRule(max_time=60), gpu=False,
                clock=clock, plan={"train": 3, "inference": 12})
    assert len(m.phases["total"].samples) == 3 and len(m.phases["inference"].samples) == 12
    assert {p.stop_reason for p in m.phases.values()} == {"planned"}


def test_a_sample_longer_than_the_cap_is_capped_and_says_so():
    clock = Clock()  # inference's cap: 7 x 1/1 s = 7 s; each sample takes 5 s
    sampler = Scripted(clock, {"inference": {"inference": const(5.0)}})
    m = measure(sampler, ("inference",), StopRule(max_time=7), gpu=False, clock=clock, plan={"inference": 3})
    assert len(m.phases["inference"].samples) == 2 and m.phases["inference"].stop_reason == "capped"


def test_a_first_round_samples_its_initial_time_but_at_least_three():
    clock = Clock()
    sampler = Scripted(clock, {"inference": {"inference": scattered(1.0)}})
    m = measure(sampler, ("inference",), StopRule(max_time=60), gpu=False, clock=clock, initial=2.0)
    assert len(m.phases["inference"].samples) == 5  # min_samples 5 (at least 3): past 2 s by then
