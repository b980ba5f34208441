"""`pybench report`: which results to read, then one formatter per output (--format, --html, --plot,
--readme); the CLI only hooks it in."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pybench.limits import DEFAULT_RESULTS
from pybench.records import results
from pybench.errors import UserError
from pybench.records.statistics import STATS
from pybench.text import terminal_text

FORMATS = ("md", "csv", "jsonl", "html")


def add_options(rep: argparse.ArgumentParser) -> None:
    rep.add_argument("--format", choices=FORMATS, default="md",
                     help="md (the seed's tables, default), csv or jsonl (one row per cell, phase and "
                          "statistic), html (one self-contained page)")
    rep.add_argument("--raw", action="store_true",
                     help="with csv/jsonl: every timed value of every round instead (a long table)")
    rep.add_argument("--output", "-o", type=Path, help="write to this file (default: standard output)")
    rep.add_argument("--html", type=Path, metavar="FILE", help="also write the HTML report to FILE")


def _docs(args: argparse.Namespace, reference: list[dict] | None) -> list[results.ResultsDoc]:
    files = args.files or [DEFAULT_RESULTS]
    if reference is not None and not args.files and not DEFAULT_RESULTS.exists():
        return []  # the published figures alone
    docs = results.collect(files)
    empty = [str(d.path) for d in docs if not d.records]
    if empty and len(empty) == len(docs):
        raise UserError(f"no records in {', '.join(empty)}: nothing was measured there yet")
    return docs


def html_page(docs: list[results.ResultsDoc], stat: str, reference: list[dict] | None) -> str:
    from pybench.report.history import series_of
    from pybench.report.html import render_html, vega_bundle
    from pybench.report.selection import measured_sections, reference_sections, run_infos
    from pybench.report.trend import trend_section

    return render_html(measured_sections(docs, stat), reference_sections(reference or []),
                       trend_section(series_of(docs, stat)), run_infos(docs), stat, vega_bundle())


def export_text(docs: list[results.ResultsDoc], fmt: str, raw: bool, stat: str) -> str:
    from pybench.report import export
    from pybench.report.selection import measured_sections

    if raw:
        rows, columns = export.raw_rows(measured_sections(docs, stat)), export.RAW_COLUMNS
    else:
        rows, columns = export.stat_rows({s: measured_sections(docs, s) for s in STATS}), export.STAT_COLUMNS
    return (export.to_csv if fmt == "csv" else export.to_jsonl)(rows, columns)


def run(args: argparse.Namespace, say) -> int:
    """`say` prints a status line (the CLI's console); the report itself goes to stdout or --output."""
    from pybench.report.markdown import render_tables, update_readme

    if args.raw and args.format not in ("csv", "jsonl"):
        raise UserError("--raw is a long table: use it with --format csv or jsonl")
    if args.readme and (args.format != "md" or args.output):
        raise UserError("--readme takes the markdown tables: drop --format and --output")
    reference = None
    if args.reference:
        from pybench.report.reference import load_reference

        reference = load_reference(args.reference)
    docs = _docs(args, reference)
    _refuse_overwrite(docs, args)
    if args.format == "md":
        text = render_tables(docs, stat=args.stat, reference=reference, details=args.details)
    elif args.format == "html":
        text = html_page(docs, args.stat, reference)
    else:
        text = export_text(docs, args.format, args.raw, args.stat)
    if args.html:
        results.atomic_write(args.html, text if args.format == "html" else html_page(docs, args.stat, reference))
        say(f"HTML report written to {args.html}")
    if args.plot:
        from pybench.report.plot import plot

        plot(docs, args.plot, stat=args.stat)
        say(f"plot written to {args.plot}")
    if args.readme:
        update_readme(args.readme, text)
        say(f"tables rewritten in {args.readme}")
    elif args.output:
        results.atomic_write(args.output, text)
        say(f"report written to {args.output}")
    elif not args.html or args.format != "md":
        sys.stdout.write(terminal_text(text, lines=True))
    return 0


def _file_id(path: Path) -> tuple:
    """The file a path names (links followed, hard links too), or the path itself if none is there."""
    try:
        st = os.stat(path)
    except OSError:
        return (os.path.abspath(path),)
    return (st.st_dev, st.st_ino)


def _refuse_overwrite(docs: list[results.ResultsDoc], args: argparse.Namespace) -> None:
    """A report never replaces what it reads: an output naming an input file is a UserError, found
    before anything is written."""
    inputs = {_file_id(d.path) for d in docs}
    outputs = [(name, path) for name, path in (("--output", args.output), ("--html", args.html),
                                                ("--plot", args.plot), ("--readme", args.readme)) if path]
    seen: dict[tuple, str] = {}
    for name, path in outputs:
        if _file_id(path) in inputs:
            raise UserError(f"{name} {path} is a results file this report reads: write the report elsewhere")
        if _file_id(path) in seen:
            raise UserError(f"{seen[_file_id(path)]} and {name} name the same file: give each its own")
        seen[_file_id(path)] = name
