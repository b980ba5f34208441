"""The matrix scheduler with scripted rounds: order, numbering, planning, adaptive rounds, saving."""

import copy
import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

from pybench.protocol.group import MIN_PLANNED, StopRule
from pybench.records.spec import CellSpec
from pybench.rounds import matrix
from pybench.rounds import planning
from pybench.rounds import runner
from pybench.rounds.matrix import Schedule
from pybench.machine.noise import CpuShare
from pybench.protocol.group import PhaseSamples
from pybench.records.record import CellRecord
from pybench.records.round import Round, WorkloadFacts
from pybench.report.markdown import render_tables
from pybench.report.view import details_of, rows_of
from pybench.records.results import ResultsFile, load
from pybench.rounds.planning import MAX_ATTEMPTS


class Script:
    """Measures a round instantly with fixed samples, remembering the order it was asked in."""

    def __init__(self, fail: set = frozenset(), spread: float = 0.0):
        self.calls, self.fail, self.spread = [], fail, spread

    def __call__(self, spec, timeout, cache_dir, plan=None, initial=None):
        assert cache_dir.is_dir()  # one folder for the whole matrix
        self.calls.append((spec.framework, spec.model))
        if (spec.framework, spec.model, len([c for c in self.calls if c == self.calls[-1]])) in self.fail:
            return runner.failed_record(spec, "boom")
        k = len(self.calls)
        samples = [0.01 * (1 + self.spread * (k % 3))] * 8
        return CellRecord(spec=spec, status="ok", title="X 1", workload=WorkloadFacts(params=1),
                          rounds=[Round(phases={p: PhaseSamples(0.1, [], samples, "converged")
                                                for p in spec.phases})])


def matrix_specs(frameworks=("pytorch", "flux"), models=("resnet18", "resnet34")):
    return [CellSpec(fw, m, "cpu", 2, 64, threads=1, phases=("forward", "backward", "total"))
            for m in models for fw in frameworks]


@pytest.mark.slow
def test_rounds_go_round_robin_with_frameworks_alternating(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.get_framework("flux"), "availability",
                        lambda: runner.get_framework("pytorch").availability())
    script = Script(spread=0.5)  # never precise: every round runs
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    records = matrix.run_matrix(matrix_specs(), store, Schedule(rounds=3, lockstep=False), run_one=script,
                                peak_gflops=1.0)
    assert script.calls == [
        ("pytorch", "resnet18"), ("flux", "resnet18"), ("pytorch", "resnet34"), ("flux", "resnet34"),
        ("flux", "resnet18"), ("pytorch", "resnet18"), ("flux", "resnet34"), ("pytorch", "resnet34"),
        ("pytorch", "resnet18"), ("flux", "resnet18"), ("pytorch", "resnet34"), ("flux", "resnet34"),
    ]
    assert [len(r.rounds) for r in records] == [3, 3, 3, 3]
    saved = load(store.path)
    assert [len(r.rounds) for r in saved.records] == [3, 3, 3, 3]
    assert "noise" in saved.environment


@pytest.mark.slow
def test_precise_cells_stop_after_two_rounds(tmp_path):
    script = Script()  # identical rounds: precise at once
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    records = matrix.run_matrix(matrix_specs(frameworks=("pytorch",)), store, Schedule(rounds=5), run_one=script)
    assert [len(r.rounds) for r in records] == [2, 2]


def test_unavailable_frameworks_are_skipped_and_failed_rounds_keep_the_rest(tmp_path):
    script = Script(fail={("pytorch", "resnet34", 1), ("pytorch", "resnet18", 2)}, spread=0.5)
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    records = matrix.run_matrix(matrix_specs(), store, Schedule(rounds=3, lockstep=False), run_one=script)
    by = {(r.spec.framework, r.spec.model): r for r in records}
    assert by[("flux", "resnet18")].status == "skipped" and "flux unavailable" in by[("flux", "resnet18")].error
    assert by[("pytorch", "resnet34")].status == "failed"  # failed in round 1: not tried again
    assert script.calls.count(("pytorch", "resnet34")) == 1
    kept = by[("pytorch", "resnet18")]
    assert kept.ok and len(kept.rounds) == 2 and kept.warnings == ["round 2 failed: boom"]
    assert ("flux", "resnet18") not in script.calls


