"""When `--rounds auto` stops and what its verdicts are worth, on the real scheduler (`run_matrix`) with
scripted processes and a fake clock (scripts/simulate_stopping.py): the rule as documented, the
slow-process screen, what counts as a round, the rounds-needed advice, and the error rates."""

import math
import os
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from factories import record
from pybench.machine.noise import OTHER_BUSY_LIMIT, CpuShare
from pybench.protocol.group import StopRule
from pybench.records.ratios import PRECISION_STOP_CONFIDENCE, SLOW_PROCESS
from pybench.records.statistics import Verdict, t_quantile
from pybench.report.view import rows_of
from pybench.rounds import planning

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import simulate_stopping as sim  # noqa: E402

W = math.log1p(planning.DECIDED_WIDTH)


def _rule_holds(runs: list[list[sim.Outcome]]) -> None:
    """Each phase ended decided exactly when its final interval is within +-DECIDED_WIDTH from at least
    MIN_ROUNDS counted rounds; an undecided one ran into a cap (the budget is unbounded here)."""
    for row in runs:
        attempts = row[0].attempts
        assert planning.MIN_ROUNDS <= attempts <= planning.MAX_ATTEMPTS
        for o in row:
            narrow = o.low is not None and max(o.high / o.value - 1, 1 - o.low / o.value) <= planning.DECIDED_WIDTH
            assert o.decided == (o.counted >= planning.MIN_ROUNDS and narrow)
            if not o.decided:
                assert o.counted >= planning.MAX_ROUNDS or attempts == planning.MAX_ATTEMPTS
            if o.verdict in (Verdict.FASTER, Verdict.SLOWER):  # a call: the interval excludes 1
                assert o.low is not None and not o.low <= 1 <= o.high


def test_the_scheduler_stops_by_the_rule_and_its_answers_are_roughly_right():
    aa = sim.simulate(1.0, 80, seed=11)
    far = sim.simulate(1.8, 80, seed=12)
    _rule_holds(aa)
    _rule_holds(far)
    # Coarse (the slow test holds the real bounds): a rule that looked at the verdict, or from two
    # rounds on, or paired slow processes, is far outside these.
    for i in range(len(sim.PHASES)):
        assert sum(row[i].false_call for row in aa) / len(aa) <= 0.10
        assert sum(row[i].covered for row in far) / len(far) >= 0.90
    assert abs(np.median([o.value for row in far for o in row]) / 1.8 - 1) < 0.02  # slow JAX processes screened


class _Quiet:
    """A scripted meter: other work disturbs the first `busy` processes, then none."""

    def __init__(self, busy: int, worker: sim.Worker):
        self.busy, self.worker = busy, worker

    def __call__(self):
        self.busy -= 1
        self.worker.disturbed = self.busy >= 0
        share = CpuShare(0.0, 2 * OTHER_BUSY_LIMIT if self.worker.disturbed else 0.0, 1.0)
        return SimpleNamespace(read=lambda: share)


def test_the_minimum_and_the_cap_count_only_paired_quiet_rounds(monkeypatch):
    """The first decision rests on MIN_ROUNDS paired quiet rounds even when the first rounds were set
    aside (they counted toward the minimum before)."""
    machine = sim.Machine(process_sd=0.001, phase_sd=0.0, sample_sd=0.001, slow_chance=(0.0, 0.0), drift=0.0,
                          busy_chance=0.0)
    seqs = {1: sim.Sequence(1.3, 0.0, 1000.0)}
    clock = sim.Clock()
    worker = sim.Worker(machine, seqs, clock, np.random.default_rng(0))
    monkeypatch.setattr(sim.matrix, "time", clock)
    base, other = sim.matrix.run_matrix(sim.specs(1), sim.Store(), sim.matrix.Schedule(rounds=None, budget=1e9),
                                        run_one=worker, meter=_Quiet(4, worker))  # rounds 1 and 2 set aside
    assert len(base.set_aside) == 2 and len(base.rounds) == 2 + planning.MIN_ROUNDS
    ratio = other.ratio_to(base, "total")
    assert ratio.n_rounds == planning.MIN_ROUNDS and ratio.verdict() == Verdict.SLOWER and not other.undecided


def _with_rounds(values: list[float], sequential: bool = True):
    """Two members whose per-round total ratio is `values` (the first member steady)."""
    stop = StopRule(sequential=sequential)
    base = record("pytorch", "resnet18", rounds=[{"total": [1.0] * 3}] * len(values))
    other = record("jax", "resnet18", rounds=[{"total": [v] * 3} for v in values])
    for r in (base, other):
        r.spec = replace(r.spec, stop=stop)
    return [base, other]


