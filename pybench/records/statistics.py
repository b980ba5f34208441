"""Statistics over rounds: estimates, run-to-run tests and the verdicts (`Verdict`); framework ratios
are in `ratios.py`.

The unit is the round: each fresh process yields one number per phase (its mean, or with ``stat``
its median or minimum), because a round's number moves between processes far more than one
process's own interval says.  Intervals are computed on the log scale (a slow process slows a phase by
a factor; x1.25 and x0.8 are equally far from 1).

Estimate (two rounds or more): the geometric mean and a Student-t *replication* interval, mean +-
t(R-1) s sqrt(2/R): it contains the estimate a repeat run with as many rounds will give, the promise a
table's reader needs (why not the mean's interval or a bootstrap: docs/protocol.md).  One round: the
t interval of its mean, or the order-statistics interval of its median (`ranks.median_ci_ranks`), a
promise about that process only (`between_rounds` False); the minimum of one round has none.

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
from typing import Sequence

import numpy as np

from pybench.protocol.ranks import median_ci_ranks

Rounds = Sequence[Sequence[float]]  # one list of samples (seconds) per round
# The mean is the default: a training loop's time is the sum of its iterations, slow ones included
# (why not the median: docs/protocol.md, "Statistics").
STAT_WORDS = {"mean": "mean", "median": "median", "min": "minimum"}  # each statistic, as tables say it
STATS = tuple(STAT_WORDS)
DEFAULT_STAT = "mean"


class Verdict(str, enum.Enum):
    """Every verdict pybench states, one word each: str-valued, so JSON, CSV and tables keep the word."""

    FASTER = "faster"  # a ratio or a change its family's test calls (a change: beyond the threshold)
    SLOWER = "slower"
    TIE = "tie"  # a ratio not called, and decided (`Ratio.decided`)
    UNDECIDED = "undecided"  # a ratio not called whose interval is wider, or that has none
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
    value: float  # seconds: geometric mean of the round numbers (one round: its number)
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
class Change:
    ratio: float  # new / old estimate
    p_value: float | None  # None: too few rounds for a test
    significant: bool  # rejected by Holm over the whole family compared
    verdict: Verdict  # SLOWER, FASTER, SAME or INCONCLUSIVE
    ci_low: float | None = None  # Welch interval of new / old at 1 - alpha; None with a p-value
    ci_high: float | None = None


def block_value(samples: Sequence[float], stat: str) -> float:
    """A block's (or a round's) one number: its mean, median or minimum.  The standard library's:
    numpy's cost more than a few dozen samples do, and the scheduler asks often."""
    if stat == "mean":
        return math.fsum(samples) / len(samples)
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


def safe_exp(x: float) -> float:
    return math.exp(min(max(x, -_LOG_MAX), _LOG_MAX))


def round_values(rounds: Rounds, stat: str = DEFAULT_STAT) -> list[float]:
    """The one number of each round that every estimate and ratio is computed from."""
    return [float(v) for v in _round_values(rounds, stat)[0]]


@functools.lru_cache(maxsize=1024)
def t_quantile(p: float, df: int) -> float:
    """Student's t quantile, remembered: the scheduler asks the same few after every round."""
    from scipy import stats as st  # imported here: the worker's interpreter may lack scipy

    return float(st.t.ppf(p, df))


def t_interval(logs: np.ndarray, confidence: float, scale: float) -> tuple[float, float]:
    """exp(mean +- t * s * scale) of log values; scale is sqrt(1/R) for a CI of the mean."""
    r = len(logs)
    half = t_quantile((1 + confidence) / 2, r - 1) * logs.std(ddof=1) * scale
    m = logs.mean()
    return safe_exp(m - half), safe_exp(m + half)


def _one_round_interval(samples: Sequence[float], confidence: float, stat: str) -> tuple[float, float] | None:
    """One process's interval: the t interval of its mean, the order-statistics one of its median; a
    minimum has none."""
    x = np.sort(np.asarray(samples, dtype=float))
    if stat == "mean":
        if len(x) < 2:
            return None
        half = t_quantile((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
        return (float(x.mean() - half), float(x.mean() + half)) if half < x.mean() else None
    ranks = median_ci_ranks(len(x), confidence) if stat == "median" else None
    return (float(x[ranks[0]]), float(x[ranks[1]])) if ranks else None


def estimate(rounds: Rounds, confidence: float = 0.95, stat: str = DEFAULT_STAT) -> Estimate:
    """A phase's point estimate and interval over its rounds (see the module docstring)."""
    values, n = _round_values(rounds, stat)
    r = len(values)
    if r == 1:
        lo, hi = _one_round_interval(rounds[0], confidence, stat) or (None, None)
        return Estimate(float(values[0]), lo, hi, 1, n, between_rounds=False)
    logs = np.log(values)
    lo, hi = t_interval(logs, confidence, math.sqrt(2 / r))
    return Estimate(safe_exp(logs.mean()), lo, hi, r, n, between_rounds=True)


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


def round_test(old_rounds: Rounds, new_rounds: Rounds, stat: str = DEFAULT_STAT) -> float | None:
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
          stat: str = DEFAULT_STAT) -> list[Change]:
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
        p, lo, hi = test[0], safe_exp(test[1]), safe_exp(test[2])
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
