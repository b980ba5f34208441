"""Two runs side by side: per cell and phase, the ratio of estimates and whether the change is real.

Rounds are the unit of the test (a fresh process each: the drift between processes is part of the
noise), every phase of every matched cell is one family corrected by Holm, and a change is called
only when it is also larger than the threshold: with many samples a 0.5% drift is "significant" and
still not worth failing a build over.  "same" needs the change's interval within the threshold; too
few rounds, or rounds too noisy for either answer, is "inconclusive" (`diff --strict` fails on it).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from pybench.errors import UserError
from pybench.records.record import CellRecord
from pybench.report.format import fmt_duration, model_title
from pybench.text import terminal_text
from pybench.report.view import with_variant
from pybench.report.selection import latest
from pybench.report.view import MODEL_ORDER, check_stat
from pybench.records.results import ResultsDoc
from pybench.records.spec import CellKey
from pybench.records.statistics import DEFAULT_STAT, Verdict, judge

UNPAIRED = ("Runs made at different times are unpaired: drift of the machine between them cannot be told "
            "from a change. For a decision, measure both setups side by side in the same rounds: "
            "pybench compare --variant old=... --variant new=... (e.g. new=pytorch@/path/to/other/venv/bin/python)")
REGRESSIONS = (Verdict.SLOWER, Verdict.BROKEN)
STYLES = {Verdict.SLOWER: "red", Verdict.BROKEN: "red", Verdict.FASTER: "green", Verdict.FIXED: "green",
          Verdict.SAME: "dim"}


@dataclass(frozen=True)
class DiffRow:
    key: CellKey
    framework: str  # "PyTorch 2.14.1 (bf16)", or "old -> new" when the version changed
    phase: str | None  # None for a whole cell (only in one run, failed)
    old: float | None  # estimate, seconds
    new: float | None
    ratio: float | None  # new / old
    p_value: float | None  # before Holm's correction
    verdict: Verdict


def _latest(docs: list[ResultsDoc]) -> dict[CellKey, CellRecord]:
    return {e.record.key: e.record for e in latest(docs)}


def _whole(a: CellRecord | None, b: CellRecord | None) -> Verdict:
    if a is None:
        return Verdict.ONLY_IN_NEW
    if b is None:
        return Verdict.ONLY_IN_OLD
    if a.ok == b.ok:
        return Verdict.FAILED
    return Verdict.BROKEN if a.ok else Verdict.FIXED


def _refuse_nothing_in_common(before: dict, after: dict, old: list[ResultsDoc], new: list[ResultsDoc]) -> None:
    """A diff that compares nothing must not pass a build: empty files, or no cell identity on both
    sides, is a UserError saying which."""
    for side, cells, docs in (("OLD", before, old), ("NEW", after, new)):
        if not cells:
            raise UserError(f"no cell in {side} ({', '.join(str(d.path) for d in docs)}): nothing was measured there")
    if not before.keys() & after.keys():
        raise UserError(f"no cell in common: OLD holds {len(before)} cell(s), NEW {len(after)}, and none has the "
                        "same identity (model, framework, device, machine label, batch, image size, dtype, threads "
                        "and settings)")


def compare_runs(old: list[ResultsDoc], new: list[ResultsDoc], threshold: float = 0.05,
                 alpha: float = 0.05, stat: str = DEFAULT_STAT) -> list[DiffRow]:
    """Match cells of two sets of results files by their full identity and judge every phase."""
    check_stat(stat)
    before, after = _latest(old), _latest(new)
    _refuse_nothing_in_common(before, after, old, new)
    keys = sorted(before.keys() | after.keys(), key=lambda k: (MODEL_ORDER.get(k.model, len(MODEL_ORDER)), k))
    rows: list[DiffRow] = []
    tested: list[tuple[int, CellRecord, CellRecord, str]] = []  # (row index, old, new, phase)
    for key in keys:
        a, b = before.get(key), after.get(key)
        labels = list(dict.fromkeys(with_variant(r.title, key.variant) for r in (a, b) if r))
        framework = " -> ".join(labels)
        if a is None or b is None or not a.ok or not b.ok:
            rows.append(DiffRow(key, framework, None, None, None, None, None, _whole(a, b)))
            continue
        for phase in dict.fromkeys([*a.spec.phases, *b.spec.phases]):
            in_a, in_b = phase in a.phase_names, phase in b.phase_names
            if not (in_a and in_b):
                rows.append(DiffRow(key, framework, phase, None, None, None, None,
                                    Verdict.ONLY_IN_NEW if in_b else Verdict.ONLY_IN_OLD))
                continue
            tested.append((len(rows), a, b, phase))
            rows.append(DiffRow(key, framework, phase, a.estimate(phase, stat).value,
                                b.estimate(phase, stat).value, None, None, Verdict.INCONCLUSIVE))  # until judged
    changes = judge([(a.samples(p), b.samples(p)) for _, a, b, p in tested], threshold, alpha, stat)
    for (i, *_), change in zip(tested, changes):
        r = rows[i]
        rows[i] = DiffRow(r.key, r.framework, r.phase, r.old, r.new, change.ratio, change.p_value,
                          change.verdict)
    return rows


def has_regression(rows: list[DiffRow], strict: bool = False) -> bool:
    """A slowdown or a broken cell; with `strict`, also a change the rounds could not decide."""
    return any(r.verdict in REGRESSIONS or (strict and r.verdict == Verdict.INCONCLUSIVE) for r in rows)


def diff_table(rows: list[DiffRow], threshold: float = 0.05, alpha: float = 0.05) -> Table:
    table = Table(title=f"new vs old: slower/faster only when significant over rounds (Holm, alpha "
                        f"{alpha:g}, over all {sum(r.p_value is not None for r in rows)} tests) and the "
                        f"estimates differ by more than {threshold:.0%}")
    for col in ("model", "framework", "device", "batch", "phase", "old", "new", "new/old", "p", "verdict"):
        table.add_column(col, justify="left" if col in ("model", "framework", "phase", "verdict") else "right")
    for r in rows:
        k = r.key
        table.add_row(
            # Names and labels come from the files: plain text, no markup, no escape sequence.
            Text(terminal_text(model_title(k.model))), Text(terminal_text(r.framework)),
            Text(terminal_text(f"{k.device_kind} ({k.label})")),
            f"{k.batch_size} @ {k.image_size}px", Text(terminal_text(r.phase or "")),
            fmt_duration(r.old) if r.old is not None else "",
            fmt_duration(r.new) if r.new is not None else "",
            f"{r.ratio:.3f}" if r.ratio is not None else "",
            f"{r.p_value:.2g}" if r.p_value is not None else "",
            Text(str(r.verdict), style=STYLES.get(r.verdict, "yellow")),
        )
    table.caption = Text(UNPAIRED, justify="left")
    return table