def test_the_record_is_saved_before_anything_derived(tmp_path, monkeypatch):
    def broken(record, peak):
        raise AssertionError("annotate must not run before the record is on disk")

    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    saved = []
    original = store.add
    monkeypatch.setattr(store, "add", lambda r: (original(r), saved.append(load(store.path))))
    monkeypatch.setattr(matrix.efficiency, "forward_flops", lambda m, s: (_ for _ in ()).throw(ValueError("x")))
    records = matrix.run_matrix(matrix_specs(frameworks=("pytorch",), models=("resnet18",)), store,
                                Schedule(rounds=1), run_one=Script())
    assert saved and saved[0].records[0].ok  # on disk before FLOPs were attempted
    assert records[0].ok and records[0].warnings == ["FLOPs not counted: ValueError: x"]
    assert load(store.path).records[0].warnings == ["FLOPs not counted: ValueError: x"]


# --- lockstep, numbering, adaptive rounds --------------------------------------------------------

class Lockstep:
    """A scripted lockstep round: member i takes times[i] seconds x a per-round process factor x
    per-sample noise (x a per-round factor of its own for the phases in `phase_sd`); remembers which
    phases and plans each round was asked for."""

    def __init__(self, times, pair_sd=0.0, sample_sd=0.01, seed=0, phase_sd=None):
        self.times, self.pair_sd, self.sample_sd = times, pair_sd, sample_sd
        self.phase_sd = phase_sd or {}
        self.rng = np.random.default_rng(seed)
        self.calls = []

    def __call__(self, specs, plan, timeout, cache_dir, failed):
        self.calls.append(([s.framework + s.variant_name for s in specs], specs[0].phases, plan))
        out = []
        for spec in specs:
            factor = math.exp(self.rng.normal(0, self.pair_sd))
            base = self.times[spec.framework + spec.variant_name] * factor
            own = {p: math.exp(self.rng.normal(0, sd)) for p, sd in self.phase_sd.items()}
            phases = {}
            for p in spec.phases:
                n = (plan or {}).get(matrix.groups_of([p])[0], 6)
                samples = list(base * own.get(p, 1.0) * np.exp(self.rng.normal(0, self.sample_sd, n)))
                phases[p] = PhaseSamples(0.1, [], samples, "planned", blocks=[1] * n)
            out.append(CellRecord(spec=spec, status="ok", title="X 1", workload=WorkloadFacts(params=1),
                                  rounds=[Round(phases=phases)]))
        return out


def pair_specs(second="jax", variant=""):
    stop = StopRule(precision=0.02, sequential=True, max_time=60)
    return [CellSpec(fw, "resnet18", "cpu", 2, 64, threads=1, stop=stop, variant_name=v)
            for fw, v in (("pytorch", ""), (second, variant))]


def auto(budget=1e9):
    return Schedule(rounds=None, lockstep=True, budget=budget)


def test_a_clear_difference_is_decided_in_the_minimum_of_lockstep_rounds(tmp_path):
    script = Lockstep({"pytorch": 1.0, "jax": 1.3}, pair_sd=0.002, sample_sd=0.002)
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    base, other = matrix.run_matrix(pair_specs(), store, auto(), run_lockstep=script)
    assert len(script.calls) == planning.MIN_ROUNDS == 4
    assert [c[0] for c in script.calls] == [["pytorch", "jax"], ["jax", "pytorch"]] * 2
    # round 1 costs what a planned round costs: the fewest samples of every group; then as planned
    assert script.calls[0][2] == dict.fromkeys(("train", "step", "inference"), MIN_PLANNED) and script.calls[1][2]
    assert [r.number for r in base.rounds] == [1, 2, 3, 4] and len({r.run for r in base.rounds}) == 1
    ratio = other.ratio_to(base, "total")
    assert ratio.verdict() == "slower" and ratio.n_rounds == 4
    assert other.undecided == [] and other.timed_share is not None
    saved = load(store.path).records
    assert saved[1].ratio_to(saved[0], "total").verdict() == "slower"


def _looks_after(records, rounds):
    cut = [copy.deepcopy(r) for r in records]
    for r in cut:
        r.rounds = r.rounds[:rounds]
    return planning.looks(cut)


def test_undecided_phases_get_more_rounds_with_the_groups_before_them(tmp_path):
    script = Lockstep({"pytorch": 1.0, "pytorch#2": 1.0}, pair_sd=0.02, seed=0, phase_sd={"inference": 0.08})
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    base, twin = matrix.run_matrix(pair_specs("pytorch", "#2"), store, auto(), run_lockstep=script)
    assert 4 < len(script.calls) <= MAX_ATTEMPTS
    early = _looks_after([base, twin], planning.MIN_ROUNDS)
    assert early["total"].decided and not early["inference"].decided  # train decided early...
    # ...and every later round still ran it before inference: a group's times depend on what ran before it
    assert all(tuple(phases) == base.spec.phases for _, phases, _ in script.calls)
    doc = load(store.path)
    assert "Resnet18" in render_tables([doc]) and rows_of(doc.records, "median")
    assert all(details_of(r, "median") for r in doc.records)
    for p in base.phase_names:  # A/A: never "faster" or "slower"
        assert twin.ratio_to(base, p).verdict() in ("tie", "undecided")


