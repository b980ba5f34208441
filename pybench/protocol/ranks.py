"""The distribution-free confidence interval of a median from order statistics, for every sample size
at once (the stopping rule asks after every sample).  numpy only: the worker runs under interpreters
that have only numpy and their framework."""

from __future__ import annotations

import numpy as np


def _lower_ranks(n_max: int, confidence: float) -> np.ndarray:
    """For every n in 0..n_max, the 1-based rank j of the lower CI bound (0: no valid interval).

    The rank of the true median among n samples is Binomial(n, 1/2); j is the largest rank with
    P(B <= j-1) <= alpha/2, so [x_(j), x_(n-j+1)] covers the median with at least `confidence`.
    The binomial CDF comes from log-factorials in numpy (no scipy: the worker runs under
    interpreters that have only numpy and their framework); only its lower half is ever needed.
    """
    alpha = (1.0 - confidence) / 2.0
    log_fact = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, n_max + 1)))))
    j = np.zeros(n_max + 1, dtype=int)
    for n in range(1, n_max + 1):
        k = np.arange(n // 2 + 1)
        cdf = np.cumsum(np.exp(log_fact[n] - log_fact[k] - log_fact[n - k] - n * np.log(2.0)))
        j[n] = np.count_nonzero(cdf <= alpha)
    return j


_RANK_TABLES: dict[float, np.ndarray] = {}


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based order-statistic indices bounding a distribution-free CI of the median.

    None when n is too small for any interval to reach the confidence (n < 6 at 95%), so a tiny
    sample never counts as precise.
    """
    table = _RANK_TABLES.get(confidence)
    if table is None or len(table) <= n:
        table = _RANK_TABLES[confidence] = _lower_ranks(max(2 * n, 1024), confidence)
    j = int(table[n])
    return (j - 1, n - j) if j >= 1 else None
