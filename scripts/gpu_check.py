"""Assertions only a GPU machine can make; scripts/gpu_check.sh runs each step.  Exit 1 on a failure.

    identity           pybench's CUDA numbering (NVML + CUDA_VISIBLE_DEVICES) equals torch's, under
                       several CUDA_VISIBLE_DEVICES/CUDA_DEVICE_ORDER; NVML's UUID equals torch's
    probe              (internal) one process's view as JSON: torch's devices, pybench's resolution
    last-uuid          print the NVML UUID of the last GPU, to pin a run to it
    dtypes             bf16/fp16 autocast outputs on the GPU really are in that dtype
    labelled DIR UUID  every record in DIR ran on, and is labelled with, the GPU with that UUID
    memory DIR         every record in DIR has CUDA peaks per phase group, inference's below train's
    compiled DIR N     every --compile record in DIR took at least N samples per phase and round
    report FILE UUID   the detailed report names that GPU and gives GFLOP/s and % of peak
    jax DIR            every JAX record in DIR ran, on JAX's GPU backend
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pybench.records import results  # noqa: E402
from pybench.backends.efficiency import gpu_peak_gflops, peak_precision  # noqa: E402
from pybench.machine.devices import gpu_identity, gpus, resolve_device  # noqa: E402
from pybench.errors import UserError  # noqa: E402
from pybench.machine.gpu_probe import driver_advice  # noqa: E402
from pybench.records.record import CellRecord  # noqa: E402

GROUPS = ("train", "step", "inference")
JAX_GPU_BACKENDS = ("gpu", "cuda")


def fail(what: str) -> NoReturn:
    print("FAIL  " + what, flush=True)
    sys.exit(1)


def check(ok: bool, what: str) -> None:
    if not ok:
        fail(what)
    print("ok    " + what, flush=True)


# --- which GPU is which ---------------------------------------------------------------------------


def nvml_name(uuid: str | None) -> str | None:
    """NVML's name of the GPU or MIG slice with this UUID; None if NVML does not know it."""
    return next((d["name"] for g in gpus() for d in (g, *g["mig"]) if d["uuid"] == uuid), None)


def torch_uuids() -> list[str | None]:
    """NVML's UUID of every device torch sees, as CUDA enumerates them (not torch's NVML shortcut)."""
    import torch

    try:
        count = torch._C._cuda_getDeviceCount()  # asks the CUDA runtime itself
    except RuntimeError:
        count = 0
    out = []
    for i in range(count):
        props = torch.cuda.get_device_properties(i)
        ident = gpu_identity(props.name, str(props.uuid))
        check(ident["uuid"] is not None, f"NVML knows torch's cuda:{i} ({props.name}, uuid {props.uuid})")
        check(nvml_name(ident["uuid"]) == props.name, f"NVML and torch name cuda:{i} alike")
        out.append(ident["uuid"])
    return out


def resolved_uuids(count: int) -> list[str]:
    """pybench's UUID for cuda:0 .. cuda:count (one past the last), or the UserError it raises."""
    out = []
    for i in range(count + 1):
        try:
            out.append(str(resolve_device(f"cuda:{i}").uuid))
        except UserError as exc:
            out.append(f"UserError: {exc}")
    return out


def probe() -> None:
    mine = torch_uuids()
    view = {"torch": mine, "resolved": resolved_uuids(len(mine)), "auto": resolve_device("auto").kind}
    print(json.dumps(view))


def run_probe(visible: str | None, order: str | None = None) -> dict[str, Any]:
    """`probe` in a fresh process with exactly these CUDA_VISIBLE_DEVICES/CUDA_DEVICE_ORDER."""
    wanted = {"CUDA_VISIBLE_DEVICES": visible, "CUDA_DEVICE_ORDER": order}
    env = {k: v for k, v in os.environ.items() if k not in wanted}
    env.update({k: v for k, v in wanted.items() if v is not None})
    out = subprocess.run([sys.executable, __file__, "probe"], env=env, capture_output=True, text=True)
    print(out.stdout + out.stderr, end="", flush=True)
    check(out.returncode == 0, f"probe under CUDA_VISIBLE_DEVICES={visible!r} CUDA_DEVICE_ORDER={order!r}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def last_uuid() -> None:
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.device_count() - 1)
    print(gpu_identity(props.name, str(props.uuid))["uuid"])


def visibility_cases(uuids: list[str]) -> list[tuple[str | None, str | None]]:
    last = uuids[-1]
    cases = [(None, None), (None, "PCI_BUS_ID"), ("", None), ("-1", None), (last, None),
             (last[:12], None), (str(len(uuids) - 1), "PCI_BUS_ID"), (f"{last},{len(uuids)}", "PCI_BUS_ID")]
    if len(uuids) > 1:
        cases += [("1,0", "PCI_BUS_ID"), (f"{uuids[1]},{uuids[0]}", None)]
    return cases


def identity() -> None:
    uuids = run_probe(None)["torch"]
    check(len(uuids) > 0, f"torch sees {len(uuids)} GPU(s)" + "".join(f": {line}" for line in driver_advice()))
    for visible, order in visibility_cases(uuids):
        seen = run_probe(visible, order)
        n = len(seen["torch"])
        check(seen["resolved"][:n] == seen["torch"],
              f"cuda:N is torch's cuda:N under CUDA_VISIBLE_DEVICES={visible!r}: {seen['torch']}")
        check(seen["resolved"][n].startswith("UserError"), f"cuda:{n} is refused: {seen['resolved'][n]}")
        check(seen["auto"] == ("cuda" if n else "cpu"), f"auto picks {seen['auto']}")


# --- dtypes ---------------------------------------------------------------------------------------


