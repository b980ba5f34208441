"""Command line: parses, calls the runner, results and reports, prints.

Exit codes a CI can trust: 0 success; 1 an attempted cell failed (run, compare) or a regression
(diff); 2 a user error (one line, no traceback); 3 an internal error (a bug: the traceback is shown).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pybench import __version__
from pybench.backends import FRAMEWORKS, get_framework
from pybench.cli import output
from pybench.cli.options import label_text, number
from pybench.cli.request_args import add_cell_options, request_of
from pybench.cluster import options as cluster_options
from pybench.errors import UserError
from pybench.limits import MAX_BATCH, MAX_IMAGE
from pybench.machine import devices
from pybench.machine.gpu_probe import driver_advice
from pybench.machine.lifetime import Terminated, install_signal_handlers
from pybench.protocol.workloads import get_workload
from pybench.records import results
from pybench.records.record import CellRecord
from pybench.records.statistics import DEFAULT_STAT, STATS
from pybench.report import history_command
from pybench.request.request import Request

# Piped or redirected, output is not cut to 80 columns: a table goes out whole.
output.plug_closed()  # a closed stdout or stderr (`>&-`) becomes /dev/null before the consoles ask
console = Console(stderr=True, width=None if sys.stderr.isatty() else 10_000)
out = Console(width=None if sys.stdout.isatty() else 10_000)

EXIT_FAILED, EXIT_USER, EXIT_INTERNAL = 1, 2, 3


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse would add a usage block)
        raise UserError(message)


def build_parser() -> Parser:
    from pybench.report.command import add_options as report_options

    parser = Parser(prog="pybench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pybench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = sub.add_parser("run", help="run a matrix of cells (frameworks x models)")
    run.add_argument("--framework", nargs="+", default=["all"], help=f"{'|'.join(FRAMEWORKS)}|all")
    run.add_argument("--model", nargs="+", default=["all"], help="model names, all or layers")
    add_cell_options(run)

    cmp_ = sub.add_parser("compare", help="every framework on the same cells, side by side")
    cmp_.add_argument("--model", nargs="+", required=True)
    cmp_.add_argument("--framework", nargs="+", default=["all"],
                      help="the frameworks side by side; one twice (pytorch pytorch) is the A/A control")
    cmp_.add_argument("--no-parity", dest="parity", action="store_false",
                      help="skip the check that each framework's outputs match PyTorch's on the same weights")
    add_cell_options(cmp_)

    rep = sub.add_parser("report", help="render the seed's tables from results files")
    rep.add_argument("files", nargs="*", type=Path)
    rep.add_argument("--readme", type=Path, metavar="PAGE.md",
                     help="rewrite the tables between the markers of this markdown file (docs/results.md here)")
    rep.add_argument("--stat", choices=STATS, default=DEFAULT_STAT)
    rep.add_argument("--reference", help="also show a published dataset (seed-2018)")
    rep.add_argument("--plot", type=Path, help="also draw grouped bars to this .png/.svg")
    rep.add_argument("--details", action="store_true",
                     help="add images/s, GFLOP/s and %% of peak, peak memory, first run and energy")
    report_options(rep)

    diff = sub.add_parser("diff", help="compare two runs with a significance test over rounds")
    diff.add_argument("old", type=Path)
    diff.add_argument("new", type=Path)
    diff.add_argument("--threshold", type=number(float, maximum=1), default=0.05)
    diff.add_argument("--stat", choices=STATS, default=DEFAULT_STAT)
    diff.add_argument("--strict", action="store_true", help="also exit 1 when a change is inconclusive")
    history_command.add_parser(sub)

    par = sub.add_parser("parity", help="prove a framework computes the same function as PyTorch")
    par.add_argument("--framework", default="flux", help="a framework other than pytorch")
    par.add_argument("--model", required=True)
    par.add_argument("--device", default="cpu")
    par.add_argument("--batch-size", type=number(int, maximum=MAX_BATCH), default=2)
    par.add_argument("--image-size", type=number(int, maximum=MAX_IMAGE), default=224)

    sub.add_parser("list", help="workloads and frameworks")
    env = sub.add_parser("env", help="the environment as captured")
    env.add_argument("--label", type=label_text)
    env.add_argument("--check", action="store_true", help="say what would make this machine quieter")
    cluster_options.add_executor_options(env, matrix=False)
    cluster_options.add_collect_parser(sub)
    sub.add_parser("setup-julia", help="install Julia and the Flux environment (needs network)")
    return parser


def _exit_code(records: list[CellRecord]) -> int:
    """1 when any attempted cell failed or was cut short (a skipped one is a row saying why, not a failure)."""
    return EXIT_FAILED if any(r.status == "failed" or r.cut_short for r in records) else 0


def execute(request: Request) -> list[CellRecord] | None:
    """Measure the request here or on Slurm; None when submitted with --detach."""
    if request.executor == "slurm":
        from pybench.cluster.commands import execute as on_slurm

        return on_slurm(request, console)
    from pybench.rounds.execute import execute as locally

    return locally(request, console)


def cmd_run(args: argparse.Namespace) -> int:
    from pybench.report.terminal import summary_table

    request = request_of(args, sys.argv)
    records = execute(request)
    if records is None:
        return 0
    out.print(summary_table(records, stat=request.stat))
    return _exit_code(records)


def _aside(record: CellRecord) -> str:
    n = len(record.set_aside)
    return f" ({n} set aside: other work used the CPUs while they ran)" if n else ""


def cmd_compare(args: argparse.Namespace) -> int:
    from pybench.report.anatomy import anatomy_rows, anatomy_tables
    from pybench.report.glance import compare_answer
    from pybench.rounds.planning import DECIDED_WIDTH, undecided

    request = request_of(args, sys.argv)
    records = execute(request)
    if records is None:
        return 0
    for item in compare_answer(records, out.width, stat=request.stat):
        out.print(item)
    for table in anatomy_tables(anatomy_rows(records)):
        out.print(table)
    for u in undecided(records, request.stat):
        more = (f"; about {u.rounds_needed} counted rounds (+{u.seconds_needed:.0f} s of --budget) would "
                "decide it" if u.seconds_needed else "")
        console.print(Text(f"undecided (not within +-{DECIDED_WIDTH:.0%}): {u.cell.spec.model} "
                           f"{', '.join(u.phases)} after {len(u.cell.rounds)} rounds"
                           f"{_aside(u.cell)}{more}", style="yellow"))
    return _exit_code(records)


def cmd_report(args: argparse.Namespace) -> int:
    from pybench.report import command

    return command.run(args, console.print)


def cmd_diff(args: argparse.Namespace) -> int:
    from pybench.report import diff

    rows = diff.compare_runs(results.collect([args.old]), results.collect([args.new]), args.threshold,
                             stat=args.stat)
    out.print(diff.diff_table(rows, args.threshold))
    return EXIT_FAILED if diff.has_regression(rows, strict=args.strict) else 0


def cmd_parity(args: argparse.Namespace) -> int:
    framework = get_framework(args.framework)
    if not framework.has_parity:
        raise UserError(f"parity compares another framework to {framework.title}; use --framework "
                        + "|".join(n for n, f in FRAMEWORKS.items() if f.has_parity))
    if get_workload(args.model).is_layer:
        raise UserError(f"parity compares whole models; {args.model} is a layer")
    device = devices.resolve_device(args.device)
    result = framework.parity(args.model, args.image_size, args.batch_size, device.label)
    table = Table(title=f"parity: {args.model}, {framework.title} vs PyTorch (eval mode, same weights, same input)")
    for key in result:
        table.add_column(key)
    table.add_row(*(Text(str(v)) for v in result.values()))
    out.print(table)
    return 0 if result.get("ok") else EXIT_FAILED


def cmd_list(args: argparse.Namespace) -> int:
    from pybench.report.terminal import frameworks_table, workloads_table

    out.print(workloads_table())
    out.print(frameworks_table())
    out.print("`--model all` runs the nine models, `--model layers` the per-layer suite")
    for line in driver_advice():
        out.print(Text(line, style="yellow"))
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    import json

    if args.check:
        from pybench.machine.noise import advice, capture_start

        tips = advice(capture_start())
        for tip in tips or ["nothing obvious: this machine looks quiet"]:
            out.print(Text(f"- {tip}"))
        return 0
    from pybench.cluster import commands, node
    from pybench.report.terminal import frameworks_table

    slurm = cluster_options.slurm_options(args)
    slurm.check(args.executor)
    facts = commands.node_env(slurm, args.label, console) if args.executor == "slurm" else node.node_facts(args.label)
    out.print_json(json.dumps(facts, default=str))
    out.print(frameworks_table(facts["frameworks"]))
    for line in driver_advice() if args.executor == "local" else ():
        out.print(Text(line, style="yellow"))
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from pybench.cluster.commands import cmd_collect as collect
    from pybench.report.terminal import summary_table

    records = collect(args, console)
    out.print(summary_table(records, stat=args.stat))
    return _exit_code(records)


def cmd_setup_julia(args: argparse.Namespace) -> int:
    from pybench.backends.flux.julia_env import setup_julia

    return setup_julia()


COMMANDS = {
    "run": cmd_run,
    "compare": cmd_compare,
    "report": cmd_report,
    "diff": cmd_diff,
    "history": lambda args: history_command.run(args, out.print),
    "parity": cmd_parity,
    "list": cmd_list,
    "env": cmd_env,
    "setup-julia": cmd_setup_julia,
    "collect": cmd_collect,
}


def main(argv: list[str] | None = None) -> int:
    install_signal_handlers()
    try:
        with output.guarded():  # stdout's faults: see cli/output.py
            args = build_parser().parse_args(argv)
            return COMMANDS[args.command](args)
    except UserError as exc:
        print(output.error_line(exc), file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("pybench: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:  # like Ctrl-C: the worker is killed, finished cells are kept
        try:
            print(f"pybench: terminated by {exc.name}", file=sys.stderr)
        except OSError:  # SIGHUP: the terminal may be gone
            pass
        return 128 + exc.signum
    except Exception:  # noqa: BLE001 - a bug, not the user's doing: say so, with the traceback
        traceback.print_exc()
        print("pybench: internal error (a bug in pybench; the traceback above helps fix it)", file=sys.stderr)
        return EXIT_INTERNAL
