"""A local run of a request: its cells built and validated before anything runs (`rounds.cells`),
then the matrix in rounds with a progress bar."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.progress import TimeRemainingColumn
from rich.text import Text

from pybench.backends import get_framework
from pybench.errors import UserError
from pybench.text import terminal_text
from pybench.machine import environment
from pybench.machine.noise import NoiseAudit, advice
from pybench.records import results
from pybench.records.record import CellRecord
from pybench.records.spec import CellSpec
from pybench.request.request import Request
from pybench.rounds import parity, runner
from pybench.rounds.cells import request_specs
from pybench.rounds.matrix import AUTO_MIN_ROUNDS, Schedule, run_matrix


def execute(request: Request, console: Console) -> list[CellRecord]:
    """The records of the request's matrix, measured here, with a progress bar on `console`."""
    env = environment.capture(request.cell.label, request.cell.threads, request.cell.tf32)
    specs = request_specs(request, env)
    for spec in specs:  # what the user must install first: one line, exit 2, nothing run yet
        get_framework(spec.framework).preflight(spec)
    reasons = [runner.skip_reason(s) for s in specs]
    if all(reasons):
        raise UserError(f"nothing could be measured: {'; '.join(dict.fromkeys(reasons))}")
    store = results.ResultsFile.create(request.results, env, list(request.argv))
    auto = request.auto
    schedule = Schedule.of(request)
    if auto:
        cells = len({s.key.cell for s, reason in zip(specs, reasons) if not reason})
        budget = schedule.budget * cells
        console.print(f"rounds auto: at least {AUTO_MIN_ROUNDS}, then until every ratio is decided; budget "
                      f"{budget:.0f} s (done by {time.strftime('%H:%M:%S', time.localtime(time.time() + budget))} "
                      "at the latest, plus the round under way)")
    total = sum(not r for r in reasons) * (AUTO_MIN_ROUNDS if auto else request.rounds)
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
        ) as progress:
            task = progress.add_task("starting", total=total)

            def started(spec: CellSpec, round_no: int) -> None:
                if round_no > (AUTO_MIN_ROUNDS if auto else request.rounds):
                    progress.update(task, total=progress.tasks[0].total + 1)
                step = f"round {round_no}" if round_no else "priming the compile cache"
                progress.update(task, description=f"{step}: {spec.variant_name or spec.framework} "
                                                  f"{spec.model} on {spec.device}")

            def finished(record: CellRecord, round_no: int) -> None:
                if not record.ok and round_no == 1:
                    progress.console.print(Text.assemble(
                        ("failed ", "red"), terminal_text(f"{record.spec.model} {record.spec.framework}: {record.error}")))
                progress.advance(task)

            records = run_matrix(specs, store, schedule, peak_gflops=request.peak_gflops,
                                 events=runner.MatrixEvents(started, finished), prime=runner.prime_cell)
    except BaseException:
        try:
            console.print(f"pybench: {store.kept()}")
        except OSError:  # the terminal is gone (SIGHUP): the file is what matters
            pass
        raise
    parity.after_compare(request, records, store, console.print)
    console.print(f"results saved to {store.path}")
    share = store.environment.get("time", {}).get("timed_share")
    if share is not None:
        console.print(f"{share:.0%} of the rounds' wall time went to timed iterations")
    for tip in advice(NoiseAudit.from_json(store.environment["noise"])):  # only when it matters
        console.print(Text(f"noise: {tip}", style="yellow"))
    return records