def test_groups_after_the_last_undecided_one_are_left_out(tmp_path):
    script = Lockstep({"pytorch": 1.0, "pytorch#2": 1.0}, pair_sd=0.02, seed=0, phase_sd={"forward": 0.08})
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    base, twin = matrix.run_matrix(pair_specs("pytorch", "#2"), store, auto(), run_lockstep=script)
    early = _looks_after([base, twin], planning.MIN_ROUNDS)
    assert not early["forward"].decided and early["step"].decided and early["inference"].decided
    later = [set(phases) for _, phases, _ in script.calls[planning.MIN_ROUNDS:]]
    assert later and all(p == {"forward", "backward", "total"} for p in later)  # the train group, first


def test_the_budget_stops_adaptive_rounds_after_the_minimum(tmp_path):
    script = Lockstep({"pytorch": 1.0, "pytorch#2": 1.0}, pair_sd=0.05, seed=4)
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    base, twin = matrix.run_matrix(pair_specs("pytorch", "#2"), store, auto(budget=0.0), run_lockstep=script)
    assert len(script.calls) == planning.MIN_ROUNDS  # the minimum always runs
    assert twin.undecided and set(twin.undecided) <= set(base.phase_names)


def test_rounds_share_what_the_priming_workers_left_of_the_budget(tmp_path, monkeypatch):
    budgets, plan = [], planning.plan_round
    monkeypatch.setattr(planning, "plan_round", lambda *a, **k: budgets.append(a[4]) or plan(*a, **k))
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    matrix.run_matrix(pair_specs(), store, auto(budget=100.0), prime=lambda spec, timeout, cache: time.sleep(0.2),
                      run_lockstep=Lockstep({"pytorch": 1.0, "jax": 1.3}, pair_sd=0.002, sample_sd=0.002))
    assert budgets and all(99.0 < b <= 100.0 - 2 * 0.2 for b in budgets)  # two setups primed


def test_rounds_of_different_runs_never_pair(tmp_path):
    script = Lockstep({"pytorch": 1.0, "jax": 1.3})
    a = matrix.run_matrix(pair_specs(), ResultsFile.create(tmp_path / "a", {"label": "t"}, []), auto(),
                          run_lockstep=script)
    b = matrix.run_matrix(pair_specs(), ResultsFile.create(tmp_path / "b", {"label": "t"}, []), auto(),
                          run_lockstep=script)
    assert b[1].ratio_to(a[0], "total") is None
    assert b[1].ratio_to(b[0], "total") is not None


def test_plan_gives_cheap_groups_more_samples_and_honours_the_cap():
    recs = Lockstep({"pytorch": 1.0, "jax": 1.0}, pair_sd=0.02, sample_sd=0.05)(
        pair_specs(), None, 1, None, None)
    for r in recs:
        r.rounds[0].number, r.rounds[0].run = 1, "x"
    plan = planning.plan_round(recs, ["train", "step", "inference"], fixed_cost=30.0)
    assert all(n >= 3 for n in plan.values())
    # every sample of the pair costs 2 s: a round samples at most twice its 30 s fixed cost
    assert sum(plan.values()) * 2.0 <= 2 * 30.0 + 3 * 2.0
    # a 400 s budget for the cell: rounds of at most 400 / FIT_ROUNDS = 50 s, so 20 s of sampling
    tight = planning.plan_round(recs, ["train", "step", "inference"], fixed_cost=30.0, budget=400.0)
    assert sum(tight.values()) < sum(plan.values()) and sum(tight.values()) * 2.0 <= 20.0 + 3 * 2.0
    starved = planning.plan_round(recs, ["train", "step", "inference"], fixed_cost=30.0, budget=100.0)
    assert set(starved.values()) == {3}  # never below the minimum
    assert planning.fit_samples(10, cost=30.0, cap=60.0) == (2, "capped")
    assert planning.fit_samples(1, cost=0.01, cap=60.0) == (3, "planned")
    assert planning.fit_samples(50, cost=1.0, cap=20.0) == (20, "planned")


