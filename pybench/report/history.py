"""History per machine: every results folder is a history of each cell identity, and a new run is
judged against the between-run spread that history itself measured.

A series is one `CellKey` and phase: its runs (one per results file) ordered by time, each with its
round values, its estimate and the versions and environment it ran in.  A run's estimate already
averages its rounds, so what a new run must be compared with is how much run estimates of identical
code move from one run to the next: on a shared VM, 5-13%, far more than one run's rounds say.

The typical value is the geometric mean of the baseline runs (those after the last step) and its
interval a Student-t *prediction* interval for one new run on the log scale,
mean +- t(df) * s * sqrt(1/n + 1/k) for k new runs, as conbench's lookback z-score but with the
t quantile its few runs call for.  s is the baseline's between-run standard deviation (df n - 1),
never taken below what the runs' own rounds say (the pooled within-run variance over the rounds per
run): four runs that happen to agree must not make the next run's ordinary drift an alarm.  Where
the rounds' variance governs, so do their degrees of freedom (every round of every run measured it),
which a history of few runs with several rounds each needs to find anything.  The new run's rounds
widen it further when they disagree more than the history's did.

A change is called as `diff` calls one (`statistics.change_verdict`): significant after Holm over
every phase of every cell compared, at CONFIDENCE, and beyond the threshold; "same" only when the
interval lies within the threshold.  With CONFIDENCE at 98% (two-sided), a false "slower" needs a run
beyond the one-sided 1% tail of the history's own spread, family-wise: a nightly check of identical
code fails about once in a hundred nights at most.  False alarms are what users of such checks on
shared machines complain of, so the level leans that way; a higher one costs much power, as t(4)
already makes the interval of a five-run history wide (the trade-off, simulated: docs/history.md).

Change points: where the versions or environment of a run differ from the run before it (said, never
assumed to move the time), and steps: asv-like binary segmentation of the run estimates, a split
kept when Welch's test between the two sides holds after Bonferroni over the candidate splits and
the step exceeds the threshold.  A step starts a new baseline; an environment change alone does not,
so a new driver is judged against the runs before it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from pybench.records.record import CellRecord
from pybench.records.results import ResultsDoc
from pybench.records.round import VARYING_ENV
from pybench.records.spec import CellKey
from pybench.errors import UserError
from pybench.protocol.phases import PHASES
from pybench.records.statistics import DEFAULT_STAT, Verdict, change_verdict, holm, round_test, round_values
from pybench.report.selection import _created as created_at  # the one reading of a file's date
from pybench.report.view import check_stat

CONFIDENCE = 0.98  # of the check's intervals and its family-wise test (see the module docstring)
MIN_SIDE = 2  # runs on each side of a step: one run alone is an outlier, not a level
MIN_HISTORY = 3  # runs a spread is measured from: with two, t(1) makes any interval span decades
FACT_TEXT = 120  # characters of a version or environment value kept for display


@dataclass(frozen=True)
class Run:
    """One results file's measurement of one phase of a cell."""

    file: str  # the results file's name
    created: datetime
    value: float  # seconds: the run's estimate over its counted rounds
    ci_low: float | None  # the run's own interval (between its rounds)
    ci_high: float | None
    rounds: tuple[float, ...]  # each counted round's number (median or min)
    facts: dict[str, str] = field(default_factory=dict)  # versions and environment, flattened

    @property
    def log(self) -> float:
        return math.log(self.value)


@dataclass(frozen=True)
class ChangePoint:
    index: int  # the first run after the change
    differs: tuple[str, ...]  # "torch: 2.14.1 -> 2.15.0"; empty for a step alone
    step: float | None = None  # mean after / mean before, when a step was detected here


@dataclass(frozen=True)
class Series:
    key: CellKey
    phase: str
    title: str  # the framework as the newest run titles it, with the row's variant
    runs: tuple[Run, ...]
    changes: tuple[ChangePoint, ...] = ()

    @property
    def baseline(self) -> tuple[Run, ...]:
        """The runs since the last detected step."""
        start = max((c.index for c in self.changes if c.step is not None), default=0)
        return self.runs[start:]


@dataclass(frozen=True)
class Typical:
    value: float  # seconds: geometric mean of the baseline runs
    low: float | None  # CONFIDENCE prediction interval for one new run; None below MIN_HISTORY runs
    high: float | None
    n_runs: int
    spread: float | None  # the spread of one run about it, relative: between-run, floored by the rounds


@dataclass(frozen=True)
class Judged:
    """New run(s) of a series against its history."""

    history: Series
    new: tuple[Run, ...]
    typical: Typical
    ratio: float  # new / typical
    low: float | None  # CONFIDENCE interval of the ratio
    high: float | None
    p_value: float | None  # before Holm; None: the history cannot measure its spread
    verdict: Verdict
    differs: tuple[str, ...]  # versions or environment of the new run(s) unlike the baseline's


def _shown(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:FACT_TEXT]


