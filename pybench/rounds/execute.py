"""What `run` and `compare` do with the options: every cell of the matrix, validated before anything
runs (`build_specs`), how its rounds are scheduled (`schedule_of`; a Slurm node uses both too), and
the local run itself with its progress bar (`execute`)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.progress import TimeRemainingColumn
from rich.text import Text

from pybench.machine import devices
from pybench.machine import environment
from pybench.records import results
from pybench.backends import get_framework
from pybench.backends.base import Framework
from pybench.cluster import options as cluster_options
from pybench.errors import UserError
from pybench.cli.options import CELL_BUDGET_S
from pybench.protocol.group import StopRule
from pybench.records.record import CellRecord
from pybench.records.spec import CellSpec
from pybench.cli.variants import check_executor, variant_specs
from pybench.protocol.workloads import resolve_models

if TYPE_CHECKING:  # imported where used: the matrix pulls in the runner
    from pybench.rounds.matrix import Schedule


def build_specs(args: argparse.Namespace, frameworks: list[Framework], env: dict) -> list[CellSpec]:
    """Every cell of the matrix, validated before any cell runs or anything is written."""
    if args.min_samples > args.max_samples:
        raise UserError(f"--min-samples {args.min_samples} is above --max-samples {args.max_samples}")
    threads = environment.checked_threads(args.threads)
    models = resolve_models(args.model)
    device = devices.resolve_device(args.device)
    gpu = device if device.kind == "cuda" else None
    stop = StopRule(precision=args.precision, min_samples=args.min_samples,
                    max_samples=args.max_samples, max_time=args.max_time, sequential=args.rounds == "auto")
    names, seen = [], Counter()
    for fw in frameworks:  # a framework's second row (the A/A control) needs a name of its own
        seen[fw.name] += 1
        names.append(f"{fw.name}#{seen[fw.name]}" if seen[fw.name] > 1 else "")
    return [
        CellSpec(
            framework=fw.name, model=w.name, device=device.label, gpu=gpu, variant_name=name,
            device_name=device.name if gpu else env["cpu"], label=env["label"],
            batch_size=args.batch_size if args.batch_size is not None else w.default_batch(device.label),
            image_size=args.image_size, threads=threads, tf32=args.tf32, seed=args.seed,
            dtype=args.dtype, channels_last=args.channels_last, compile=args.compile, stop=stop,
        )
        for w in models
        for fw, name in zip(frameworks, names)
    ]


def schedule_of(args: argparse.Namespace, cells: int) -> Schedule:
    """How the rounds of `cells` cells run, from the options (also used on a Slurm node)."""
    from pybench.rounds.matrix import Schedule

    auto = args.rounds == "auto"
    return Schedule(rounds=None if auto else args.rounds, lockstep=args.lockstep, timeout=args.timeout,
                    budget=(args.budget or CELL_BUDGET_S * cells) if auto else None, stat=args.stat)


def execute(args: argparse.Namespace, frameworks: list[Framework], console: Console) -> list[CellRecord] | None:
    """The records of the matrix, with a progress bar on `console`; None when submitted to Slurm with
    --detach."""
    from pybench.rounds import runner

    check_executor(args)
    if args.executor == "slurm":
        from pybench.cluster.commands import execute as on_slurm

        return on_slurm(args, frameworks, console)
    cluster_options.check_local(args)
    env = environment.capture(args.label, args.threads, args.tf32)
    specs = variant_specs(args, env, build_specs) or build_specs(args, frameworks, env)
    for spec in specs:  # what the user must install first: one line, exit 2, nothing run yet
        get_framework(spec.framework).preflight(spec)
    reasons = [runner.skip_reason(s) for s in specs]
    if all(reasons):
        raise UserError(f"nothing could be measured: {'; '.join(dict.fromkeys(reasons))}")
    store = results.ResultsFile.create(args.results, env, sys.argv)
    from pybench.rounds.matrix import AUTO_MIN_ROUNDS, run_matrix

    auto = args.rounds == "auto"
    schedule = schedule_of(args, len({s.key.cell for s, reason in zip(specs, reasons) if not reason}))
    if auto:
        console.print(f"rounds auto: at least {AUTO_MIN_ROUNDS}, then until every ratio is decided; budget "
                      f"{schedule.budget:.0f} s (done by {time.strftime('%H:%M:%S', time.localtime(time.time() + schedule.budget))} "
                      "at the latest, plus the round under way)")
    total = sum(not r for r in reasons) * (AUTO_MIN_ROUNDS if auto else args.rounds)
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
        ) as progress:
            task = progress.add_task("starting", total=total)

            def started(spec: CellSpec, round_no: int) -> None:
                if round_no > (AUTO_MIN_ROUNDS if auto else args.rounds):
                    progress.update(task, total=progress.tasks[0].total + 1)
                progress.update(task, description=f"round {round_no}: {spec.variant_name or spec.framework} "
                                                  f"{spec.model} on {spec.device}")

            def finished(record: CellRecord, round_no: int) -> None:
                if not record.ok and round_no == 1:
                    progress.console.print(Text.assemble(
                        ("failed ", "red"), f"{record.spec.model} {record.spec.framework}: {record.error}"))
                progress.advance(task)

            records = run_matrix(specs, store, schedule, peak_gflops=args.peak_gflops,
                                 events=runner.MatrixEvents(started, finished))
    except BaseException:
        try:
            console.print(f"pybench: {store.kept()}")
        except OSError:  # the terminal is gone (SIGHUP): the file is what matters
            pass
        raise
    console.print(f"results saved to {store.path}")
    share = store.environment.get("time", {}).get("timed_share")
    if share is not None:
        console.print(f"{share:.0%} of the rounds' wall time went to timed iterations")
    from pybench.machine.noise import NoiseAudit, advice

    for tip in advice(NoiseAudit.from_json(store.environment["noise"])):  # only when it matters
        console.print(Text(f"noise: {tip}", style="yellow"))
    return records
