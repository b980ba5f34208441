"""The phase vocabulary: one table (`PHASES`) that gives what a phase is, the loop (group) that
produces it, report columns, plot patterns and FLOP factors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Phase:
    name: str
    group: str  # the loop that produces it
    column: str  # table heading
    flop_factor: float  # multiples of the forward FLOPs
    hatch: str  # plot pattern
    parts: tuple[str, ...] = ()  # derived phase: per-iteration sum of these
    update_flops_per_param: float = 0.0  # optimizer arithmetic per parameter (step only)


# Backward is taken as twice the forward (a gradient for the input and one for the weights), the
# usual convention.  SGD with momentum costs 4 FLOPs per parameter: buf = m*buf + g; p -= lr*buf.
PHASES: dict[str, Phase] = {p.name: p for p in (
    Phase("forward", "train", "Forward Pass", 1.0, ""),
    Phase("backward", "train", "Backward Pass", 2.0, "//"),
    Phase("total", "train", "Total Time", 3.0, "xx", parts=("forward", "backward")),
    Phase("inference", "inference", "Inference", 1.0, ".."),
    Phase("step", "step", "Training Step", 3.0, "--", update_flops_per_param=4.0),
)}
SEED_PHASES = ("forward", "backward", "total", "inference")  # the 2018 tables' four columns
MODEL_PHASES = (*SEED_PHASES, "step")
LAYER_PHASES = ("forward", "backward", "total")  # a lone layer: no eval mode, no loss
# Relative cost of one iteration of each group, for sharing the time budget, in measurement order.
GROUP_WEIGHTS = {"train": 3.0, "step": 3.0, "inference": 1.0}
# Each group's headline phase: what settles last in warm-up and what reports lead with.
HEADLINE = {"train": "total", "step": "step", "inference": "inference"}

# A sampler may add, per measured phase, "<phase>" + GC_SUFFIX: ns of garbage collection inside each
# of those samples (a runtime whose collector runs inside the timed region, as Julia's does).
GC_SUFFIX = ".gc"


def check_phases(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in PHASES]
    if unknown:
        raise ValueError(f"unknown phase {unknown[0]!r}; valid: {', '.join(PHASES)}")


def measured_phases(group: str) -> tuple[str, ...]:
    """What a sampler returns for a group: its phases that are not derived."""
    return tuple(p.name for p in PHASES.values() if p.group == group and not p.parts)


def groups_of(phases: Sequence[str]) -> list[str]:
    """The groups to run for these phases, in measurement order."""
    wanted = {PHASES[p].group for p in phases}
    return [g for g in GROUP_WEIGHTS if g in wanted]
