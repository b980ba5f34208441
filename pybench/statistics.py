"""Statistics over rounds: estimates, framework ratios and run-to-run tests whose intervals include
the process-to-process variation.

The unit is the round.  A phase is measured in R rounds, each in a fresh process; a round yields one
number (the median, or with ``stat="min"`` the minimum, of its samples).  On the VMs this runs on, a
round's number moves 5-13% between back-to-back processes while one process's own interval says
+-1%, so the samples of a round say almost nothing about the next process and every interval below is
computed from one number per round.  It is computed on the log scale: a slow process slows a phase by
a factor, and logs make ratios symmetric (x1.25 and x0.8 are equally far from 1).

Estimate, two rounds or more: the geometric mean of the round numbers, and a Student-t *replication*
interval on their logs, mean +- t(R-1) * s * sqrt(1/R + 1/R): with `confidence` it contains the
estimate a repeat run with the same number of rounds will give.  That is the promise a reader of a
table needs, and what the calibration check measures (run A's interval contains run B's estimate).
The confidence interval of the mean (+- t * s / sqrt(R)) is sqrt(2) narrower but covers only the true
mean: it contains another run's estimate with probability P(|t(R-1)| < t_crit / sqrt 2), 91% at R=3,
88% at R=5 and 83% as R grows, so it would miss the >= 90% target for every R >= 4 although nothing is
wrong.  A hierarchical bootstrap (rounds, then samples) was rejected: with 3-6 rounds there are few
distinct resamples and the percentile interval lacks t's tails (simulated with 8% drift: it contains
another run's estimate 62% of the time at R=3, 71% at R=5).

One round: the distribution-free interval of the median from order statistics
(`protocol.median_ci_ranks`).  It describes only that process, so `between_rounds` is False and a
reader must not take it as a promise about the next run.  The minimum of one round has no such
interval: None.

Ratios (`paired_ratio`): the frameworks of a cell run back to back in every round, so drift largely
cancels in their per-round ratio.  Here the question is whether the true ratio differs from 1, so the
interval is the t confidence interval of the mean log ratio (not a replication interval).

Run-to-run changes (`round_test`, `judge`): rounds of two runs are not paired, so Welch's t-test on log
round numbers (it allows the runs to differ in noise), Holm-Bonferroni over every phase and cell
compared, and a relative threshold so a real but tiny change is still "same".  With few rounds the
test is weak by design: a 5-13% process factor cannot be told from a change of that size with three
rounds a side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pybench.protocol import median_ci_ranks

Rounds = Sequence[Sequence[float]]  # one list of samples (seconds) per round
STATS = ("median", "min")
CHANGE_VERDICTS = ("slower", "faster", "same", "inconclusive")


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
        """The interval's larger distance from the value, relative (log intervals are asymmetric)."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return max(self.ci_high / self.value - 1, 1 - self.ci_low / self.value)


