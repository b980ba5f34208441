"""Checking JSON read back from files and workers: types and ranges, with the path of a bad field.

Every number a results file can hold is bounded here to what the statistics and reports can handle
without overflow: a time is between a nanosecond and a year, a count fits in 63 bits.  A value
outside is not a measurement pybench could have made, so it is refused, never clipped.
"""

from __future__ import annotations

import math
from typing import Any, Callable, TypeVar

T = TypeVar("T")

MIN_SECONDS = 1e-9  # one timed iteration cannot take less than a nanosecond
MAX_SECONDS = 3.2e7  # nor more than a year
MAX_COUNT = 2**63 - 1  # parameters, FLOPs, bytes


class Malformed(ValueError):
    """A record or document that does not have the shape of this schema; the message says where."""


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def is_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    """isinstance, except that a bool is not an int (JSON's true is not 1) unless bool is asked for."""
    return isinstance(value, kind) and not (isinstance(value, bool) and bool not in _kinds(kind))


def field_of(data: Any, key: str, kind: type | tuple[type, ...], where: str, optional: bool = False) -> Any:
    """data[key], checked to be of `kind`; a Malformed error naming the path otherwise."""
    if not isinstance(data, dict):
        raise Malformed(f"{where}: expected an object, got {type(data).__name__}")
    if key not in data or (data[key] is None and optional):
        if optional:
            return None
        raise Malformed(f"{where}.{key} is missing")
    value = data[key]
    if not is_kind(value, kind):
        names = " or ".join(k.__name__ for k in _kinds(kind))
        raise Malformed(f"{where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def shown(value: Any) -> str:
    """A number for a message: huge integers (whose repr may even be refused) by their size."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if value.bit_length() < 64 else f"a {value.bit_length()}-bit integer"
    return f"{value:g}" if isinstance(value, float) else repr(value)[:60]


def finite_within(value: int | float, low: float, high: float) -> bool:
    """low <= value <= high for a finite value; exact for integers of any size (no float overflow)."""
    return (isinstance(value, int) or math.isfinite(value)) and low <= value <= high


def number_in(value: Any, low: float, high: float, where: str, integer: bool = False) -> float:
    """A finite number (an integer, if asked) within [low, high]; Malformed otherwise."""
    kind = int if integer else (int, float)
    if not is_kind(value, kind):
        raise Malformed(f"{where}: expected {'an integer' if integer else 'a number'}, got {type(value).__name__}")
    if not finite_within(value, low, high):
        raise Malformed(f"{where}: {shown(value)} is out of range [{shown(low)}, {shown(high)}]")
    return value


def seconds(value: Any, where: str) -> float:
    return float(number_in(value, MIN_SECONDS, MAX_SECONDS, where))


def count(value: Any, where: str) -> int:
    """A non-negative count below 2^63; a float is taken when finite (older files wrote some)."""
    return int(number_in(value, 0, MAX_COUNT, where))


def list_of(data: Any, key: str, where: str, item: Callable[[Any, str], T]) -> list[T]:
    """data[key] as a list, each element checked by `item(value, path)`."""
    return [item(v, f"{where}.{key}[{i}]") for i, v in enumerate(field_of(data, key, list, where))]


def text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Malformed(f"{where}: expected str, got {type(value).__name__}")
    return value