def test_a_slow_process_is_screened_on_either_side_kept_in_the_file_and_said():
    typical = [1.00, 1.03, 0.98, 1.01, 0.99, 1.02]
    for slow_side in (0, 1):
        members = _with_rounds(typical)
        slowed = members[slow_side]
        slowed.rounds[3].phases["total"].samples = [1.4] * 3  # process 4: 40% slower
        values = [1.0] * 6 if slow_side == 0 else list(typical)
        values[3] = 1.4
        assert list(slowed.slow("total").values()) == [pytest.approx(1.4 / np.median(values))]
        ratio = members[1].ratio_to(members[0], "total")
        assert ratio.n_rounds == len(typical) - 1  # in no ratio, on either side
        assert len(slowed.samples("total")) == len(typical)  # kept, and in the time estimate
        note = slowed.screen().note()
        assert note.startswith("1 of 6 processes ") and "slower than the typical one, not in the ratios" in note
        assert members[1 - slow_side].screen() is None
        row = next(r for r in rows_of(members) if r.record is slowed)
        assert note in row.notes  # every report that shows a row's notes shows it
    # just under the threshold: typical
    members = _with_rounds([1.0, 1.0, 1.0, 1.0 + 0.9 * SLOW_PROCESS])
    assert members[1].slow("total") == {} and members[1].ratio_to(members[0], "total").n_rounds == 4


def test_a_process_disturbed_in_one_iteration_is_screened_by_the_mean_it_moves():
    """One iteration at 3.4x (another process took the cores) moves that round's mean by half and its
    median not at all: the screen reads the number the ratio reads."""
    members = _with_rounds([1.00, 1.03, 0.98, 1.01, 0.99, 1.02])
    members[0].rounds[0].phases["total"].samples = [1.0, 1.0, 3.4, 1.0, 1.0]
    assert list(members[0].slow("total", "mean")) == [("synthetic", 1)]
    assert members[1].ratio_to(members[0], "total", "mean").n_rounds == 5
    assert members[0].slow("total", "median") == {}
    assert members[1].ratio_to(members[0], "total", "median").n_rounds == 6


def test_rounds_needed_is_the_rule_at_the_level_the_ratios_use():
    logs = [0.0, 0.15, -0.08, 0.11, -0.04]  # a noisy pair: undecided after 5 rounds, at either level
    for sequential, level in ((True, PRECISION_STOP_CONFIDENCE), (False, 0.95)):
        members = _with_rounds([math.exp(x) for x in logs], sequential)
        assert not planning.looks(members)["total"].decided
        need = planning.rounds_to_decide(members, "total")
        s = float(np.std(logs, ddof=1))
        half = lambda n: t_quantile((1 + level) / 2, n - 1) * s / math.sqrt(n)  # noqa: E731
        assert half(need) <= W < half(need - 1)
        ratio = members[1].ratio_to(members[0], "total")
        assert math.log(ratio.ci_high / ratio.value) == pytest.approx(half(len(logs)))  # the same level
    tight = _with_rounds([1.30, 1.31, 1.29, 1.30])
    assert planning.looks(tight)["total"].decided and planning.rounds_to_decide(tight, "total") == planning.MIN_ROUNDS
    few = _with_rounds([1.30, 1.31, 1.29])  # narrow, but one round short of the minimum
    assert not planning.looks(few)["total"].decided and planning.rounds_to_decide(few, "total") == planning.MIN_ROUNDS


def test_one_look_answers_every_phase_and_the_open_and_undecided_ones_follow_it():
    steady, noisy = [1.30, 1.31, 1.29, 1.30, 1.30], [1.0, 1.16, 0.92, 1.12, 0.96]
    base = record("pytorch", "resnet18", rounds=[{"total": [1.0] * 3, "inference": [1.0] * 3}] * 5)
    other = record("jax", "resnet18", rounds=[{"total": [a] * 3, "inference": [b] * 3}
                                               for a, b in zip(steady, noisy)])
    for r in (base, other):
        r.spec = replace(r.spec, stop=StopRule(sequential=True))
    members = [base, other]
    looks = planning.looks(members)
    assert looks == {"total": planning.Look(counted=5, decided=True), "inference": planning.Look(counted=5, decided=False)}
    assert planning.open_phases(members) == ["inference"]
    base.undecided = ["inference"]  # as the matrix records it
    (u,) = planning.undecided(members)
    assert u.phases == ["inference"] and u.rounds_needed is not None and u.rounds_needed > 5