def facts(doc: ResultsDoc, record: CellRecord) -> dict[str, str]:
    """What a run's time may depend on beyond its identity: the framework's build, package versions,
    Python, kernel, GPU driver, pybench; values are file data, shown escaped by every formatter."""
    env = doc.environment
    out = {"framework": record.title}
    out.update({k: _shown(env[k]) for k in ("python", "os", "pybench") if env.get(k) is not None})
    if env.get("git_commit") is not None:
        out["git_commit"] = _shown(env["git_commit"])[:12]  # as git abbreviates it: still one commit
    packages = env.get("packages")
    if isinstance(packages, dict):
        out.update({f"package {k}": _shown(v) for k, v in packages.items() if v is not None})
    gpus = env.get("gpus")
    drivers = {_shown(g.get("driver")) for g in gpus if isinstance(g, dict)} if isinstance(gpus, list) else set()
    if drivers:
        out["driver"] = ", ".join(sorted(drivers))
    out.update({f"{record.spec.framework} {k}": _shown(v) for k, v in record.framework_env.items()
                if k not in VARYING_ENV})
    return out


def differences(before: dict[str, str], after: dict[str, str]) -> tuple[str, ...]:
    return tuple(f"{k}: {before.get(k, '(none)')} -> {after.get(k, '(none)')}"
                 for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k))


def series_of(docs: list[ResultsDoc], stat: str = DEFAULT_STAT, threshold: float = 0.05) -> list[Series]:
    """Every cell and phase measured ok, its runs oldest first (a file's last record of a key is its
    run), with change points."""
    check_stat(stat)
    runs: dict[tuple[CellKey, str], list[Run]] = {}
    titles: dict[CellKey, str] = {}
    for doc in sorted(docs, key=lambda d: (created_at(d), str(d.path))):
        ok = {r.key: r for r in doc.records if r.ok}
        for key, record in ok.items():
            titles[key] = record.title + (f" ({key.variant})" if key.variant else "")
            for phase in record.phase_names:
                e = record.estimate(phase, stat)
                runs.setdefault((key, phase), []).append(Run(
                    doc.path.name, created_at(doc), e.value, e.ci_low, e.ci_high,
                    tuple(round_values(record.samples(phase), stat)), facts(doc, record)))
    out = []
    order = list(PHASES)
    for (key, phase), rs in sorted(runs.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]))):
        out.append(Series(key, phase, titles[key], tuple(rs), change_points(rs, threshold)))
    return out


def steps(logs: list[float], threshold: float, alpha: float = 1 - CONFIDENCE) -> list[int]:
    """Indices where the level of the log run estimates moves: binary segmentation, each split the one
    with the smallest Welch p-value, kept when it holds after Bonferroni over the candidate splits
    and the step exceeds the threshold."""
    x = np.asarray(logs, dtype=float)

    def _welch(a: np.ndarray, b: np.ndarray) -> float:  # each run estimate is one "round" of one value
        p = round_test([[v] for v in np.exp(a)], [[v] for v in np.exp(b)])
        return 1.0 if p is None else p

    def split(lo: int, hi: int) -> list[int]:
        candidates = range(lo + MIN_SIDE, hi - MIN_SIDE + 1)
        if not candidates:
            return []
        p, k = min((_welch(x[lo:k], x[k:hi]), k) for k in candidates)
        if p * len(candidates) >= alpha or abs(math.exp(x[k:hi].mean() - x[lo:k].mean()) - 1) <= threshold:
            return []
        return [*split(lo, k), k, *split(k, hi)]

    return split(0, len(x))


def change_points(runs: list[Run], threshold: float) -> tuple[ChangePoint, ...]:
    found = set(steps([r.log for r in runs], threshold))
    out = []
    for i in range(1, len(runs)):
        differs = differences(runs[i - 1].facts, runs[i].facts)
        if not differs and i not in found:
            continue
        step = None
        if i in found:
            before = [r.log for r in runs[max((j for j in found if j < i), default=0):i]]
            after = [r.log for r in runs[i:min((j for j in found if j > i), default=len(runs))]]
            step = math.exp(np.mean(after) - np.mean(before))
        out.append(ChangePoint(i, differs, step))
    return tuple(out)


def _within_var(runs: tuple[Run, ...]) -> tuple[float, int] | None:
    """The variance a run estimate has from its own rounds alone, with its degrees of freedom: the
    pooled variance of log round values within runs over the mean number of rounds; None without
    two rounds in some run."""
    groups = [np.log(r.rounds) for r in runs if len(r.rounds) >= 2]
    df = sum(len(g) - 1 for g in groups)
    if not df:
        return None
    pooled = sum(((g - g.mean()) ** 2).sum() for g in groups) / df
    return float(pooled / np.mean([len(g) for g in groups])), df


def _baseline_scale(runs: tuple[Run, ...]) -> tuple[float, int] | None:
    """The standard deviation of one run's log estimate and its degrees of freedom: the between-run
    spread (n - 1), or where the runs' own rounds say more, theirs (their pooled degrees of freedom:
    runs that agree within what their rounds explain are measured by every round, not by n runs).
    None with fewer than MIN_HISTORY runs."""
    if len(runs) < MIN_HISTORY:
        return None
    between = float(np.var([r.log for r in runs], ddof=1))
    within = _within_var(runs)
    if within is not None and within[0] > between:
        return math.sqrt(within[0]), within[1]
    return math.sqrt(between), len(runs) - 1


