"""NVML, asked one call at a time: the session, the call that never raises, and the clock-event
("throttle") reasons.

Any call may fail (a MIG slice refuses some queries without privilege, an old driver or an old
`pynvml` lacks a function) and a failure is a None, never a crash.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def nvml_session() -> Iterator[Any | None]:
    """The initialised pynvml module for the block, or None without NVML (no library, no driver)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVML library or no driver both mean "no GPU"
        pynvml = None
    try:
        yield pynvml
    finally:
        if pynvml is not None:
            nvml_call(pynvml, "nvmlShutdown")


def nvml_call(nv: Any, name: str, *args: Any) -> Any:
    """`nv.<name>(*args)`; None when it fails: NVMLError, or a function this pynvml (an old package
    shadowing nvidia-ml-py) or driver lacks, looked up inside the `try` for that reason."""
    try:
        return getattr(nv, name)(*args)
    except Exception:  # noqa: BLE001 - a refused query is a missing fact, not a failed run
        return None


# nvml.h's nvmlClocksEventReason* bits (the same values as the older nvmlClocksThrottleReason*).
CLOCK_REASONS = {
    0x1: "gpu_idle", 0x2: "applications_clocks", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
    0x10: "sync_boost", 0x20: "sw_thermal", 0x40: "hw_thermal", 0x80: "hw_power_brake",
    0x100: "display_clocks",
}
# Reasons that hold the SM clock below what the load asks for.  Sync boost counts: nvml.h says a GPU
# in a sync-boost group runs at the lowest clock any GPU of the group can hold.  Idle, application
# clocks and display clocks do not slow a loaded GPU down.
SLOWDOWNS = ("sw_power_cap", "hw_slowdown", "sync_boost", "sw_thermal", "hw_thermal", "hw_power_brake")


def clock_reasons(nv: Any, handle: Any) -> list[str] | None:
    """The clock-event reasons active now, by name; None where NVML cannot say.  Drivers before 535
    name the call "throttle reasons"."""
    mask = nvml_call(nv, "nvmlDeviceGetCurrentClocksEventReasons", handle)
    if mask is None:
        mask = nvml_call(nv, "nvmlDeviceGetCurrentClocksThrottleReasons", handle)
    return None if mask is None else [name for bit, name in CLOCK_REASONS.items() if mask & bit]
