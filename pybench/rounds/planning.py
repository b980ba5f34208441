"""How long a round is and how many rounds a cell gets, from the noise measured so far.

A phase's interval over R rounds has the width of sqrt((s_b^2 + s_w^2 / n) / R): s_w is the
within-round noise of one sample (log scale) as a round's number carries it (a mean: a sample's whole
variance, slow samples included; a median: pi/2 times a robust variance, as the median of n normal
samples varies by about pi/2 s^2 / n), s_b what each process (or
process pair) adds on top, n the samples per round.  A round costs C + n c: C the fixed cost
(process start, imports, model build, first runs), c one sample.  The width per second of wall time
is smallest at the two-stage sampling optimum n = sqrt(C s_w^2 / (c s_b^2)): cheap groups (inference)
get more samples, and a noisy machine (large s_b) gets more, shorter rounds instead of longer ones.
For a cell of several frameworks the noise is that of their ratio, and c the cost of one sample of
each.  A group is sized by its open phase that most wants samples: a train iteration's forward can be
far noisier than the total it is part of.

When rounds stop (`--rounds auto`): once every ratio's interval is within +-DECIDED_WIDTH from at
least MIN_ROUNDS paired quiet rounds (not set aside, not failed, no slow process), or MAX_ROUNDS of
them are counted, or the budget is spent; the verdict is read once, from the final interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from pybench.protocol.phases import HEADLINE, PHASES
from pybench.protocol.group import MIN_PLANNED, group_cap
from pybench.records.record import CellRecord
from pybench.records.ratios import DECIDED_WIDTH, ratio_confidence, round_log_ratio
from pybench.records.statistics import DEFAULT_STAT, block_value, t_quantile

# Before two rounds exist: a process pair's own effect on this kind of VM (A/A pairs: 0.967, 0.972,
# 1.048), and a within-round noise of 2%.
PRIOR_BETWEEN = 0.04
PRIOR_WITHIN = 0.02
MEDIAN_VARIANCE = math.pi / 2  # var(median of n) / (var(one sample) / n), for normal samples
# Two or three rounds barely estimate the between-round spread, and an estimate near 0 would plan
# endless rounds; per-round JAX/PyTorch ratios spread by 2-7% on the reference VM.
FLOOR_BETWEEN = 0.015
# Short rounds give the t interval its degrees of freedom: a round samples at most this many times
# its fixed cost (at most 2/3 of a round's wall time in timed iterations, by design).
MAX_SAMPLING_PER_FIXED = 2.0
# The fewest paired quiet rounds a decision needs: with fewer, a spread that came out small by chance
# would stop the rounds far more often (and t(2) at 97.5% is 6.2).
MIN_ROUNDS = 4
MAX_ROUNDS = 12  # paired quiet rounds after which an undecided ratio stays undecided
# Rounds run in all, set aside, failed and slow ones included: a machine busy throughout still ends.
MAX_ATTEMPTS = 2 * MAX_ROUNDS
# With --rounds auto, rounds are short enough that this many fit in a cell's budget: the optimum above
# assumes many rounds, but the t quantile of few rounds dominates (at 97.5%: t(3) 4.18, t(4) 3.50), and
# the stop rule's simulation (docs/protocol.md) decides most cells within about this many rounds.
FIT_ROUNDS = 8
MAX_PLANNED = 1000


def fit_samples(n: float, cost: float, cap: float) -> tuple[int, str]:
    """`n` samples bounded to [MIN_PLANNED, MAX_PLANNED] and to the cap: fewer than MIN_PLANNED only
    when one sample costs more than a third of the cap ("capped", which the record then says)."""
    fits = max(1, int(cap // cost)) if cost > 0 else MAX_PLANNED
    want = min(MAX_PLANNED, max(MIN_PLANNED, math.ceil(n)))
    return (want, "planned") if want <= fits else (fits, "capped" if fits < MIN_PLANNED else "planned")


@dataclass(frozen=True)
class Noise:
    within: float  # sd of one sample's log time as a round's number carries it (a ratio: the members' added)
    between: float  # sd a round adds to its log value beyond the within noise
    cost: float  # seconds of one sample of every member together


def noise(records: Sequence[CellRecord], group: str, stat: str = DEFAULT_STAT, phase: str | None = None) -> Noise:
    """The noise of `phase` (default: the group's headline) and the cost of one sample of its group,
    from the rounds the members have (priors where too few)."""
    sizing, lead = phase or HEADLINE[group], HEADLINE[group]
    within = cost = 0.0
    counts = []
    for r in records:
        rounds = r.samples(sizing) if sizing in r.phase_names else []
        logs = [np.log(s) for s in rounds if len(s) >= 3]
        within += float(np.mean([within_var(x, stat) for x in logs])) if logs else PRIOR_WITHIN ** 2
        whole = r.samples(lead) if lead in r.phase_names else []  # a sample costs a whole iteration
        cost += float(np.mean([np.mean(s) for s in whole])) if whole else 0.0
        counts += [len(s) for s in rounds]
    if len(records) > 1:
        values = round_logs(records[1], records[0], sizing, stat)
    else:
        values = [math.log(block_value(s, stat)) for s in records[0].samples(sizing)] if counts else []
    if len(values) >= 2:
        between = max(FLOOR_BETWEEN ** 2, float(np.var(values, ddof=1)) - within / float(np.mean(counts)))
    else:
        between = PRIOR_BETWEEN ** 2
    return Noise(math.sqrt(within), math.sqrt(between), cost)


def sizing_noise(records: Sequence[CellRecord], group: str, open_phases: Sequence[str] = (),
                 stat: str = DEFAULT_STAT) -> Noise:
    """The noise a group is sized by: of its open phases, the one whose noise most wants samples (the
    largest within over between), since the phase that decides last decides when rounds stop; a train
    iteration's forward can be far noisier than its total.  The headline when none is open."""
    phases = [p for p in open_phases if PHASES[p].group == group and p in records[0].phase_names]
    return max((noise(records, group, stat, p) for p in phases or [HEADLINE[group]]),
               key=lambda nz: nz.within / nz.between)


def within_var(logs: np.ndarray, stat: str) -> float:
    """One sample's variance as the round's number carries it.  A mean carries every sample, slow ones
    included.  A median or minimum does not: from the median absolute deviation (1.4826 MAD is the sd
    of a normal), so a slow first sample or two after a first run does not pass for the round's noise;
    a median's times pi/2, a minimum's not modelled."""
    if stat == "mean":
        return float(np.var(logs, ddof=1))
    robust = float((1.4826 * np.median(np.abs(logs - np.median(logs)))) ** 2)
    return robust * (MEDIAN_VARIANCE if stat == "median" else 1.0)


def round_logs(record: CellRecord, base: CellRecord, phase: str, stat: str = DEFAULT_STAT) -> list[float]:
    """Per round the two ran side by side, the log ratio of `record` to `base`."""
    num, den = record.blocks(phase, stat), base.blocks(phase, stat)
    return [round_log_ratio(num[k], den[k], stat) for k in num if k in den]


def plan_round(records: Sequence[CellRecord], groups: Sequence[str], fixed_cost: float,
               stat: str = DEFAULT_STAT, budget: float | None = None, open_phases: Sequence[str] = ()) -> dict[str, int]:
    """Samples per member for each group of the next round: the two-stage optimum for the group's
    `sizing_noise`, bounded; with a cell's `budget` (seconds, --rounds auto) short enough that
    FIT_ROUNDS rounds fit in it."""
    stop = records[0].spec.stop
    noises = {g: sizing_noise(records, g, open_phases, stat) for g in groups}
    best = {g: math.sqrt(fixed_cost * nz.within ** 2 / (max(nz.cost, 1e-9) * nz.between ** 2))
            for g, nz in noises.items()}
    allowed = MAX_SAMPLING_PER_FIXED * fixed_cost
    if budget is not None:
        allowed = min(allowed, max(0.0, budget / FIT_ROUNDS - fixed_cost))
    scale = _scale(best, {g: nz.cost for g, nz in noises.items()}, allowed)
    return {g: fit_samples(best[g] * scale, max(nz.cost / len(records), 1e-9), group_cap(stop, g, groups))[0]
            for g, nz in noises.items()}


def _scale(best: dict[str, float], cost: dict[str, float], allowed: float) -> float:
    """The factor (at most 1) on every group's optimum that spends at most `allowed` seconds on samples,
    counting the groups the factor would put below MIN_PLANNED at MIN_PLANNED, as they will run: a
    noisy group's extra samples come out of the others' share, not out of the rounds that fit."""
    floored: set[str] = set()
    while True:
        free = [g for g in best if g not in floored]
        if not free:
            return 0.0  # every group at the minimum
        want = sum(best[g] * cost[g] for g in free)
        if want <= 0:
            return 1.0
        scale = max(0.0, allowed - sum(MIN_PLANNED * cost[g] for g in floored)) / want
        if scale >= 1.0:
            return 1.0
        low = {g for g in free if best[g] * scale < MIN_PLANNED}
        if not low:
            return scale
        floored |= low


class Look(NamedTuple):
    """Where a phase's decision stands after a round."""

    counted: int  # the rounds its decision rests on: the fewest paired quiet rounds of any ratio to the
    # first member (set-aside, failed and slow rounds pair with nothing); for a lone member its quiet rounds
    decided: bool  # whether its rounds can stop: at least MIN_ROUNDS counted, and every ratio to the first
    # member within +-DECIDED_WIDTH (`Ratio.decided`, whatever it says: the verdict is read once, from
    # the final interval); for a lone member its interval within the precision


def looks(records: Sequence[CellRecord], stat: str = DEFAULT_STAT) -> dict[str, Look]:
    """Every phase of the first member's `Look`.  Each member's ratios are computed once, as one family,
    for every phase together."""
    base = records[0]
    if len(records) == 1:
        out = {}
        for phase in base.phase_names:
            n = sum(phase in r.phases and not r.disturbed for r in base.rounds)
            half = base.estimate(phase, stat).half_width_rel
            out[phase] = Look(n, n >= MIN_ROUNDS and half is not None and half <= base.spec.stop.precision)
        return out
    families = [r.ratios_to(base, stat) for r in records[1:]]
    out = {}
    for phase in base.phase_names:
        ratios = [f.get(phase) for f in families]
        n = min(x.n_rounds if x else 0 for x in ratios)
        out[phase] = Look(n, n >= MIN_ROUNDS and all(x is not None and x.decided() for x in ratios))
    return out


def open_phases(records: Sequence[CellRecord], stat: str = DEFAULT_STAT) -> list[str]:
    """The phases another round could still decide: undecided, with fewer than MAX_ROUNDS counted."""
    return [p for p, look in looks(records, stat).items() if look.counted < MAX_ROUNDS and not look.decided]


def rounds_to_decide(records: Sequence[CellRecord], phase: str, stat: str = DEFAULT_STAT) -> int | None:
    """Roughly how many counted rounds in all the phase's ratios need for `Look.decided`, from their spread
    so far: the smallest R (at least MIN_ROUNDS) whose interval, at the level the ratios use, would be
    within +-DECIDED_WIDTH.  None with fewer than two counted rounds, or beyond MAX_PLANNED."""
    base = records[0]
    stop = base.spec.stop
    level = (1 + ratio_confidence(stop.confidence, stop.sequential)) / 2
    need = MIN_ROUNDS
    for r in records[1:]:
        logs = np.array(round_logs(r, base, phase, stat))
        if len(logs) < 2:
            return None
        s = logs.std(ddof=1)
        total = next((n for n in range(max(len(logs), MIN_ROUNDS), MAX_PLANNED)
                      if t_quantile(level, n - 1) * s / math.sqrt(n) <= math.log1p(DECIDED_WIDTH)), None)
        if total is None:
            return None
        need = max(need, total)
    return need


@dataclass(frozen=True)
class Undecided:
    """A cell whose ratios (or estimate) stayed open, and roughly what would close them."""

    cell: CellRecord  # its first member
    phases: list[str]
    rounds_needed: int | None  # in all; None: too few rounds to say
    seconds_needed: float | None  # beyond what the run spent


def undecided(records: Sequence[CellRecord], stat: str = DEFAULT_STAT) -> list[Undecided]:
    """Per cell of a run, the phases left undecided (`CellRecord.undecided`) and an extrapolation."""
    cells: dict = {}
    for r in records:
        if r.ok:
            cells.setdefault(r.key.cell, []).append(r)
    out = []
    for members in cells.values():
        phases = members[0].undecided
        if not phases:
            continue
        needs = [rounds_to_decide(members, p, stat) for p in phases] if len(members) > 1 else [None]
        need = None if None in needs else max(needs)
        counts = looks(members, stat)
        done = min(counts[p].counted for p in phases)
        per_round = max(r.wall_time for r in members) / max(done, 1)  # set-aside and slow ones paid too
        seconds = (need - done) * per_round if need is not None and need > done else None
        out.append(Undecided(members[0], phases, need, seconds))
    return out