def typical(runs: tuple[Run, ...], confidence: float = CONFIDENCE) -> Typical:
    from scipy import stats as st

    m = float(np.mean([r.log for r in runs]))
    scale = _baseline_scale(runs)
    if scale is None:
        return Typical(math.exp(m), None, None, len(runs), None)
    s, df = scale
    half = float(st.t.ppf((1 + confidence) / 2, df)) * s * math.sqrt(1 + 1 / len(runs))
    return Typical(math.exp(m), math.exp(m - half), math.exp(m + half), len(runs), math.exp(s) - 1)


def _test(base: tuple[Run, ...], new: tuple[Run, ...], confidence: float
          ) -> tuple[float, float | None, float | None, float | None]:
    """(ratio, low, high, p) of the new runs' geometric mean over the baseline's."""
    from scipy import stats as st

    d = float(np.mean([r.log for r in new]) - np.mean([r.log for r in base]))
    scale = _baseline_scale(base)
    if scale is None:
        return math.exp(d), None, None, None
    s, df = scale
    own = _within_var(new)  # the new runs' rounds may disagree more than the history's
    se = math.sqrt(s * s / len(base) + max(s * s, own[0] if own else 0.0) / len(new))
    if se == 0:
        return math.exp(d), math.exp(d), math.exp(d), 1.0 if d == 0 else 0.0
    half = float(st.t.ppf((1 + confidence) / 2, df)) * se
    return math.exp(d), math.exp(d - half), math.exp(d + half), float(2 * st.t.sf(abs(d) / se, df))


def judge_runs(pairs: list[tuple[Series, tuple[Run, ...]]], threshold: float,
               confidence: float = CONFIDENCE) -> list[Judged]:
    """Each (history, new runs) judged against the history's baseline; one Holm family for all."""
    tests = [_test(h.baseline, new, confidence) for h, new in pairs]
    rejected = holm([t[3] for t in tests], 1 - confidence)
    out = []
    for (h, new), (ratio, lo, hi, p), rej in zip(pairs, tests, rejected):
        verdict = Verdict.INCONCLUSIVE if p is None else change_verdict(ratio, rej, lo, hi, threshold)
        out.append(Judged(h, new, typical(h.baseline, confidence), ratio, lo, hi, p, verdict,
                          differences(h.baseline[-1].facts, new[-1].facts)))
    return out


def latest_against_history(series: list[Series], threshold: float) -> list[Judged]:
    """The newest run of every series with earlier runs, judged against those earlier runs."""
    pairs = []
    for s in series:
        if len(s.runs) < 2:
            continue
        earlier = s.runs[:-1]
        pairs.append((Series(s.key, s.phase, s.title, earlier, change_points(list(earlier), threshold)), s.runs[-1:]))
    return judge_runs(pairs, threshold)


@dataclass(frozen=True)
class WholeCell:
    """A cell of the new run that no phase of could be judged."""

    key: CellKey
    title: str
    verdict: Verdict  # BROKEN: ok in the history, failed now; ONLY_IN_NEW: no history of it


def _cell_text(key: CellKey) -> str:
    return (f"{key.model} {key.framework} on {key.device_kind} ({key.device_name}, label {key.label}), "
            f"batch {key.batch_size} @ {key.image_size}px, {key.dtype}, {key.threads} threads")


def check(history: list[ResultsDoc], new: list[ResultsDoc], threshold: float = 0.05, stat: str = DEFAULT_STAT
          ) -> tuple[list[Judged], list[WholeCell]]:
    """Every phase of every cell of `new` judged against the history of the same identity.  Nothing in
    common is a UserError that says what each side holds."""
    past = {(s.key, s.phase): s for s in series_of(history, stat, threshold)}
    fresh = series_of(new, stat, threshold)
    known = {key for key, _ in past}
    pairs = [(past[(s.key, s.phase)], s.runs) for s in fresh if (s.key, s.phase) in past]
    whole = {r.key: WholeCell(r.key, r.title, Verdict.BROKEN) for d in new for r in d.records
             if not r.ok and r.key in known}
    whole.update({s.key: WholeCell(s.key, s.title, Verdict.ONLY_IN_NEW) for s in fresh if s.key not in known})
    if not pairs and not any(w.verdict == Verdict.BROKEN for w in whole.values()):
        theirs = sorted({r.key for d in new for r in d.records})
        if not theirs:
            raise UserError("nothing to check: the new results hold no cell")
        if not known:
            raise UserError("nothing to check against: the history holds no cell measured ok")
        raise UserError(f"nothing in common: no cell of the new results has a history (the new results "
                        f"measured {_cell_text(theirs[0])}{' and more' * (len(theirs) > 1)}; the history "
                        f"holds {len(known)} cell(s), e.g. {_cell_text(min(known))})")
    return judge_runs(pairs, threshold), sorted(whole.values(), key=lambda w: w.key)
