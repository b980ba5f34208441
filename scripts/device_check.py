"""The assertions of scripts/device_check.sh, one step each.  Exit 1 on a failure.

    identity DEVICE FILE   torch, JAX and NVML agree on the GPU (on cpu: both frameworks run there);
                           writes what each reported to FILE
    jax-probe UUID         (internal) JAX's view from a process pinned to that GPU, as JSON
    clocks DIR DEVICE      every group's headline phase warmed up as the protocol promises (on a GPU
                           for GPU_WARMUP_MIN_TIME seconds); on a GPU the SM clock was read at the
                           start and end of every group's sampling, and had settled; each round's
                           anatomy (Round.anatomy) is printed where the record has its timeline
    compare DIR DEVICE     PyTorch's and JAX's rows ran, on that device (Flux may be skipped, saying why)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpu_check import cell_name, check, fail, ran, records  # noqa: E402 - beside this script
from pybench.backends.jax import CUDA_PLUGIN_FIX  # noqa: E402
from pybench.machine.devices import Device, gpu_identity, resolve_device  # noqa: E402
from pybench.machine.gpu_probe import clock_state, clock_warnings, compute_pids, driver_advice  # noqa: E402
from pybench.protocol.group import (CPU_WARMUP_MAX, CPU_WARMUP_MIN, GPU_WARMUP_MIN,  # noqa: E402
                                    GPU_WARMUP_MIN_TIME)
from pybench.protocol.phases import HEADLINE, groups_of  # noqa: E402
from pybench.records.record import CellRecord  # noqa: E402

def jax_probe(uuid: str) -> None:
    """JAX's backend and devices, and NVML's compute processes on the GPU while JAX holds it."""
    import jax
    import jax.numpy as jnp

    (jnp.ones((256, 256)) @ jnp.ones((256, 256))).block_until_ready()
    print(json.dumps({"backend": jax.default_backend(), "kinds": [d.device_kind for d in jax.devices()],
                      "pid": os.getpid(), "nvml_pids": compute_pids(uuid)}))


def _jax_view(device: Device) -> dict:
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", **device.visible_env,
           "JAX_PLATFORMS": "cuda" if device.kind == "cuda" else "cpu"}
    out = subprocess.run([sys.executable, __file__, "jax-probe", str(device.uuid)], env=env,
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        tail = next((ln for ln in reversed(out.stderr.splitlines()) if ln.strip()), "")
        fail(f"JAX starts on {device.label}: {tail}" + (f" (a missing CUDA plugin: {CUDA_PLUGIN_FIX})"
                                                         if device.kind == "cuda" else ""))
    return json.loads(out.stdout.strip().splitlines()[-1])


def identity(device_arg: str, path: str) -> None:
    import torch

    for line in driver_advice():
        print("note  " + line, flush=True)
    device = resolve_device(device_arg)
    check(device.kind == ("cpu" if device_arg == "cpu" else "cuda"), f"{device_arg} resolves to {device.label}")
    view = {"device": device.to_json(), "torch": torch.__version__, "jax": _jax_view(device)}
    if device.kind == "cpu":
        check(torch.zeros(1).device.type == "cpu", "torch computes on the CPU")
        check(view["jax"]["backend"] == "cpu", f"JAX computes on {view['jax']['backend']}")
    else:
        check(torch.cuda.device_count() > 0, f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees a GPU")
        props = torch.cuda.get_device_properties(device.index)
        seen = gpu_identity(props.name, str(props.uuid))
        view["torch_gpu"] = seen
        check(device.same_gpu(seen), f"torch's cuda:{device.index} is NVML's {device.uuid} ({seen['uuid']})")
        jax_view = view["jax"]
        check(jax_view["backend"] in ("gpu", "cuda"),
              f"JAX runs on the GPU (backend {jax_view['backend']!r}; without its plugin: {CUDA_PLUGIN_FIX})")
        check(jax_view["kinds"] == [device.name] or device.is_mig,
              f"JAX, pinned by UUID, sees one GPU named as NVML names it: {jax_view['kinds']} vs {device.name!r}")
        pids = jax_view["nvml_pids"] or []
        if jax_view["pid"] in pids:
            check(True, f"NVML lists JAX's process {jax_view['pid']} on {device.uuid}")
        else:
            print(f"note  NVML lists {pids}, not JAX's pid {jax_view['pid']} (another pid namespace?)", flush=True)
        view["clocks_idle"] = clock_state(str(device.uuid))
        print(f"info  SM clock before any work: {view['clocks_idle']}", flush=True)
    Path(path).write_text(json.dumps(view, indent=2))


def warmup_checks(rec: CellRecord, gpu: bool) -> list[tuple[bool, str]]:
    """(passed, what) per round and phase group.  The protocol (GroupRun.begin) warms a group up until
    its headline phase has run GPU_WARMUP_MIN_TIME seconds in at least GPU_WARMUP_MIN iterations on
    a GPU (CPU_WARMUP_MIN to CPU_WARMUP_MAX iterations on the CPU); the group's other phases only get
    their share of those iterations' time, so they are not held to it."""
    least, most, seconds = ((GPU_WARMUP_MIN, math.inf, GPU_WARMUP_MIN_TIME) if gpu
                            else (CPU_WARMUP_MIN, CPU_WARMUP_MAX, 0.0))
    out = []
    for i, r in enumerate(rec.rounds):  # a later round may measure only the groups still undecided
        for group in (g for g in groups_of(list(r.phases)) if HEADLINE[g] in r.phases):
            phase = HEADLINE[group]
            warmup = r.phases[phase].warmup
            wanted = f"{least}+" if most == math.inf else f"{least}" if least == most else f"{least}-{most}"
            what = (f"{cell_name(rec)} round {i + 1} {group}: {len(warmup)} warm-up iterations of {phase}, "
                    f"{sum(warmup):.3f} s (the protocol's {wanted}" + (f", at least {seconds:g} s)" if seconds else ")"))
            out.append((least <= len(warmup) <= most and sum(warmup) >= seconds - 1e-9, what))  # ns resolution
    return out


