"""Statistics over rounds: estimates, framework ratios, run-to-run tests, the slow-process screen and
the verdicts (`Verdict`).

The unit is the round: each fresh process yields one number per phase (its median, or with
``stat="min"`` its minimum), because a round's number moves between processes far more than one
process's own interval says.  Intervals are computed on the log scale (a slow process slows a phase by
a factor; x1.25 and x0.8 are equally far from 1).

Estimate (two rounds or more): the geometric mean and a Student-t *replication* interval, mean +-
t(R-1) s sqrt(2/R): it contains the estimate a repeat run with as many rounds will give, the promise a
table's reader needs (why not the mean's interval or a bootstrap: docs/protocol.md).  One round: the
order-statistics interval of its median (`ranks.median_ci_ranks`), a promise about that process only
(`between_rounds` False); the minimum of one round has none.

Ratios (`paired_ratio`): the members of a cell run side by side in every round, so drift largely
cancels in their per-round ratio; rounds pair by (run, round number), never across runs, and a round
without a partner (failed, set aside, or a slow process: `slow_rounds`) is dropped and counted.  The
interval is the t confidence interval of the mean log ratio; one pair gives a value, no interval.

Run-to-run changes (`judge`): rounds of two runs are not paired, so Welch's t-test on log round
numbers, Holm-Bonferroni over everything compared, and a relative threshold; "same" needs the
change's interval within the threshold, so a noisy comparison is never called "same".
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass
from statistics import median
from typing import Hashable, Mapping, Sequence

import numpy as np

from pybench.protocol.ranks import median_ci_ranks

Rounds = Sequence[Sequence[float]]  # one list of samples (seconds) per round
STATS = ("median", "min")
DECIDED_WIDTH = 0.10  # a ratio is decided once its interval is within +-this of its value


class Verdict(str, enum.Enum):
    """Every verdict pybench states, one word each: str-valued, so JSON, CSV and tables keep the word."""

    FASTER = "faster"  # a ratio or a change whose interval excludes 1 (a change: beyond the threshold)
    SLOWER = "slower"
    TIE = "tie"  # a ratio whose interval holds 1 and is decided (`Ratio.decided`)
    UNDECIDED = "undecided"  # a ratio whose interval holds 1 and is wider, or that has none
    SAME = "same"  # a change whose interval lies within the threshold
    INCONCLUSIVE = "inconclusive"  # a change the rounds can neither confirm nor rule out
    # diff's states of a whole cell, where no phase is compared
    ONLY_IN_OLD = "only-in-old"
    ONLY_IN_NEW = "only-in-new"
    BROKEN = "broken"  # ran before, fails now
    FIXED = "fixed"
    FAILED = "failed"  # fails in both runs

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Estimate:
    value: float  # seconds: geometric mean of the round numbers (one round: its median or min)
    ci_low: float | None  # None: no interval (one round with too few samples, or the min of one)
    ci_high: float | None
    n_rounds: int
    n_samples: int  # over all rounds
    between_rounds: bool  # the interval includes process-to-process variation (>= 2 rounds)

    def to_json(self) -> dict:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "n_rounds": self.n_rounds, "n_samples": self.n_samples, "between_rounds": self.between_rounds}

    @property
    def half_width_rel(self) -> float | None:
        return half_width(self.value, self.ci_low, self.ci_high)


def half_width(value: float, low: float | None, high: float | None) -> float | None:
    """An interval's larger distance from its value, relative (log intervals are asymmetric): the one
    definition of an interval's width, for estimates and ratios alike."""
    if low is None or high is None:
        return None
    return max(high / value - 1, 1 - low / value)


