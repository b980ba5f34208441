"""Assertions only a GPU machine can make; scripts/gpu_check.sh runs each step.  Exit 1 on a failure.

    identity           pybench's CUDA numbering (NVML + CUDA_VISIBLE_DEVICES) equals torch's, under
                       several CUDA_VISIBLE_DEVICES; NVML's UUID equals torch's for every device
    probe              (internal) one process's view as JSON: torch's devices, pybench's resolution
    last-uuid          print the NVML UUID of the last GPU, to pin a run to it
    dtypes             bf16/fp16 autocast outputs on the GPU really are in that dtype
    labelled DIR UUID  every record in DIR ran on, and is labelled with, the GPU with that UUID
    compiled DIR N     every --compile record in DIR took at least N samples per phase
    report FILE UUID   the detailed report names that GPU and gives % of peak
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pybench.efficiency import gpu_peak_gflops, peak_precision  # noqa: E402
from pybench.environment import gpu_facts, gpu_identity, resolve_device  # noqa: E402
from pybench.errors import UserError  # noqa: E402


def check(ok: bool, what: str) -> None:
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        sys.exit(1)


def probe() -> None:
    """Torch's devices (as CUDA enumerates them, not torch's NVML shortcut) against pybench's."""
    import torch

    try:
        count = torch._C._cuda_getDeviceCount()  # asks the CUDA runtime itself
    except RuntimeError:
        count = 0
    torch_uuids = []
    for i in range(count):
        props = torch.cuda.get_device_properties(i)
        ident = gpu_identity(props.name, str(props.uuid))
        check(ident["uuid"] is not None, f"NVML knows torch's cuda:{i} ({props.name}, uuid {props.uuid})")
        check(gpu_facts(ident["uuid"])["name"] == props.name, f"NVML and torch name cuda:{i} alike")
        torch_uuids.append(ident["uuid"])
    resolved = []
    for i in range(count + 1):
        try:
            resolved.append(resolve_device(f"cuda:{i}").uuid)
        except UserError as exc:
            resolved.append(f"UserError: {exc}")
    print(json.dumps({"torch": torch_uuids, "resolved": resolved, "auto": resolve_device("auto").kind}))


def run_probe(visible: str | None, order: str | None = None) -> dict:
    wanted = {"CUDA_VISIBLE_DEVICES": visible, "CUDA_DEVICE_ORDER": order}
    env = {k: v for k, v in os.environ.items() if k not in wanted}
    env.update({k: v for k, v in wanted.items() if v is not None})
    out = subprocess.run([sys.executable, __file__, "probe"], env=env, capture_output=True, text=True)
    print(out.stdout + out.stderr, end="", flush=True)
    check(out.returncode == 0, f"probe under CUDA_VISIBLE_DEVICES={visible!r} CUDA_DEVICE_ORDER={order!r}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def last_uuid() -> str | None:
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.device_count() - 1)
    return gpu_identity(props.name, str(props.uuid))["uuid"]


def identity() -> None:
    everything = run_probe(None)
    uuids = everything["torch"]
    check(len(uuids) > 0, f"torch sees {len(uuids)} GPU(s)")
    last = uuids[-1]
    cases = [(None, None), (None, "PCI_BUS_ID"), ("", None), ("-1", None), (last, None),
             (last[:12], None), (str(len(uuids) - 1), "PCI_BUS_ID"), (f"{last},{len(uuids)}", "PCI_BUS_ID")]
    if len(uuids) > 1:
        cases += [("1,0", "PCI_BUS_ID"), (f"{uuids[1]},{uuids[0]}", None)]
    for visible, order in cases:
        seen = run_probe(visible, order)
        n = len(seen["torch"])
        check(seen["resolved"][:n] == seen["torch"],
              f"cuda:N is torch's cuda:N under CUDA_VISIBLE_DEVICES={visible!r}: {seen['torch']}")
        check(seen["resolved"][n].startswith("UserError"), f"cuda:{n} is refused: {seen['resolved'][n]}")
        check(seen["auto"] == ("cuda" if n else "cpu"), f"auto picks {seen['auto']}")


def dtypes() -> None:
    import torch

    from pybench.backends.pytorch import PyTorchBackend
    from pybench.spec import CellSpec

    for dtype, want in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        spec = CellSpec.from_json({"framework": "pytorch", "model": "resnet18", "device": "cuda:0",
                                   "batch_size": 2, "image_size": 64, "dtype": dtype, "threads": 1})
        backend = PyTorchBackend(spec)
        backend.prepare()
        backend.zero_grad()
        backend.forward()
        check(backend.y.dtype == want and backend.y.is_cuda, f"{dtype} forward output is {backend.y.dtype}")
        check(backend.grad_out.dtype == want, f"{dtype} output gradient is {backend.grad_out.dtype}")
        backend.backward()
        weight = backend.module.conv1.weight
        check(weight.grad is not None and weight.grad.dtype == torch.float32,
              "autocast keeps fp32 master weights and gradients")


def records(folder: str) -> list[tuple[dict, dict]]:
    files = sorted(Path(folder).glob("*.json"))
    check(bool(files), f"results in {folder}")
    out = []
    for f in files:
        data = json.loads(f.read_text())
        out += [(data["environment"], r) for r in data["records"]]
    return out


def labelled(folder: str, uuid: str) -> None:
    name = gpu_facts(uuid)["name"]
    for env, rec in records(folder):
        check(rec["status"] == "ok", f"{rec['cell']} ran: {rec.get('error')}")
        gpu = rec.get("gpu") or {}
        check(gpu.get("uuid") == uuid, f"{rec['cell']} ran on {gpu.get('uuid')}, pinned to {uuid}")
        check(gpu.get("name") == name, f"{rec['cell']} is labelled {gpu.get('name')!r} ({name!r} by NVML)")
        check(any(g.get("uuid") == uuid for g in env["gpus"]), "the environment lists that GPU by UUID")
        precision = peak_precision(rec["spec"])
        peak = (rec.get("peak") or {}).get("gflops")
        check(peak == gpu_peak_gflops(name, precision), f"peak {peak} GFLOP/s is {name}'s {precision}")
        for phase, result in rec["phases"].items():
            mem = result["memory"]
            used, reserved = mem.get("nvml_used"), mem.get("cuda_max_reserved")
            check(used is not None and reserved is not None and used >= reserved,
                  f"{phase}: NVML's used memory {used} of the pinned GPU covers torch's reserved {reserved}")


def compiled(folder: str, least: int) -> None:
    for _, rec in records(folder):
        check(rec["status"] == "ok" and rec["spec"].get("compile"), f"{rec['cell']} compiled and ran")
        for phase, result in rec["phases"].items():
            n = len(result["samples"])
            check(n >= least, f"{rec['cell']} {phase}: {n} samples (first run {result['first_run']:.1f} s)")


def report(path: str, uuid: str) -> None:
    text = Path(path).read_text()
    name = gpu_facts(uuid)["name"]
    check(name is not None and name in text, f"the report's headings name {name}")
    check("% of peak" in text, "the detailed report gives % of peak")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "last-uuid":
        print(last_uuid())
    elif command == "compiled":
        compiled(args[0], int(args[1]))
    else:
        {"probe": probe, "identity": identity, "dtypes": dtypes, "labelled": labelled,
         "report": report}[command](*args)
