"""`pybench history [DIR]` and `pybench history DIR --check NEW`: the command line of `history`; the CLI
only registers it (`add_parser`, `run`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable

from rich.table import Table
from rich.text import Text

from pybench.errors import UserError
from pybench.limits import DEFAULT_RESULTS
from pybench.records import results
from pybench.records.statistics import DEFAULT_STAT, STATS, Verdict
from pybench.report.format import fmt_duration, model_title
from pybench.text import terminal_text
from pybench.report.history import CONFIDENCE, Judged, WholeCell, check, latest_against_history, series_of

EXIT_REGRESSION = 1
STYLES = {Verdict.SLOWER: "bold red", Verdict.BROKEN: "bold red", Verdict.FASTER: "green", Verdict.SAME: "dim"}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("history", help="each cell's runs in a results folder; --check: a new run against them")
    p.add_argument("dir", nargs="?", type=Path, default=DEFAULT_RESULTS, help="the history (default: results)")
    p.add_argument("--check", type=Path, metavar="NEW",
                   help="a results file or folder to judge against the history; exit 1 on a slowdown")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="the smallest slowdown that fails a check (default 0.05)")
    p.add_argument("--strict", action="store_true", help="with --check: exit 1 on 'inconclusive' too")
    p.add_argument("--stat", choices=STATS, default=DEFAULT_STAT)
    return p


def _cell(key) -> Text:
    return Text(terminal_text(f"{model_title(key.model)} · {key.device_kind} ({key.label}) · "
                              f"{key.batch_size} @ {key.image_size}px"))


def _interval(low: float | None, high: float | None, fmt: Callable[[float], str]) -> str:
    return f" [{fmt(low)}, {fmt(high)}]" if low is not None and high is not None else ""


def _changes(j: Judged) -> str:
    """The history's change points, then what the latest run changed."""
    out = []
    for c in j.history.changes:
        step = f"step x{c.step:.2f}" if c.step is not None else ""
        out.append(f"before run {c.index + 1}: " + "; ".join(filter(None, [step, *c.differs])))
    if j.differs:
        out.append("latest run: " + "; ".join(j.differs))
    return terminal_text(" | ".join(out))


def _judged_table(title: str, rows: list[Judged], whole: list[WholeCell], differs: bool) -> Table:
    table = Table(title=title)
    for col in ("cell", "framework", "phase", "runs", "typical", "new" if differs else "latest", "ratio", "verdict",
                "differs from the history" if differs else "change points"):
        table.add_column(col, justify="right" if col in ("runs", "ratio") else "left")
    for j in rows:
        t = j.typical
        spread = f" (runs ±{t.spread:.0%})" if t.spread is not None else ""
        new = fmt_duration(sum(r.value for r in j.new) / len(j.new))
        table.add_row(_cell(j.history.key), Text(terminal_text(j.history.title)), j.history.phase,
                      str(len(j.history.baseline)),
                      fmt_duration(t.value) + _interval(t.low, t.high, fmt_duration) + spread, new,
                      f"{j.ratio:.3g}" + _interval(j.low, j.high, lambda v: f"{v:.3g}"),
                      Text(str(j.verdict), style=STYLES.get(j.verdict, "yellow")),
                      Text(terminal_text("; ".join(j.differs)) if differs else _changes(j)))
    for w in whole:
        table.add_row(_cell(w.key), Text(terminal_text(w.title)), "", "", "", "", "",
                      Text(str(w.verdict), style=STYLES.get(w.verdict, "yellow")), "")
    table.caption = Text(f"typical: geometric mean of the runs since the last step, with the {CONFIDENCE:.0%} "
                         "interval of one more run from the spread between those runs; ratio: new / typical "
                         f"with its {CONFIDENCE:.0%} interval (Holm over all {sum(j.p_value is not None for j in rows)} "
                         "phases judged); slower/faster only beyond the threshold", justify="left")
    return table


def _new_docs(path: Path, history: list[results.ResultsDoc]) -> tuple[list[results.ResultsDoc], list[results.ResultsDoc]]:
    """NEW's documents, and the history without them (a nightly job writes NEW into the history's folder)."""
    new = results.collect([path])
    ids = {os.path.realpath(d.path) for d in new}
    return new, [d for d in history if os.path.realpath(d.path) not in ids]


def run(args: argparse.Namespace, print_: Callable[[object], None]) -> int:
    """Print the history (or the check) with `print_`; the exit code: 1 on a confirmed slowdown."""
    if not 0 < args.threshold < 1:  # NaN fails too
        raise UserError(f"--threshold must lie between 0 and 1, got {args.threshold:g}")
    if not args.dir.is_dir():
        raise UserError(f"{args.dir}: not a folder of results files")
    docs = results.collect([args.dir])
    if args.check is None:
        if args.strict:
            raise UserError("--strict applies to --check NEW")
        series = series_of(docs, args.stat, args.threshold)
        if not series:
            raise UserError(f"no cell measured ok in {args.dir}: no history yet")
        judged = latest_against_history(series, args.threshold)
        once = sum(len(s.runs) == 1 for s in series)
        print_(_judged_table(f"history of {len(docs)} runs in {terminal_text(args.dir)}: the latest run of each "
                             "cell and phase against the runs before it", judged, [], differs=False))
        if once:
            print_(Text(f"{once} cell phase(s) measured once: nothing to compare yet"))
        return 0
    new, history = _new_docs(args.check, docs)
    judged, whole = check(history, new, args.threshold, args.stat)
    print_(_judged_table(f"{terminal_text(args.check)} against the history in {terminal_text(args.dir)}",
                         judged, whole, differs=True))
    bad = {Verdict.SLOWER, Verdict.BROKEN} | ({Verdict.INCONCLUSIVE} if args.strict else set())
    return EXIT_REGRESSION if any(v.verdict in bad for v in [*judged, *whole]) else 0
