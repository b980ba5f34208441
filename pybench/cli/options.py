"""Argument types of the command line: every number bounded to what the code can honour, so a value
it cannot use is refused up front (one line, exit 2) instead of overflowing mid-run."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable

from pybench.limits import MAX_LABEL
from pybench.records.shape import finite_within, shown


def number(cast: type, minimum: float = 0, inclusive: bool = False,
           maximum: float = math.inf) -> Callable[[str], int | float]:
    """An argparse type: a finite number of the given type above `minimum` (or at it, if inclusive)
    and at most `maximum`."""

    def parse(text: str) -> int | float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a valid {cast.__name__}") from None
        if not finite_within(value, -math.inf, math.inf):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
        if value < minimum or (value == minimum and not inclusive):
            bound = f"at least {minimum:g}" if inclusive else "positive" if minimum == 0 else f"above {minimum:g}"
            raise argparse.ArgumentTypeError(f"{text[:40]!r} must be {bound}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{shown(value)} is more than this can honour (at most {shown(maximum)})")
        return value

    return parse


def label_text(text: str) -> str:
    if not text.strip() or len(text) > MAX_LABEL or not text.isprintable():
        raise argparse.ArgumentTypeError(
            f"labels are 1 to {MAX_LABEL} printable characters, got {text[:40]!r}")
    return text


def results_dir(text: str) -> Path:
    path = Path(text)
    if not text:
        raise argparse.ArgumentTypeError("the results folder must not be empty")
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return path


# Unbounded above: for scripts whose own options have no such limit.
positive_int, positive_float, non_negative_int = number(int), number(float), number(int, 0, True)
