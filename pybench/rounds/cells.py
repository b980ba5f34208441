"""The cells a request makes: every framework's (or variant's) `CellSpec` for every model, validated
before anything runs or is written.  The local executor and a Slurm job both build them here."""

from __future__ import annotations

import sys
from collections import Counter

from pybench.backends import get_framework
from pybench.errors import UserError
from pybench.machine import devices
from pybench.machine.environment import checked_threads
from pybench.protocol.workloads import resolve_models
from pybench.records.spec import CellSpec
from pybench.request.request import Request
from pybench.request.variants import Variant, check_names, preset_variants
from pybench.rounds.interpreter import probe
from pybench.rounds.runner import skip_reason


def build_specs(request: Request, frameworks: list[str], env: dict) -> list[CellSpec]:
    """Every cell of `frameworks` (names; a repeated one is the A/A control) for the request's models."""
    threads = checked_threads(request.cell.threads)
    device = devices.resolve_device(request.cell.device)
    gpu = device if device.kind == "cuda" else None
    options = request.cell
    names, seen = [], Counter()
    for name in frameworks:  # a framework's second row (the A/A control) needs a name of its own
        seen[name] += 1
        names.append(f"{name}#{seen[name]}" if seen[name] > 1 else "")
    return [
        CellSpec(
            framework=fw, model=w.name, device=device.label, gpu=gpu, variant_name=row,
            device_name=device.name if gpu else env["cpu"], label=env["label"],
            batch_size=options.batch_size if options.batch_size is not None else w.default_batch(device.label),
            image_size=options.image_size, threads=threads, tf32=options.tf32, seed=options.seed,
            dtype=options.dtype, channels_last=options.channels_last, compile=options.compile, stop=request.stop,
            malloc=options.malloc,
        )
        for w in resolve_models(list(request.models))
        for fw, row in zip(frameworks, names)
    ]


def variant_specs(request: Request, env: dict) -> list[CellSpec] | None:
    """Every cell of every variant, ordered by variant so the first is the baseline of every ratio;
    None when no variant was asked for.  Interpreters are probed here, before anything runs."""
    if not request.variants and not request.presets:
        return None
    cache: dict[Variant, list[CellSpec]] = {}

    def specs_of(v: Variant) -> list[CellSpec]:
        if v not in cache:
            if v.threads is not None:
                checked_threads(v.threads, f"variant {v.name}: threads")
            cache[v] = [v.apply(s) for s in build_specs(request, [v.framework], env)]
        return cache[v]

    def reason(v: Variant) -> str | None:
        return next(filter(None, map(skip_reason, specs_of(v))), None)

    def refused(line: str) -> None:
        print(f"pybench: {line}", file=sys.stderr)

    base = request.framework_names()[0]  # presets compare settings of one framework
    variants = [v for name in request.presets for v in preset_variants(name, base, reason, refused)]
    variants += request.variants
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


def request_specs(request: Request, env: dict) -> list[CellSpec]:
    """The request's cells: its variants', or else its frameworks'."""
    return variant_specs(request, env) or build_specs(request, request.framework_names(), env)

