"""Command line: a thin layer over the protocol, runner, results and reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.progress import TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from pybench import __version__, efficiency, environment, results
from pybench.backends import BACKENDS, availability, resolve_frameworks
from pybench.errors import UserError
from pybench.spec import DTYPES, CellSpec, StopRule, available_cores
from pybench.workloads import ALL, PHASES, resolve_models

console = Console(stderr=True)
out = Console()


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse would add a usage block)
        raise UserError(message)


def positive(cast: type) -> Callable[[str], int | float]:
    """An argparse type: a number of the given type, greater than zero."""

    def parse(text: str) -> int | float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {cast.__name__}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value

    return parse


positive_int, positive_float = positive(int), positive(float)


def add_cell_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=positive_int, help="default: 8 (4 for resnet101/152 on a GPU)")
    p.add_argument("--image-size", type=positive_int, default=224)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="framework intra-op threads (default: cores available to this process)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 on CUDA (off: fp32 means fp32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="bf16/fp16: PyTorch autocast rows, Flux Float16 where it supports it")
    p.add_argument("--channels-last", action="store_true", help="PyTorch rows in channels-last")
    p.add_argument("--compile", action="store_true", help="PyTorch rows through torch.compile")
    p.add_argument("--precision", type=positive_float, default=StopRule.precision,
                   help="stop when the 95%% CI of the median is within +-this fraction (default 0.02)")
    p.add_argument("--min-samples", type=positive_int, default=StopRule.min_samples)
    p.add_argument("--max-samples", type=positive_int, default=StopRule.max_samples)
    p.add_argument("--max-time", type=positive_float, default=StopRule.max_time,
                   help="seconds of sampling per cell before it is flagged noisy (default 60)")
    p.add_argument("--timeout", type=positive_float, default=None,
                   help="kill a cell's worker after this many seconds (default: generous)")
    p.add_argument("--label", help="name for this machine in results and reports")
    p.add_argument("--results", type=Path, default=results.DEFAULT_DIR, help="results folder")
    p.add_argument("--stat", choices=("median", "min"), default="median")
    p.add_argument("--peak-gflops", type=positive_float,
                   help="the device's peak GFLOP/s for %% of peak (default: data sheet or calibration)")


def build_parser() -> Parser:
    parser = Parser(prog="pybench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pybench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = sub.add_parser("run", help="run a matrix of cells (frameworks x models)")
    run.add_argument("--framework", nargs="+", default=["all"], help=f"{'|'.join(BACKENDS)}|all")
    run.add_argument("--model", nargs="+", default=["all"], help="model names or all")
    add_cell_options(run)

    cmp_ = sub.add_parser("compare", help="every framework on the same cells, side by side")
    cmp_.add_argument("--model", nargs="+", required=True)
    add_cell_options(cmp_)

    rep = sub.add_parser("report", help="render the seed's tables from results files")
    rep.add_argument("files", nargs="*", type=Path, default=[results.DEFAULT_DIR])
    rep.add_argument("--readme", type=Path, help="rewrite the tables between the markers in this file")
    rep.add_argument("--stat", choices=("median", "min"), default="median")
    rep.add_argument("--reference", help="also show a published dataset (seed-2018)")
    rep.add_argument("--plot", type=Path, help="also draw grouped bars to this .png/.svg")
    rep.add_argument("--details", action="store_true",
                     help="add images/s, GFLOP/s and %% of peak, peak memory and first-run time")

    diff = sub.add_parser("diff", help="compare two runs with a significance test")
    diff.add_argument("old", type=Path)
    diff.add_argument("new", type=Path)
    diff.add_argument("--threshold", type=positive_float, default=0.05)

    par = sub.add_parser("parity", help="prove PyTorch and Flux compute the same function")
    par.add_argument("--model", required=True)
    par.add_argument("--device", default="cpu")
    par.add_argument("--batch-size", type=positive_int, default=2)
    par.add_argument("--image-size", type=positive_int, default=224)

    sub.add_parser("list", help="workloads and frameworks")
    env = sub.add_parser("env", help="the environment as captured")
    env.add_argument("--label")
    sub.add_parser("setup-julia", help="install Julia and the Flux environment (needs network)")
    return parser


def build_specs(args: argparse.Namespace, frameworks: list[str]) -> list[CellSpec]:
    """Validate everything the user typed before any cell runs or anything is written."""
    models = resolve_models(args.model)
    device = environment.resolve_device(args.device)
    stop = StopRule(
        precision=args.precision,
        min_samples=args.min_samples,
        max_samples=max(args.max_samples, args.min_samples),
        max_time=args.max_time,
    )
    return [
        CellSpec(
            framework=fw,
            model=w.name,
            device=device,
            batch_size=args.batch_size if args.batch_size is not None else w.default_batch(device),
            image_size=args.image_size,
            threads=args.threads or available_cores(),
            tf32=args.tf32,
            seed=args.seed,
            dtype=args.dtype,
            channels_last=args.channels_last and fw == "pytorch",
            compile=args.compile and fw == "pytorch",
            phases=w.phases,
            stop=stop,
        )
        for w in models
        for fw in frameworks
    ]


def execute(args: argparse.Namespace, frameworks: list[str]) -> list[dict]:
    from pybench import runner

    specs = build_specs(args, frameworks)
    results.ensure_writable(args.results)
    env = environment.capture(args.label, specs[0].threads, args.tf32)
    store = results.ResultsFile.create(args.results, env, sys.argv)
    status_of = {fw: availability(fw) for fw in frameworks}
    records: list[dict] = []

    def keep(record: dict) -> None:
        store.add(efficiency.annotate(record, env, args.peak_gflops))
        records.append(record)

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
    ) as progress:
        task = progress.add_task("starting", total=len(specs))
        for spec in specs:
            status = status_of[spec.framework]
            if not status.ok:  # never attempted: a row saying why, flagged so it is not a failure
                keep({**runner.failed_record(spec, f"{spec.framework} unavailable: {status.reason}"),
                      "skipped": True})
                progress.advance(task)
                continue
            progress.update(task, description=f"{spec.framework} {spec.model} on {spec.device}")
            record = runner.run_cell(spec, args.timeout)
            keep(record)
            if record["status"] != "ok":
                progress.console.print(Text.assemble(("failed ", "red"),
                                                     f"{spec.cell_id} {spec.framework}: {record['error']}"))
            progress.advance(task)
    from pybench.report import summary_table

    out.print(summary_table(records, stat=args.stat))
    console.print(f"results saved to {store.path}")
    return records


def cmd_run(args: argparse.Namespace) -> int:
    records = execute(args, resolve_frameworks(args.framework))
    attempted_failed = [r for r in records if r["status"] != "ok" and not r.get("skipped")]
    return 1 if attempted_failed else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from pybench.report import details_table

    out.print(details_table(execute(args, resolve_frameworks(["all"])), stat=args.stat))
    return 0  # a framework that cannot run is a row that says why, not a failed command


def cmd_report(args: argparse.Namespace) -> int:
    from pybench import report

    files = results.collect(args.files)
    reference = None
    if args.reference:
        from pybench.reference import load_reference

        reference = load_reference(args.reference)
    text = report.render_tables(files, stat=args.stat, reference=reference, details=args.details)
    if args.plot:
        from pybench.plot import plot

        plot(files, args.plot, stat=args.stat)
        console.print(f"plot written to {args.plot}")
    if args.readme:
        report.update_readme(args.readme, text)
        console.print(f"tables rewritten in {args.readme}")
    else:
        out.print(text, markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from pybench import diff

    rows = diff.compare_runs(results.collect([args.old]), results.collect([args.new]), args.threshold)
    out.print(diff.diff_table(rows, args.threshold))
    return 1 if diff.has_regression(rows) else 0


def cmd_parity(args: argparse.Namespace) -> int:
    from pybench.parity import run_parity

    device = environment.resolve_device(args.device)
    result = run_parity(args.model, args.image_size, args.batch_size, device)
    table = Table(title=f"parity: {args.model} (eval mode, same weights, same input)")
    for key in result:
        table.add_column(key)
    table.add_row(*(str(v) for v in result.values()))
    out.print(table)
    return 0 if result.get("ok", False) else 1


def cmd_list(args: argparse.Namespace) -> int:
    from pybench.backends.pytorch import count_params

    t = Table(title="workloads")
    for col in ("model", "title", "parameters (torchvision)", "batch (cpu)", "batch (gpu)"):
        t.add_column(col)
    for w in ALL.values():
        t.add_row(w.name, w.title, f"{count_params(w.name):,}", str(w.default_batch("cpu")),
                  str(w.default_batch("cuda:0")))
    out.print(t)
    out.print(frameworks_table())
    out.print(f"phases: {', '.join(PHASES)} (layers: no inference); `--model all` runs the nine "
              "models, `--model layers` the per-layer suite")
    return 0


def frameworks_table() -> Table:
    t = Table(title="frameworks")
    t.add_column("framework")
    t.add_column("available")
    t.add_column("why not / fix")
    for name in BACKENDS:
        a = availability(name)
        t.add_row(name, "yes" if a.ok else "no", Text(a.reason))  # Text: '[flux]' is not markup
    return t


def cmd_env(args: argparse.Namespace) -> int:
    import json

    from pybench.julia_env import describe

    out.print_json(json.dumps({**environment.capture(args.label), "julia": describe()}))
    out.print(frameworks_table())
    return 0


def cmd_setup_julia(args: argparse.Namespace) -> int:
    from pybench.julia_env import setup_julia

    return setup_julia()


COMMANDS = {
    "run": cmd_run,
    "compare": cmd_compare,
    "report": cmd_report,
    "diff": cmd_diff,
    "parity": cmd_parity,
    "list": cmd_list,
    "env": cmd_env,
    "setup-julia": cmd_setup_julia,
}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"pybench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pybench: interrupted; finished cells are saved", file=sys.stderr)
        return 130