def dtypes() -> None:
    import torch

    from pybench.backends.pytorch.backend import PyTorchBackend
    from pybench.records.spec import CellSpec

    gpu = resolve_device("cuda:0")
    for dtype, want in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        spec = CellSpec("pytorch", "resnet18", gpu.label, batch_size=2, image_size=64, dtype=dtype,
                        threads=1, gpu=gpu, device_name=str(gpu.name))
        backend = PyTorchBackend(spec)
        backend.prepare()
        outputs: list[torch.Tensor] = []
        backend.module.register_forward_hook(lambda module, args, y: outputs.append(y))
        backend.sampler().sample("train", 1)
        y = outputs[-1]
        check(y.dtype == want and y.is_cuda, f"{dtype} forward output is {y.dtype} on {y.device}")
        check(backend.grad_out.dtype == want, f"{dtype} output gradient is {backend.grad_out.dtype}")
        grad = backend.module.conv1.weight.grad
        check(grad is not None and grad.dtype == torch.float32,
              "autocast keeps fp32 master weights and gradients")


# --- results --------------------------------------------------------------------------------------


def records(folder: str) -> list[tuple[dict, CellRecord]]:
    """(environment, record) of every results file in `folder`."""
    check(any(Path(folder).glob("*.json")), f"results in {folder}")
    try:
        docs = results.collect([Path(folder)])
    except UserError as exc:
        fail(f"results in {folder} load: {exc}")
    return [(doc.environment, rec) for doc in docs for rec in doc.records]


def cell_name(rec: CellRecord) -> str:
    k = rec.key
    return f"{k.framework} {k.model} {k.device_name} {k.dtype}{' tf32' if k.tf32 else ''}"


def ran(rec: CellRecord) -> None:
    check(rec.ok, f"{cell_name(rec)} ran" + (f": {rec.error}" if rec.error else ""))


def labelled(folder: str, uuid: str) -> None:
    gpu_name = nvml_name(uuid)
    for env, rec in records(folder):
        ran(rec)
        pinned = rec.spec.gpu.uuid if rec.spec.gpu else None
        check(pinned == uuid, f"{cell_name(rec)} was pinned to {pinned}, asked {uuid}")
        seen = rec.framework_env.get("gpu_identity", {}).get("uuid")
        check(seen == uuid, f"{cell_name(rec)} ran on {seen} (the framework's GPU), pinned to {uuid}")
        check(rec.key.device_name == gpu_name,
              f"{cell_name(rec)} is labelled {rec.key.device_name!r} ({gpu_name!r} by NVML)")
        check(any(g.get("uuid") == uuid for g in env["gpus"]), "the environment lists that GPU by UUID")
        precision = peak_precision(rec)
        peak = rec.peak.gflops if rec.peak else None
        check(peak == gpu_peak_gflops(gpu_name, precision),
              f"peak {peak} GFLOP/s is {gpu_name}'s {precision}")


def group_memory(rec: CellRecord, group: str) -> dict[str, int]:
    """The group's CUDA peaks, checked to be consistent with each other and with NVML's snapshot."""
    mem = rec.memory(group)
    allocated, reserved = mem.get("cuda_max_allocated", 0), mem.get("cuda_max_reserved", 0)
    check(reserved >= allocated > 0,
          f"{cell_name(rec)} {group}: reserved {reserved} >= allocated {allocated} > 0")
    used = mem.get("nvml_device_used_snapshot")
    check(used is not None and used >= reserved,
          f"{cell_name(rec)} {group}: NVML's device-used snapshot {used} covers torch's reserved {reserved}")
    return mem


def memory(folder: str) -> None:
    for _, rec in records(folder):
        ran(rec)
        for rnd, r in enumerate(rec.rounds):
            check(set(GROUPS) <= set(r.memory),
                  f"{cell_name(rec)} round {rnd + 1} has memory for {sorted(r.memory)}")
        peaks = {g: group_memory(rec, g)["cuda_max_allocated"] for g in GROUPS}
        check(peaks["inference"] < peaks["train"],
              f"{cell_name(rec)}: inference's allocated peak {peaks['inference']} is below train's "
              f"{peaks['train']} (gradients freed)")


def compiled(folder: str, least: str) -> None:
    for _, rec in records(folder):
        ran(rec)
        check(rec.spec.compile, f"{cell_name(rec)} is a --compile cell")
        for phase in rec.phase_names:
            n = min(len(s) for s in rec.samples(phase))
            check(n >= int(least),
                  f"{cell_name(rec)} {phase}: {n} samples (first run {rec.first_run(phase):.1f} s)")


def report(path: str, uuid: str) -> None:
    text = Path(path).read_text()
    gpu_name = nvml_name(uuid)
    check(gpu_name is not None and gpu_name in text, f"the report's headings name {gpu_name}")
    check("GFLOP/s" in text, "the detailed report gives GFLOP/s")
    check("% of peak" in text, "the detailed report gives % of peak")


def jax(folder: str) -> None:
    recs = [rec for _, rec in records(folder)]
    jax_rows = [rec for rec in recs if rec.key.framework == "jax"]
    check(bool(jax_rows), f"JAX rows in {folder}")
    for rec in recs:
        if rec.key.framework == "jax" or rec.status != "skipped":  # Flux without Julia says why
            ran(rec)
    for rec in jax_rows:
        backend = rec.framework_env.get("backend")
        check(backend in JAX_GPU_BACKENDS, f"{cell_name(rec)} ran on JAX's {backend!r} backend")


COMMANDS: dict[str, Callable[..., None]] = {
    "probe": probe, "identity": identity, "last-uuid": last_uuid, "dtypes": dtypes, "labelled": labelled,
    "memory": memory, "compiled": compiled, "report": report, "jax": jax,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        sys.exit(0 if sys.argv[1:] in (["-h"], ["--help"]) else 2)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
