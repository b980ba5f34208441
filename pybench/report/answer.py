"""The answer at a glance, part of the view model: per model and framework pair, the headline ratios
with their verdicts, how many phases were decided, parity, numerics that differ in a way that changes
speed, and the training step after which the faster framework has paid back its first run.

Everything here is computed from `view` rows; the terminal and HTML renderers only style the
sentences (`Answer.sentence`, `Answer.facts`) and never compute a statistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pybench.backends import FRAMEWORKS
from pybench.machine.noise import OTHER_BUSY_LIMIT
from pybench.records.numerics import Parity, speed_differences
from pybench.records.ratios import Ratio
from pybench.records.statistics import Verdict
from pybench.report.format import fixed
from pybench.report.view import Row, with_variant

# Beyond this half-width (relative) an interval says nothing a reader can use: "too noisy".
TOO_NOISY = 1.0
TRAINING = ("step", "total")  # the phase a training-step headline reads, the first measured
PER = {"step": "per training step", "total": "per forward+backward"}
INFERENCE = "inference"


def short_title(row: Row) -> str:
    """'JAX', or 'PyTorch (bf16)': versions are in the tables, the sentence names the framework."""
    fw = FRAMEWORKS.get(row.framework)
    base = fw.title if fw else row.label
    return with_variant(base, row.record.key.variant) if row.record is not None else base


REASONS = {
    "too noisy": "the 95% interval is wider than ±100%: the rounds disagree (more rounds, or a quieter "
                 "machine, would narrow it)",
    "no quiet round": f"other work used over {OTHER_BUSY_LIMIT:.0%} of the CPUs in every round: times come from "
                      "disturbed rounds, and no ratio pairs them",
    "no interval": "one round (or one quiet round pair) says nothing about the next process",
    "not measured": "the rounds that count did not measure this phase",
    "not asked": "this workload has no such phase",
    "no side-by-side round": "the two rows share no round of one run, so no ratio is paired",
}


@dataclass(frozen=True)
class RatioText:
    """A ratio as a reader takes it: '1.78× slower', with the interval in the same direction."""

    factor: float | None  # >= 1 for faster/slower (the slower side's time over the faster's)
    word: str  # faster, slower, tie or undecided
    low: float | None = None
    high: float | None = None
    reason: str = ""  # a key of REASONS: why the interval (or the ratio) is not shown

    @property
    def half_percent(self) -> float | None:
        if self.factor is None or self.low is None or self.high is None:
            return None
        return 100 * max(self.high / self.factor - 1, 1 - self.low / self.factor)

    def text(self, interval: str = "bracket") -> str:
        """'1.78× slower [1.69, 1.88]' (`interval` "bracket"), '1.78× slower ±5%' ("percent") or
        '1.78× slower' ("none"); a reason replaces the interval, or the ratio when there is none."""
        if self.factor is None:
            return self.reason
        head = f"{self.factor:.2f}× {self.word}"
        if self.reason:
            return f"{head}, {self.reason}"
        if interval == "none" or self.low is None or self.high is None:
            return head
        if interval == "percent":
            return f"{head} ±{percent(self.half_percent)}"
        return f"{head} [{self.low:.2f}, {self.high:.2f}]"


def percent(value: float) -> str:
    """A half-width in percent, two significant digits, never scientific: '2.5%', '<0.1%'."""
    return "<0.1%" if value < 0.05 else f"{fixed(value, 2)}%"


def _quiet(row: Row) -> bool:
    return row.record is not None and len(row.record.set_aside) < len(row.record.rounds)


def ratio_text(ratio: Ratio | None, quiet: bool = True) -> RatioText:
    """The reading of one ratio (its numerator against the baseline); `quiet`: whether both sides
    had a quiet round at all (ratios pair quiet rounds only)."""
    if ratio is None:
        return RatioText(None, "", reason="no side-by-side round" if quiet else "no quiet round")
    verdict = ratio.verdict()
    flip = ratio.value < 1  # a faster numerator reads 'x faster' with a factor above 1
    factor = 1 / ratio.value if flip else ratio.value
    low, high = ratio.ci_low, ratio.ci_high
    if low is not None and high is not None and flip:
        low, high = 1 / high, 1 / low
    word = str(verdict)
    if low is None or high is None:
        return RatioText(factor, word, reason="no interval")
    width = ratio.half_width_rel
    return RatioText(factor, word, low, high, reason="too noisy" if width is not None and width > TOO_NOISY else "")


def ratio_reading(row: Row, phase: str) -> RatioText:
    """The reading of a row's ratio to its baseline in one phase."""
    cell = row.cells.get(phase)
    if cell is None:
        return RatioText(None, "", reason="not asked")
    if cell.value is None:
        return RatioText(None, "", reason="not measured")
    return ratio_text(cell.ratio, _quiet(row))


