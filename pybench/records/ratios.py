"""Framework ratios: how a cell's members compare, and what a reader may conclude from it.

The members of a cell run side by side in every round, so drift largely cancels in their per-round
ratio; rounds pair by (run, round number), never across runs, and a round without a partner (failed,
set aside, or a slow process: `slow_rounds`) is dropped and counted.  A ratio's interval is the t
confidence interval of the mean log ratio; one pair gives a value, no interval.

The verdict is a test once, on the final rounds, and one per question: "is this member faster or
slower than that one" is asked of every phase of the pair at once, so a "faster" or "slower" needs
Holm-Bonferroni over the pair's phases (`paired_ratios`): read phase by phase, an A/A pair's five
verdicts would often hold some "faster" or "slower" by chance alone (the rates, simulated on the
real scheduler: docs/protocol.md, "When rounds stop").  A verdict of "faster" or "slower" always
comes with an interval that excludes 1 and a ratio beyond 1 +- SMALLEST_CALL; an interval that
excludes 1 without the family's confirmation, or closer to 1 than that, reads "tie" when it is
decided (any difference within +-DECIDED_WIDTH), else "undecided".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import median
from typing import Hashable, Mapping, Sequence

import numpy as np

from pybench.records.statistics import DEFAULT_STAT, Verdict, half_width, holm, round_values, safe_exp, t_interval

DECIDED_WIDTH = 0.10  # a ratio is decided once its interval is within +-this of its value
# The smallest difference a verdict calls (as diff's threshold is for a change): below it, a few
# steady process pairs of the same code can agree on a difference the next pairs need not share
# (docs/protocol.md, "When rounds stop").
SMALLEST_CALL = 0.02
PRECISION_STOP_CONFIDENCE = 0.975
SLOW_PROCESS = 0.25  # a round this much slower than its side's median round is a slow process

Blocks = Sequence[Sequence[float]]  # one round's samples, in the blocks they were taken


@dataclass(frozen=True)
class Ratio:
    value: float  # numerator time / denominator time: below 1, the numerator is faster
    ci_low: float | None
    ci_high: float | None
    n_rounds: int
    between_rounds: bool
    unpaired: int = 0  # rounds of one side without a partner (failed, set aside, slow), left out
    p_value: float | None = None  # two-sided t test of "no difference"; None without an interval
    called: bool = False  # the test rejects "no difference", across its family (`paired_ratios`)

    @property
    def half_width_rel(self) -> float | None:
        return half_width(self.value, self.ci_low, self.ci_high)

    def verdict(self) -> Verdict:
        """FASTER or SLOWER for the numerator when its family's test calls it (its interval then
        excludes 1) and it is beyond SMALLEST_CALL either way (on the log scale, so num/den and
        den/num read alike); else TIE when the ratio is decided (any difference is within about
        +-DECIDED_WIDTH), UNDECIDED when it is wider or there is no interval."""
        if self.called and abs(math.log(self.value)) > math.log1p(SMALLEST_CALL):
            return Verdict.FASTER if self.value < 1 else Verdict.SLOWER
        return Verdict.TIE if self.decided() else Verdict.UNDECIDED

    def decided(self) -> bool:
        """The interval is within +-DECIDED_WIDTH of the value, whatever it says: the answer a reader
        needs, and what `--rounds auto` stops on (with enough rounds: `planning.looks`)."""
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


def round_log_ratio(num: Blocks, den: Blocks, stat: str = DEFAULT_STAT) -> float:
    """One round's log ratio, from its block pairs (block i of each side ran next to the other's block
    i in a lockstep round; a back-to-back round is one block a side): the median over the pairs of
    the log ratios of their means (or medians), so one disturbed pair (a late warm-up, another
    process) does not move the round; with `stat="min"` the ratio of the two sides' fastest samples."""
    k = min(len(num), len(den))
    if k == 0:
        raise ValueError("a round without blocks")
    values = round_values([*num[:k], *den[:k]], stat)  # every block checked, one number each
    if stat == "min":
        return math.log(min(values[:k])) - math.log(min(values[k:]))
    # a difference of logs: the quotient may overflow
    return float(median([math.log(a) - math.log(b) for a, b in zip(values[:k], values[k:])]))


