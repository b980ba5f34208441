"""The options of `run` and `compare`, each bounded by `pybench.limits`, and the typed `Request` they
make (`request_of`)."""

from __future__ import annotations

import argparse
from typing import Callable

from pybench.cli.options import label_text, number, results_dir
from pybench.machine.malloc import DEFAULT_MALLOC, MALLOC
from pybench.cluster import options as cluster_options
from pybench.limits import (CELL_BUDGET_S, DEFAULT_RESULTS, MAX_BATCH, MAX_BUDGET_S, MAX_GFLOPS, MAX_IMAGE, MAX_ROUNDS,
                            MAX_SAMPLES, MAX_SEED, MAX_THREADS, MAX_TIME, MAX_TIME_S, MAX_TIMEOUT_S, RUN_ROUNDS)
from pybench.protocol.group import StopRule
from pybench.records.spec import DTYPES
from pybench.records.statistics import DEFAULT_STAT, STATS
from pybench.request.request import CellOptions, Request
from pybench.request.variants import PRESETS, SYNTAX, parse_variant


def _int(maximum: int, positive: bool = True) -> Callable[[str], int | float]:
    return number(int, 0, inclusive=not positive, maximum=maximum)


def rounds_arg(text: str) -> int | str:
    return "auto" if text == "auto" else _int(MAX_ROUNDS)(text)


def add_cell_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=_int(MAX_BATCH), help="default: 8 (4 for resnet101/152 on a GPU)")
    p.add_argument("--image-size", type=_int(MAX_IMAGE), default=224)
    p.add_argument("--threads", type=_int(MAX_THREADS), default=None,
                   help="cores and intra-op threads of every framework (default: all available)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 on CUDA (off: fp32 means fp32)")
    p.add_argument("--seed", type=_int(MAX_SEED, positive=False), default=0)
    p.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="bf16/fp16: compute in that dtype with fp32 parameters, where a framework can")
    p.add_argument("--channels-last", action="store_true", help="channels-last rows (PyTorch)")
    p.add_argument("--compile", action="store_true", help="compiled rows (PyTorch: torch.compile)")
    p.add_argument("--malloc", choices=MALLOC, default=DEFAULT_MALLOC,
                   help=f"keep: workers keep the memory they free, so iterations do not fault it in again; "
                        f"system: glibc's own defaults (default: {DEFAULT_MALLOC})")
    p.add_argument("--rounds", type=rounds_arg, default=None,
                   help="auto (compare's default: at least 3, more until every ratio is decided or the "
                        f"budget is spent) or N fresh worker processes per cell (run's default {RUN_ROUNDS})")
    p.add_argument("--budget", type=number(float, maximum=MAX_BUDGET_S), default=None,
                   help=f"seconds per cell for --rounds auto (default: {CELL_BUDGET_S:.0f})")
    p.add_argument("--lockstep", action=argparse.BooleanOptionalAction, default=False,
                   help="run a cell's frameworks side by side in each round, taking turns in blocks of "
                        "about a second (default: back to back, which measured better here)")
    p.add_argument("--precision", type=number(float, maximum=1), default=StopRule.precision,
                   help="stop when the 95%% interval is within +-this fraction (default 0.02)")
    p.add_argument("--min-samples", type=_int(MAX_SAMPLES), default=StopRule.min_samples)
    p.add_argument("--max-samples", type=_int(MAX_SAMPLES), default=StopRule.max_samples)
    p.add_argument("--max-time", type=number(float, maximum=MAX_TIME_S), default=MAX_TIME,
                   help="the most seconds of sampling per round, after the first runs (default "
                        f"{MAX_TIME:g}); samples per round follow the measured noise")
    p.add_argument("--timeout", type=number(float, maximum=MAX_TIMEOUT_S), default=None,
                   help="kill a round's worker after this many seconds (default: generous)")
    p.add_argument("--label", type=label_text, help="name for this machine in results and reports")
    p.add_argument("--results", type=results_dir, default=DEFAULT_RESULTS, help="results folder")
    p.add_argument("--stat", choices=STATS, default=DEFAULT_STAT)
    p.add_argument("--peak-gflops", type=number(float, maximum=MAX_GFLOPS),
                   help="the device's peak GFLOP/s for %% of peak (default: data sheet or calibration)")
    cluster_options.add_executor_options(p)
    p.add_argument("--variant", action="append", type=parse_variant, metavar=SYNTAX,
                   help="a named setup measured side by side with the others (repeat it); settings: "
                        "fp32|bf16|fp16, tf32, channels_last, compile[=MODE], threads=N, malloc=keep|system; '@PYTHON' runs "
                        "it under another interpreter, e.g. new=pytorch@/opt/venv/bin/python")
    p.add_argument("--variants", action="append", choices=tuple(PRESETS), metavar="PRESET",
                   help="; ".join(f"{name}: {p.question}" for name, p in PRESETS.items())
                        + " (of the first --framework)")


def request_of(args: argparse.Namespace, argv: list[str]) -> Request:
    """The typed request of a parsed `run` or `compare` command line: the one thing read after this."""
    rounds = args.rounds or ("auto" if args.command == "compare" else RUN_ROUNDS)
    cell = CellOptions(device=args.device, batch_size=args.batch_size, image_size=args.image_size,
                       threads=args.threads, tf32=args.tf32, seed=args.seed, dtype=args.dtype,
                       channels_last=args.channels_last, compile=args.compile, label=args.label,
                       malloc=args.malloc)
    stop = StopRule(precision=args.precision, min_samples=args.min_samples, max_samples=args.max_samples,
                    max_time=args.max_time)
    return Request(
        command=args.command, models=tuple(args.model), frameworks=tuple(args.framework),
        variants=tuple(args.variant or ()), presets=tuple(args.variants or ()), cell=cell, stop=stop,
        rounds=None if rounds == "auto" else rounds, budget=args.budget or CELL_BUDGET_S,
        lockstep=args.lockstep, timeout=args.timeout, stat=args.stat, results=args.results,
        peak_gflops=args.peak_gflops, executor=args.executor, slurm=cluster_options.slurm_options(args),
        argv=tuple(argv), parity=args.command == "compare" and args.parity,
    )