@dataclass(frozen=True)
class Ratio:
    value: float  # numerator time / denominator time: below 1, the numerator is faster
    ci_low: float | None
    ci_high: float | None
    n_rounds: int
    between_rounds: bool
    unpaired: int = 0  # rounds of one side without a partner (failed, set aside, slow), left out

    @property
    def half_width_rel(self) -> float | None:
        return half_width(self.value, self.ci_low, self.ci_high)

    @property
    def excludes_one(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None and (
            self.ci_high < 1 or self.ci_low > 1)

    def verdict(self) -> Verdict:
        """FASTER or SLOWER for the numerator when the interval excludes 1; else TIE when the ratio is
        decided (any difference is within about +-DECIDED_WIDTH), UNDECIDED when it is wider or there
        is no interval."""
        if self.excludes_one:
            return Verdict.FASTER if self.value < 1 else Verdict.SLOWER
        return Verdict.TIE if self.decided() else Verdict.UNDECIDED

    def decided(self) -> bool:
        """The interval is within +-DECIDED_WIDTH of the value, whatever it says: the answer a reader
        needs, and what `--rounds auto` stops on (with enough rounds: `planning.decided`)."""
        half = self.half_width_rel
        return half is not None and half <= DECIDED_WIDTH


@dataclass(frozen=True)
class Screen:
    """One side's processes that the slow-process screen left out of ratios (`slow_rounds`)."""

    slow: int  # processes left out of at least one phase's ratio
    rounds: int  # its quiet numbered rounds (processes)
    worst: float  # the largest factor of a slow process over its side's median round

    def note(self) -> str:
        """The one sentence every report shows for it."""
        return (f"{self.slow} of {self.rounds} processes {'up to ' if self.slow > 1 else ''}"
                f"{self.worst - 1:.0%} slower than the typical one, not in the ratios")


@dataclass(frozen=True)
class Change:
    ratio: float  # new / old estimate
    p_value: float | None  # None: too few rounds for a test
    significant: bool  # rejected by Holm over the whole family compared
    verdict: Verdict  # SLOWER, FASTER, SAME or INCONCLUSIVE
    ci_low: float | None = None  # Welch interval of new / old at 1 - alpha; None with a p-value
    ci_high: float | None = None


def block_value(samples: Sequence[float], stat: str) -> float:
    """A block's (or a round's) one number: its median, or its minimum.  The standard library's
    median: numpy's costs more than the sort of a few dozen samples, and the scheduler asks often."""
    return float(median(samples) if stat == "median" else min(samples))


def _round_values(rounds: Rounds, stat: str) -> tuple[np.ndarray, int]:
    """One number per round and the total sample count; every bad input is a clear ValueError."""
    if stat not in STATS:
        raise ValueError(f"unknown stat {stat!r}; use one of {', '.join(STATS)}")
    if len(rounds) == 0:
        raise ValueError("no rounds")
    values, n = [], 0
    for i, samples in enumerate(rounds):
        x = [float(v) for v in samples]
        if not x:
            raise ValueError(f"round {i} has no samples")
        if not all(0 < v < math.inf for v in x):  # NaN fails every comparison
            raise ValueError(f"round {i} has a sample that is not a positive duration")
        values.append(block_value(x, stat))
        n += len(x)
    return np.asarray(values), n


# exp() of a log beyond this overflows a float; an interval reaching it is clamped to the largest
# finite bound (records refuse times outside [1 ns, 1 year], so only a hostile caller gets there).
_LOG_MAX = math.log(np.finfo(float).max)


def _exp(x: float) -> float:
    return math.exp(min(max(x, -_LOG_MAX), _LOG_MAX))


def round_values(rounds: Rounds, stat: str = "median") -> list[float]:
    """The one number of each round that every estimate and ratio is computed from."""
    return [float(v) for v in _round_values(rounds, stat)[0]]


@functools.lru_cache(maxsize=1024)
def t_quantile(p: float, df: int) -> float:
    """Student's t quantile, remembered: the scheduler asks the same few after every round."""
    from scipy import stats as st  # imported here: the worker's interpreter may lack scipy

    return float(st.t.ppf(p, df))


def _t_interval(logs: np.ndarray, confidence: float, scale: float) -> tuple[float, float]:
    """exp(mean +- t * s * scale) of log values; scale is sqrt(1/R) for a CI of the mean."""
    r = len(logs)
    half = t_quantile((1 + confidence) / 2, r - 1) * logs.std(ddof=1) * scale
    m = logs.mean()
    return _exp(m - half), _exp(m + half)


def _median_interval(samples: Sequence[float], confidence: float) -> tuple[float, float] | None:
    x = np.sort(np.asarray(samples, dtype=float))
    ranks = median_ci_ranks(len(x), confidence)
    return (float(x[ranks[0]]), float(x[ranks[1]])) if ranks else None


def estimate(rounds: Rounds, confidence: float = 0.95, stat: str = "median") -> Estimate:
    """A phase's point estimate and interval over its rounds (see the module docstring)."""
    values, n = _round_values(rounds, stat)
    r = len(values)
    if r == 1:
        ci = _median_interval(rounds[0], confidence) if stat == "median" else None
        lo, hi = ci if ci else (None, None)
        return Estimate(float(values[0]), lo, hi, 1, n, between_rounds=False)
    logs = np.log(values)
    lo, hi = _t_interval(logs, confidence, math.sqrt(2 / r))
    return Estimate(_exp(logs.mean()), lo, hi, r, n, between_rounds=True)


Blocks = Sequence[Sequence[float]]  # one round's samples, in the blocks they were taken


def round_log_ratio(num: Blocks, den: Blocks, stat: str = "median") -> float:
    """One round's log ratio, from its block pairs (block i of each side ran next to the other's block
    i in a lockstep round; a back-to-back round is one block a side): the median over the pairs of
    their log ratios, so one disturbed pair (a late warm-up, another process) does not move the round;
    with `stat="min"` the ratio of the two sides' fastest samples."""
    k = min(len(num), len(den))
    if k == 0:
        raise ValueError("a round without blocks")
    values = _round_values([*num[:k], *den[:k]], stat)[0]  # every block checked, one number each
    if stat == "min":
        return math.log(min(values[:k])) - math.log(min(values[k:]))
    # a difference of logs: the quotient may overflow
    return float(median([math.log(a) - math.log(b) for a, b in zip(values[:k], values[k:])]))


PRECISION_STOP_CONFIDENCE = 0.975
SLOW_PROCESS = 0.25  # a round this much slower than its side's median round is a slow process


def ratio_confidence(confidence: float, sequential: bool) -> float:
    """The level a ratio's interval is computed at.  `--rounds auto` stops once every interval is narrow
    (`planning.decided`), whatever it says: a stop on the spread, not on the mean, but one that favours
    a spread that came out small, so the final interval is a little narrower than its level says.
    97.5% keeps A/A false calls under 5% per phase (scripts/simulate_stopping.py; docs/protocol.md)."""
    return max(confidence, PRECISION_STOP_CONFIDENCE) if sequential else confidence


def slow_rounds(values: Mapping[Hashable, float]) -> dict[Hashable, float]:
    """Of one side's round values (one phase), those over SLOW_PROCESS above its median round, with their
    factor: in no ratio, so a ratio describes the typical process.  Each side is judged against itself
    (symmetric, scale-free); below three rounds none is typical enough to judge by."""
    if len(values) < 3:
        return {}
    typical = median(values.values())
    return {k: v / typical for k, v in values.items() if v > (1 + SLOW_PROCESS) * typical}


def paired_ratio(num_rounds: Mapping[Hashable, Blocks], den_rounds: Mapping[Hashable, Blocks],
                 confidence: float = 0.95, stat: str = "median") -> Ratio | None:
    """Ratio num/den from the rounds both measured side by side, paired by their key (run and round
    number); rounds of only one side are dropped and counted.  None when no round pairs."""
    keys = [k for k in num_rounds if k in den_rounds]
    unpaired = len(num_rounds) + len(den_rounds) - 2 * len(keys)
    if not keys:
        return None
    logs = np.array([round_log_ratio(num_rounds[k], den_rounds[k], stat) for k in keys])
    value = _exp(logs.mean())
    if len(keys) < 2:  # one process pair says nothing about the next: no interval, no verdict
        return Ratio(value, None, None, 1, between_rounds=False, unpaired=unpaired)
    lo, hi = _t_interval(logs, confidence, math.sqrt(1 / len(keys)))
    return Ratio(value, lo, hi, len(keys), between_rounds=True, unpaired=unpaired)


def _welch(old: np.ndarray, new: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Welch's test on log round numbers: (p-value, interval of log(new / old) at `confidence`).

    Computed here rather than by scipy so that rounds without any variation are a clean answer
    (p 1 or 0, an interval of one point) instead of a NaN and a RuntimeWarning."""
    from scipy import stats as st  # imported here: the worker's interpreter may lack scipy

    a, b = np.log(old), np.log(new)
    d = float(b.mean() - a.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0 or se < 1e-12 * max(1.0, abs(d)):  # no variation on either side
        return (1.0 if d == 0 else 0.0), d, d
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(st.t.ppf((1 + confidence) / 2, df)) * se
    return float(2 * st.t.sf(abs(d) / se, df)), d - half, d + half


def round_test(old_rounds: Rounds, new_rounds: Rounds, stat: str = "median") -> float | None:
    """Two-sided Welch t-test p-value on log round numbers; None with fewer than two rounds on a side."""
    old, _ = _round_values(old_rounds, stat)
    new, _ = _round_values(new_rounds, stat)
    if len(old) < 2 or len(new) < 2:
        return None
    return _welch(old, new, 0.95)[0]


def holm(p_values: Sequence[float | None], alpha: float = 0.05) -> list[bool]:
    """Holm-Bonferroni step-down: which hypotheses to reject at family-wise level alpha.

    None is a test not made: it never rejects and does not count in the family size.
    """
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    reject = [False] * len(p_values)
    m = len(tested)
    for k, (p, i) in enumerate(tested):
        if p > alpha / (m - k):
            break
        reject[i] = True
    return reject


def judge(pairs: Sequence[tuple[Rounds, Rounds]], threshold: float = 0.05, alpha: float = 0.05,
          stat: str = "median") -> list[Change]:
    """Verdicts for a family of (old_rounds, new_rounds), e.g. every phase of every cell compared.

    A change is called only when Holm rejects it across the family and |new/old - 1| > threshold.
    'same' needs evidence too: the (1 - alpha) interval of new/old lies within [1 - threshold,
    1 + threshold].  Anything else is 'inconclusive': too few rounds for a test, or rounds too
    noisy to confirm either a change or its absence.
    """
    tests: list[tuple[float, float, float] | None] = []
    for old_rounds, new_rounds in pairs:
        old, _ = _round_values(old_rounds, stat)
        new, _ = _round_values(new_rounds, stat)
        tests.append(_welch(old, new, 1 - alpha) if len(old) >= 2 and len(new) >= 2 else None)
    rejected = holm([t[0] if t else None for t in tests], alpha)
    out = []
    for (old, new), test, rej in zip(pairs, tests, rejected):
        ratio = estimate(new, stat=stat).value / estimate(old, stat=stat).value
        if test is None:
            out.append(Change(ratio, None, False, Verdict.INCONCLUSIVE))
            continue
        p, lo, hi = test[0], _exp(test[1]), _exp(test[2])
        out.append(Change(ratio, p, rej, change_verdict(ratio, rej, lo, hi, threshold), lo, hi))
    return out


def change_verdict(ratio: float, rejected: bool, low: float, high: float, threshold: float) -> Verdict:
    """A change new/old: SLOWER or FASTER when its test was rejected and it exceeds the threshold;
    SAME when its interval [low, high] lies within [1 - threshold, 1 + threshold]; else INCONCLUSIVE."""
    if rejected and abs(ratio - 1) > threshold:
        return Verdict.SLOWER if ratio > 1 else Verdict.FASTER
    if 1 - threshold <= low and high <= 1 + threshold:
        return Verdict.SAME
    return Verdict.INCONCLUSIVE