def ratio_confidence(confidence: float, sequential: bool) -> float:
    """The level a ratio's interval is computed at.  `--rounds auto` stops once every interval is narrow
    (`planning.looks`), whatever it says: a stop on the spread, not on the mean, but one that favours
    a spread that came out small, so the final interval is a little narrower than its level says;
    97.5% is what keeps the rule's false calls under 5% at every spread (docs/protocol.md)."""
    return max(confidence, PRECISION_STOP_CONFIDENCE) if sequential else confidence


def slow_rounds(values: Mapping[Hashable, float]) -> dict[Hashable, float]:
    """Of one side's round values (one phase, the statistic the ratio reads), those over SLOW_PROCESS
    above its median round, with their factor: in no ratio, so a ratio describes the typical process
    (a slow process, or one disturbed in some of its iterations).  Each side is judged against itself
    (symmetric, scale-free); below three rounds none is typical enough to judge by."""
    if len(values) < 3:
        return {}
    typical = median(values.values())
    return {k: v / typical for k, v in values.items() if v > (1 + SLOW_PROCESS) * typical}


def _p_value(logs: np.ndarray) -> float:
    """Two-sided one-sample t test of mean log ratio 0, on the same t as the interval: p < 1 - level
    exactly when the interval at that level excludes 1."""
    from scipy import stats as st  # imported here: the worker's interpreter may lack scipy

    m, se = float(logs.mean()), float(logs.std(ddof=1)) / math.sqrt(len(logs))
    if se == 0 or se < 1e-12 * max(1.0, abs(m)):  # no variation: a clean answer, not a NaN
        return 1.0 if m == 0 else 0.0
    return float(2 * st.t.sf(abs(m) / se, len(logs) - 1))


def paired_ratio(num_rounds: Mapping[Hashable, Blocks], den_rounds: Mapping[Hashable, Blocks],
                 confidence: float = 0.95, stat: str = DEFAULT_STAT) -> Ratio | None:
    """Ratio num/den from the rounds both measured side by side, paired by their key (run and round
    number); rounds of only one side are dropped and counted.  None when no round pairs.  Alone it is
    a family of one: called when its interval excludes 1."""
    keys = [k for k in num_rounds if k in den_rounds]
    unpaired = len(num_rounds) + len(den_rounds) - 2 * len(keys)
    if not keys:
        return None
    logs = np.array([round_log_ratio(num_rounds[k], den_rounds[k], stat) for k in keys])
    value = safe_exp(logs.mean())
    if len(keys) < 2:  # one process pair says nothing about the next: no interval, no verdict
        return Ratio(value, None, None, 1, between_rounds=False, unpaired=unpaired)
    lo, hi = t_interval(logs, confidence, math.sqrt(1 / len(keys)))
    p = _p_value(logs)
    return Ratio(value, lo, hi, len(keys), between_rounds=True, unpaired=unpaired, p_value=p,
                 called=holm([p], 1 - confidence)[0])


def paired_ratios(num: Mapping[str, Mapping[Hashable, Blocks]], den: Mapping[str, Mapping[Hashable, Blocks]],
                  confidence: float = 0.95, stat: str = DEFAULT_STAT) -> dict[str, Ratio | None]:
    """Per phase both sides have, `paired_ratio`; "faster" or "slower" called by Holm over the phases
    at 1 - confidence, as one question about the pair (see the module docstring)."""
    ratios = {p: paired_ratio(num[p], den[p], confidence, stat) for p in num if p in den}
    called = holm([r.p_value if r else None for r in ratios.values()], 1 - confidence)
    return {p: r and replace(r, called=c) for (p, r), c in zip(ratios.items(), called)}