@dataclass(frozen=True)
class TimeText:
    """A phase's time as a table shows it; `reason` (a key of REASONS, or the row's status) says why
    the interval, or the number, is missing."""

    value: float | None
    low: float | None = None
    high: float | None = None
    half_percent: float | None = None
    reason: str = ""


def time_text(row: Row, phase: str) -> TimeText:
    if row.record is not None and not row.record.ok:
        return TimeText(None, reason=row.record.status)
    cell = row.cells.get(phase)
    if cell is None:
        return TimeText(None, reason="not asked")
    if cell.value is None:
        return TimeText(None, reason="failed" if cell.failed else "not measured")
    if not _quiet(row):
        return TimeText(cell.value, reason="no quiet round")
    if cell.ci_low is None or cell.ci_high is None or cell.half_width is None:
        return TimeText(cell.value, reason="no interval")
    half = cell.half_width / cell.value
    return TimeText(cell.value, cell.ci_low, cell.ci_high, 100 * half, "too noisy" if half > TOO_NOISY else "")


@dataclass(frozen=True)
class BreakEven:
    """After how many training steps the faster framework's total time, first run included, is lower."""

    phase: str
    faster: str  # short title of the faster side per step; "" when neither is
    steps: int | None  # None: never, or not known (`text` says which)
    text: str


def break_even(row: Row, base: Row, phase: str) -> BreakEven:
    """From each side's first run (the first iteration, compilation included: step 1) and step time:
    step n costs F + (n - 1) * s, so the faster side per step is ahead from step
    floor((F_fast - F_slow) / (s_slow - s_fast)) + 2 on."""
    ratio = row.cells[phase].ratio
    verdict = ratio.verdict() if ratio is not None else None
    first = {id(r): r.record.first_run(phase) for r in (row, base)}
    step = {id(r): r.cells[phase].value for r in (row, base)}
    if verdict not in (Verdict.FASTER, Verdict.SLOWER):
        ahead = min((row, base), key=lambda r: first[id(r)])
        why = ("the times tie" if verdict == Verdict.TIE else f"the ratio {PER[phase]} is undecided" if ratio
               else "no ratio was paired")
        word = "never" if verdict == Verdict.TIE else "not known"
        return BreakEven(phase, "", None, f"break-even: {word} ({why}; {short_title(ahead)}'s first run is shorter)")
    fast, slow = (row, base) if verdict == Verdict.FASTER else (base, row)
    head = f"{short_title(fast)} is faster {PER[phase]}"
    lead = first[id(fast)] - first[id(slow)]
    if lead <= 0:
        return BreakEven(phase, short_title(fast), 1, f"break-even: from the first step ({head} and its first run "
                                                      "is no longer)")
    saving = step[id(slow)] - step[id(fast)]
    if saving <= 0:  # the estimates (all rounds) can disagree with the paired ratio (quiet pairs only)
        return BreakEven(phase, short_title(fast), None, "break-even: not known (the time estimates do not "
                                                         "agree with the paired ratio on which side is faster)")
    steps = math.floor(lead / saving) + 2
    return BreakEven(phase, short_title(fast), steps,
                     f"break-even after {steps:,} steps ({head}; its first run is {lead:.3g} s longer)")