@dataclass(frozen=True)
class Ratio:
    value: float  # numerator time / denominator time: below 1, the numerator is faster
    ci_low: float | None
    ci_high: float | None
    n_rounds: int
    between_rounds: bool

    @property
    def excludes_one(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None and (
            self.ci_high < 1 or self.ci_low > 1)

    def verdict(self) -> str:
        """'faster' or 'slower' for the numerator when the interval excludes 1, else 'tie'."""
        if not self.excludes_one:
            return "tie"
        return "faster" if self.value < 1 else "slower"


@dataclass(frozen=True)
class Change:
    ratio: float  # new / old estimate
    p_value: float | None  # None: too few rounds for a test
    significant: bool  # rejected by Holm over the whole family compared
    verdict: str  # one of CHANGE_VERDICTS


def _round_values(rounds: Rounds, stat: str) -> tuple[np.ndarray, int]:
    """One number per round and the total sample count; every bad input is a clear ValueError."""
    if stat not in STATS:
        raise ValueError(f"unknown stat {stat!r}; use one of {', '.join(STATS)}")
    if len(rounds) == 0:
        raise ValueError("no rounds")
    values, n = [], 0
    for i, samples in enumerate(rounds):
        x = np.asarray(samples, dtype=float)
        if x.size == 0:
            raise ValueError(f"round {i} has no samples")
        if not np.all(np.isfinite(x) & (x > 0)):
            raise ValueError(f"round {i} has a sample that is not a positive duration")
        values.append(np.median(x) if stat == "median" else x.min())
        n += x.size
    return np.asarray(values), n


def round_values(rounds: Rounds, stat: str = "median") -> list[float]:
    """The one number of each round that every estimate and ratio is computed from."""
    return [float(v) for v in _round_values(rounds, stat)[0]]


def _t_interval(logs: np.ndarray, confidence: float, scale: float) -> tuple[float, float]:
    """exp(mean +- t * s * scale) of log values; scale is sqrt(1/R) for a CI of the mean."""
    from scipy import stats as st  # imported here: the worker's interpreter may lack scipy

    r = len(logs)
    half = st.t.ppf((1 + confidence) / 2, r - 1) * logs.std(ddof=1) * scale
    m = logs.mean()
    return math.exp(m - half), math.exp(m + half)


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
    return Estimate(math.exp(logs.mean()), lo, hi, r, n, between_rounds=True)


def paired_ratio(num_rounds: Rounds, den_rounds: Rounds, confidence: float = 0.95,
                 stat: str = "median") -> Ratio:
    """Ratio num/den from rounds paired by index (both ran back to back in the same round)."""
    num, _ = _round_values(num_rounds, stat)
    den, _ = _round_values(den_rounds, stat)
    if len(num) != len(den):
        raise ValueError(f"rounds are paired by index: {len(num)} vs {len(den)} rounds")
    r = len(num)
    logs = np.log(num / den)
    value = math.exp(logs.mean())
    if r >= 2:
        lo, hi = _t_interval(logs, confidence, math.sqrt(1 / r))
        return Ratio(value, lo, hi, r, between_rounds=True)
    # One round: two independent median intervals, each at sqrt(confidence), hold jointly with
    # probability >= confidence, and then so does [lo_num / hi_den, hi_num / lo_den].
    a = _median_interval(num_rounds[0], math.sqrt(confidence)) if stat == "median" else None
    b = _median_interval(den_rounds[0], math.sqrt(confidence)) if stat == "median" else None
    if a is None or b is None:
        return Ratio(value, None, None, 1, between_rounds=False)
    return Ratio(value, a[0] / b[1], a[1] / b[0], 1, between_rounds=False)


def round_test(old_rounds: Rounds, new_rounds: Rounds, stat: str = "median") -> float | None:
    """Two-sided Welch t-test p-value on log round numbers; None with fewer than two rounds on a side,
    or when neither run varies at all (the test is undefined)."""
    old, _ = _round_values(old_rounds, stat)
    new, _ = _round_values(new_rounds, stat)
    if len(old) < 2 or len(new) < 2:
        return None
    from scipy import stats as st

    p = float(st.ttest_ind(np.log(old), np.log(new), equal_var=False).pvalue)
    return None if math.isnan(p) else p


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

    A change is called only when Holm rejects it across the family and |new/old - 1| > threshold;
    'inconclusive' when a side has too few rounds for the test, or when the estimates differ by more
    than the threshold and the rounds cannot confirm it (calling that 'same' would hide it).
    """
    p_values = [round_test(old, new, stat) for old, new in pairs]
    rejected = holm(p_values, alpha)
    out = []
    for (old, new), p, rej in zip(pairs, p_values, rejected):
        ratio = estimate(new, stat=stat).value / estimate(old, stat=stat).value
        if p is None:
            verdict = "inconclusive"
        elif abs(ratio - 1) <= threshold:
            verdict = "same"
        elif rej:
            verdict = "slower" if ratio > 1 else "faster"
        else:
            verdict = "inconclusive"
        out.append(Change(ratio, p, rej, verdict))
    return out