def test_reports_read_records_whose_later_rounds_measured_only_some_groups(tmp_path):
    script = Lockstep({"pytorch": 1.0, "jax": 1.3})
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    base, other = matrix.run_matrix(pair_specs(), store, Schedule(rounds=3, lockstep=True), run_lockstep=script)
    for rec in (base, other):  # a fourth round of the train group alone, as --rounds auto runs them
        rec.rounds.append(Round(phases={p: PhaseSamples(0.1, [], [1.0] * 3, "planned") for p in
                                        ("forward", "backward", "total")}, number=4, run=rec.rounds[0].run))
    assert len(base.samples("total")) == 4 and len(base.samples("step")) == 3
    doc = load(store.path)
    doc.records = [base, other]
    assert "Resnet18" in render_tables([doc])
    assert all(details_of(r, "median") for r in (base, other)) and rows_of([base, other], "median")


def test_a_decided_but_wide_ratio_gets_more_rounds_to_say_by_how_much(tmp_path):
    script = Lockstep({"pytorch": 1.0, "jax": 1.5}, pair_sd=0.05, sample_sd=0.002, seed=1)
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    base, other = matrix.run_matrix(pair_specs(), store, auto(), run_lockstep=script)
    assert len(script.calls) > 3  # "slower" after 3 rounds, but not yet within +-10%
    assert all(other.ratio_to(base, p).half_width_rel <= planning.DECIDED_WIDTH or p in other.undecided
               for p in base.phase_names)


class Busy:
    """A scripted noise meter: other work's share of the CPUs for each round, in order."""

    def __init__(self, shares):
        self.shares, self.made = list(shares), 0

    def __call__(self):
        share = self.shares[min(self.made, len(self.shares) - 1)]
        self.made += 1
        return SimpleNamespace(read=lambda: CpuShare(steal=0.0, other_busy=share, seconds=20.0))


class SlowedFromRound:
    """Lockstep rounds where, from `start` on, a competing process slows PyTorch five times."""

    def __init__(self, start):
        self.inner, self.start, self.round = Lockstep({"pytorch": 1.0, "jax": 1.3}, pair_sd=0.01), start, 0

    def __call__(self, specs, plan, timeout, cache_dir, failed):
        self.round += 1
        out = self.inner(specs, plan, timeout, cache_dir, failed)
        for rec in out:
            rec.wall_time = 10.0
        if self.round >= self.start:
            for rec in out:
                if rec.spec.framework == "pytorch":
                    for p in rec.rounds[0].phases.values():
                        p.samples = [5 * s for s in p.samples]
        return out


def test_rounds_that_other_work_disturbed_are_set_aside(tmp_path):
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    busy = Busy([0.01, 0.02, 0.01, 0.45])  # a busy process from round 4 on
    base, other = matrix.run_matrix(pair_specs(), store, Schedule(rounds=6, lockstep=True),
                                    run_lockstep=SlowedFromRound(4), meter=busy)
    assert [r.disturbed for r in base.rounds] == [False] * 3 + [True] * 3
    ratio = other.ratio_to(base, "total")  # the quiet rounds' answer, not 1.3 / 5
    assert ratio.n_rounds == 3 and ratio.verdict() == "slower" and 1.2 < ratio.value < 1.4
    assert base.estimate("total").value < 1.1 and len(base.set_aside) == 3
    assert any("round 4 set aside: other work used 45%" in w for w in base.warnings)
    saved = load(store.path).records
    assert [r.other_busy for r in saved[0].rounds] == [0.01, 0.02, 0.01, 0.45, 0.45, 0.45]
    assert saved[1].ratio_to(saved[0], "total").n_rounds == 3


def test_a_run_disturbed_throughout_gives_times_but_no_verdict(tmp_path):
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    base, other = matrix.run_matrix(pair_specs(), store, Schedule(rounds=3, lockstep=True),
                                    run_lockstep=SlowedFromRound(1), meter=Busy([0.5]))
    assert other.ratio_to(base, "total") is None
    assert base.estimate("total").value > 4  # every round counts for the times: they say how slow
    assert "Resnet18" in render_tables([load(store.path)])


def test_what_would_decide_counts_only_the_rounds_that_count(tmp_path):
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    busy = Busy([0.0, 0.0, 0.0, 0.5])
    script = SlowedFromRound(4)
    script.inner = Lockstep({"pytorch": 1.0, "jax": 1.01}, pair_sd=0.05, seed=2)  # close: undecided
    base, other = matrix.run_matrix(pair_specs(), store, Schedule(rounds=5, lockstep=True),
                                    run_lockstep=script, meter=busy)
    (u,) = planning.undecided([base, other])
    assert len(base.set_aside) == 2 and u.rounds_needed is not None and u.rounds_needed > 3
    # 10 s a round, 5 rounds for 3 that count: each further counted round is priced at 50 / 3 s
    assert u.seconds_needed == pytest.approx((u.rounds_needed - 3) * 50.0 / 3)