def test_a_group_is_sized_by_its_noisiest_open_phase():
    """JAX's resnet50 forward per round as measured (seconds): a slow first sample and a second mode,
    while the train iteration's total (forward + backward) is steady."""
    forward = [[0.46, 0.37, 0.53, 0.35, 0.37], [0.46, 0.37, 0.53, 0.36, 0.36], [0.47, 0.34, 0.54, 0.40, 0.37],
               [0.46, 0.54, 0.35], [0.46, 0.39, 0.36, 0.37], [0.49, 0.39, 0.39, 0.55], [0.46, 0.53, 0.39, 0.37]]
    rng = np.random.default_rng(3)
    base_rounds, other_rounds = [], []
    for fwd in forward:
        bwd = list(1.02 * (1 + rng.normal(0, 0.01, len(fwd))))
        other_rounds.append({"forward": fwd, "backward": bwd, "total": [f + b for f, b in zip(fwd, bwd)]})
        base_rounds.append({p: list(v * (1 + rng.normal(0, 0.01, len(fwd)))) for p, v in
                            (("forward", 0.28), ("backward", 0.48), ("total", 0.76))})
    members = [record("pytorch", "resnet50", rounds=base_rounds), record("jax", "resnet50", rounds=other_rounds)]
    assert planning.noise(members, "train", phase="forward").within > 2 * planning.noise(members, "train").within
    by_total = planning.plan_round(members, ["train"], 14.0)["train"]
    assert planning.plan_round(members, ["train"], 14.0, open_phases=["forward", "total"])["train"] > by_total
    assert planning.plan_round(members, ["train"], 14.0, open_phases=["total", "inference"])["train"] == by_total


def test_groups_held_at_the_minimum_count_against_the_round_budget():
    best, cost = {"train": 20.0, "step": 0.5, "inference": 0.5}, {"train": 2.0, "step": 2.6, "inference": 0.5}
    scale = planning._scale(best, cost, allowed=22.0)
    spent = sum(max(planning.MIN_PLANNED, best[g] * scale) * cost[g] for g in best)
    assert spent == pytest.approx(22.0)  # the floors of step and inference came out of train's share
    assert planning._scale(best, cost, allowed=1000.0) == 1.0
    assert planning._scale(best, cost, allowed=0.0) == 0.0


@pytest.mark.parametrize("stat", ["median", "mean"])
def test_a_round_number_carries_its_share_of_the_sample_variance(stat):
    """Rounds without any process effect: what their medians (pi/2 s^2/n) or means (s^2/n) spread by is
    all within-round noise, so none of it passes for a process effect."""
    rng = np.random.default_rng(3)
    rounds = [{"total": list(np.exp(rng.normal(0, 0.2, 9)))} for _ in range(400)]
    alone = record("pytorch", "resnet18", rounds=rounds)
    nz = planning.noise([alone], "train", stat)
    assert nz.between == pytest.approx(planning.FLOOR_BETWEEN, abs=0.01)
    assert nz.within == pytest.approx(0.2 * math.sqrt(planning.MEDIAN_VARIANCE if stat == "median" else 1), rel=0.1)


def test_a_mean_is_sized_by_the_slow_samples_a_median_ignores():
    """One slow sample in nine moves a round's mean, not its median: the planner counts it for the mean."""
    rounds = [{"total": [0.4] * 8 + [0.6]} for _ in range(6)]
    alone = record("pytorch", "resnet18", rounds=rounds)
    assert planning.noise([alone], "train", "mean").within > 0.1
    assert planning.noise([alone], "train", "median").within == 0.0


@pytest.mark.slow
def test_error_rates_on_the_real_scheduler():
    """A/A false calls per phase and in any of the five phases at least 3 standard errors under 5%; coverage of true ratios 1.05, 1.2
    and 1.8 at least 3 standard errors over 95%; 41,000 sequences (docs/protocol.md, "When rounds stop")."""
    workers = os.cpu_count() or 1
    aa = sim.simulate(1.0, 20000, seed=1, workers=workers)
    n = len(aa)
    for i, phase in enumerate(sim.PHASES):
        p = sum(row[i].false_call for row in aa) / n
        assert p + 3 * math.sqrt(p * (1 - p) / n) <= 0.05, phase
    p = sum(any(o.false_call for o in row) for row in aa) / n  # the pair's phases, one family
    assert p + 3 * math.sqrt(p * (1 - p) / n) <= 0.05
    for seed, ratio in enumerate((1.05, 1.2, 1.8), start=2):
        runs = sim.simulate(ratio, 7000, seed=seed, workers=workers)
        for i, phase in enumerate(sim.PHASES):
            c = sum(row[i].covered for row in runs) / len(runs)
            assert c - 3 * math.sqrt(c * (1 - c) / len(runs)) >= 0.95, (ratio, phase)