def anatomy(rec: CellRecord) -> None:
    """Print where each round's wall time went, for rounds recorded with a timeline."""
    for i, r in enumerate(rec.rounds):
        a = r.anatomy()
        if a is not None:
            parts = ", ".join(f"{f.name} {getattr(a, f.name):.2f}" for f in dataclasses.fields(a))
            print(f"info  {cell_name(rec)} round {i + 1} anatomy, {a.total:.2f} s: {parts}", flush=True)


def clocks(folder: str, device_arg: str) -> None:
    for _, rec in records(folder):
        if rec.status == "skipped":  # Flux without Julia: the compare step said why
            continue
        ran(rec)
        anatomy(rec)
        for passed, what in warmup_checks(rec, device_arg != "cpu"):
            check(passed, what)
        if device_arg == "cpu":
            check(not any(r.clocks for r in rec.rounds), f"{cell_name(rec)}: no GPU clocks on the CPU")
            continue
        for r in rec.rounds:
            for group, marks in r.clocks.items():
                print(f"info  {cell_name(rec)} {group}: {marks}", flush=True)
                check(bool(marks.get("start", {}).get("sm_mhz")) and bool(marks.get("end", {}).get("sm_mhz")),
                      f"{cell_name(rec)} {group}: SM clock read at the start and end of sampling")
            unsettled = [w for w in clock_warnings(r.clocks) if "not settled" in w]
            check(not unsettled, f"{cell_name(rec)}: clocks settled before sampling {unsettled or ''}")


def compare(folder: str, device_arg: str) -> None:
    recs = [rec for _, rec in records(folder)]
    for framework in ("pytorch", "jax"):
        rows = [r for r in recs if r.key.framework == framework]
        check(bool(rows), f"{framework} rows in {folder}")
        for rec in rows:
            ran(rec)
            where = rec.spec.device
            check(where.startswith(device_arg), f"{cell_name(rec)} ran on {where}")
            if rec.spec.gpu:
                ident = rec.framework_env.get("gpu_identity", {})
                print(f"info  {cell_name(rec)} identity: {ident}", flush=True)
    for rec in recs:
        if rec.key.framework not in ("pytorch", "jax"):
            check(rec.ok or rec.status == "skipped", f"{cell_name(rec)}: {rec.status} {rec.error or ''}")


COMMANDS = {"identity": identity, "jax-probe": jax_probe, "clocks": clocks, "compare": compare}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        sys.exit(0 if sys.argv[1:] in (["-h"], ["--help"]) else 2)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
