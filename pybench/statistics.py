"""Interim: estimates over rounds (replaced by the rounds statistics module)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pybench.protocol import summarize


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float | None
    ci_high: float | None
    n_rounds: int
    n_samples: int
    between_rounds: bool

    def to_json(self) -> dict:
        return self.__dict__.copy()


def estimate(rounds: Sequence[Sequence[float]], confidence: float = 0.95, stat: str = "median") -> Estimate:
    if not rounds or not all(rounds):
        raise ValueError("no samples to estimate from")
    pooled = [x for r in rounds for x in r]
    s = summarize(pooled, confidence)
    value = s.median if stat == "median" else s.min
    return Estimate(value, s.ci_low, s.ci_high, len(rounds), len(pooled), False)


@dataclass(frozen=True)
class Ratio:
    value: float
    ci_low: float | None
    ci_high: float | None
    n_pairs: int


def paired_ratio(num_rounds, den_rounds, confidence: float = 0.95, stat: str = "median") -> Ratio:
    a, b = estimate(num_rounds, confidence, stat), estimate(den_rounds, confidence, stat)
    if None in (a.ci_low, a.ci_high, b.ci_low, b.ci_high):
        return Ratio(a.value / b.value, None, None, 1)
    return Ratio(a.value / b.value, a.ci_low / b.ci_high, a.ci_high / b.ci_low, 1)
