"""`--variant` and `--variants` on `run` and `compare`: every variant becomes cells of its own, measured
in the same rounds as the others; tables name the variants and take ratios against the first."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from pybench.backends import get_framework, resolve_frameworks
from pybench.backends.base import Framework
from pybench.machine.environment import checked_threads
from pybench.errors import UserError
from pybench.rounds.interpreter import probe
from pybench.records.spec import CellSpec
from pybench.request.variants import PRESETS, SYNTAX, Variant, check_names, parse_variant, preset_variants

BuildSpecs = Callable[[argparse.Namespace, list[Framework], dict], list[CellSpec]]


def add_variant_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", action="append", type=parse_variant, metavar=SYNTAX,
                   help="a named setup measured side by side with the others (repeat it); settings: "
                        "fp32|bf16|fp16, tf32, channels_last, compile[=MODE], threads=N; '@PYTHON' runs "
                        "it under another interpreter, e.g. new=pytorch@/opt/venv/bin/python")
    p.add_argument("--variants", action="append", choices=tuple(PRESETS), metavar="PRESET",
                   help="; ".join(f"{name}: {p.question}" for name, p in PRESETS.items())
                        + " (of the first --framework)")


def check_executor(args: argparse.Namespace) -> None:
    """Variants run through this machine's scheduler; a Slurm job builds its cells from frameworks."""
    if (args.variant or args.variants) and args.executor != "local":
        raise UserError("--variant and --variants run on this machine only, not with --executor "
                        f"{args.executor}")


def variant_specs(args: argparse.Namespace, env: dict, build: BuildSpecs) -> list[CellSpec] | None:
    """Every cell of every variant, ordered by variant so the first is the baseline of every ratio;
    None when no variant was asked for.  Interpreters are probed here, before anything runs."""
    if not args.variant and not args.variants:
        return None
    from pybench.rounds.runner import skip_reason

    chosen = getattr(args, "framework", ["all"])
    if args.variant and chosen != ["all"]:
        raise UserError("--framework and --variant both choose frameworks: name the framework in each variant")
    cache: dict[Variant, list[CellSpec]] = {}

    def specs_of(v: Variant) -> list[CellSpec]:
        if v not in cache:
            if v.threads is not None:
                checked_threads(v.threads, f"variant {v.name}: threads")
            cache[v] = [v.apply(s) for s in build(args, [get_framework(v.framework)], env)]
        return cache[v]

    def reason(v: Variant) -> str | None:
        return next(filter(None, map(skip_reason, specs_of(v))), None)

    def refused(line: str) -> None:
        print(f"pybench: {line}", file=sys.stderr)

    base = resolve_frameworks(chosen)[0].name  # presets compare settings of one framework
    variants = [v for name in args.variants or () for v in preset_variants(name, base, reason, refused)]
    variants += args.variant or []
    check_names(variants)
    probed: set[tuple[str, tuple[str, ...]]] = set()
    for v in variants:
        modules = get_framework(v.framework).modules
        if v.interpreter and (v.interpreter, modules) not in probed:
            probe(v.interpreter, modules, f"variant {v.name}")
            probed.add((v.interpreter, modules))
        why = reason(v)
        if why:
            raise UserError(f"variant {v.name}: {why}")
    return [s for v in variants for s in specs_of(v)]