@dataclass
class Answer:
    model: str
    title: str  # the row's framework: "JAX"
    baseline: str  # "PyTorch"
    training: tuple[str, RatioText] | None  # (phase, reading)
    inference: RatioText | None
    decided: int
    phases: int
    parity: dict[str, Parity] = field(default_factory=dict)  # short title -> its check against PyTorch
    numerics: list[str] = field(default_factory=list)  # the settings that differ in a way that changes speed
    numerics_known: bool = True
    parity_exists: bool = False  # a weight-transfer check exists for one of the two frameworks
    break_even: BreakEven | None = None
    row: Row | None = field(default=None, repr=False)  # the row answered for

    @property
    def disagrees(self) -> bool:
        return any(p.checked and not p.ok for p in self.parity.values())

    def sentence(self) -> str:
        """'resnet50: JAX 1.78× slower than PyTorch per training step [1.69, 1.88]; inference 1.16×
        slower [1.08, 1.25]; 5 of 5 phases decided', flagged when parity or numerics say so."""
        parts = []
        if self.training is not None:
            phase, r = self.training
            what = PER[phase]
            if r.word not in (Verdict.FASTER, Verdict.SLOWER):
                parts.append(f"{self.title} vs {self.baseline} {what}: {r.text()}")
            else:
                tail = r.text().removeprefix(f"{r.factor:.2f}× {r.word}")
                parts.append(f"{self.title} {r.factor:.2f}× {r.word} than {self.baseline} {what}{tail}")
        if self.inference is not None:
            parts.append(("inference " if parts else f"{self.title} vs {self.baseline} inference ")
                         + self.inference.text())
        parts.append(f"{self.decided} of {self.phases} phases decided")
        flags = (["OUTPUTS DISAGREE (parity)"] if self.disagrees else []) + \
            (["settings differ: " + ", ".join(self.numerics)] if self.numerics else [])
        return f"{self.model}: " + "; ".join(parts) + "".join(f"; {f}" for f in flags)

    def facts(self) -> list[str]:
        """The lines under the sentence: parity, numerics, break-even, each with its reason."""
        named = len(self.parity) > 1  # two sides checked against PyTorch: say which is which
        out = [p.text() + (f" ({title} vs PyTorch)" if named else "") for title, p in self.parity.items()] or [
            "parity: not recorded (compare checks it; run and older files do not)" if self.parity_exists
            else "parity: no weight-transfer check for this pair"]
        if not self.numerics_known:
            out.append("numerics: not recorded (a file from before pybench stated them)")
        elif not self.numerics:
            out.append("numerics: the same where it changes speed (dtype, TF32, autotuning, CUDA graphs)")
        else:
            out.append("numerics differ: " + ", ".join(self.numerics))
        out.append(self.break_even.text if self.break_even else
                   "break-even: no training step measured")
        return out


def _phase_of(row: Row, options: tuple[str, ...]) -> str | None:
    return next((p for p in options if p in row.cells and row.cells[p].value is not None), None)


def answer_of(row: Row, base: Row) -> Answer:
    """The answer for one framework row against its cell's baseline row (both measured, ok)."""
    quiet = _quiet(row) and _quiet(base)
    readings = {p: ratio_text(c.ratio, quiet) for p, c in row.cells.items() if c.value is not None}
    train = _phase_of(row, TRAINING)
    ratios = [c.ratio for p, c in row.cells.items() if c.value is not None]
    a, b = row.record.numerics, base.record.numerics
    cpu = row.record.key.device_kind == "cpu"
    answer = Answer(
        model=row.model, title=short_title(row), baseline=short_title(base),
        training=(train, readings[train]) if train else None,
        inference=readings.get(INFERENCE),
        decided=sum(r is not None and r.decided() for r in ratios), phases=len(ratios),
        parity={short_title(r): r.record.parity for r in (row, base) if r.record.parity is not None},
        parity_exists=any(f is not None and f.has_parity for f in map(FRAMEWORKS.get, (row.framework, base.framework))),
        numerics=speed_differences(a, b, cpu) if a and b else [], numerics_known=bool(a and b), row=row,
    )
    if train and train in base.cells and base.cells[train].value is not None:
        answer.break_even = break_even(row, base, train)
    return answer


def answers(rows: list[Row]) -> list[Answer]:
    """One answer per measured row that has a baseline (the first framework of its cell)."""
    bases = {}
    for row in rows:
        if row.record is not None and row.record.ok and row.baseline is None:
            bases.setdefault(row.record.key.cell, row)
    return [answer_of(row, bases[row.record.key.cell]) for row in rows
            if row.baseline is not None and row.record is not None and row.record.key.cell in bases]
