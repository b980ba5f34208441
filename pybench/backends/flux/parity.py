"""Proof that a PyTorch row and a Flux row time the same function.

Two worker processes, so torch and Julia never share one:

    python -m pybench.backends.flux.parity torch MODEL IMAGE_SIZE BATCH DEVICE OUT.npz
        seeded torchvision model (with non-trivial BatchNorm statistics), its weights converted to
        Flux layout (convert.py), the input and its eval-mode output
    python -c "$FLUX_HALF" flux MODEL IMAGE_SIZE DEVICE IN.npz OUT.json
        loads those weights into the Metalhead model (never importing torch) and compares outputs;
        it imports juliacall before anything else, as a Flux worker does (`Flux.preload`)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from pybench.backends.base import PARITY_RTOL
from pybench.backends.flux.convert import architecture_note, flux_params, to_julia_layout
from pybench.errors import UserError
from pybench.protocol.workloads import get_workload

# Max |flux - torch| relative to max |torch|: fp32, different convolution algorithms and
# summation orders agree to ~1e-6..1e-5; a wrong layout or layer order is off by O(1).
WORKER_TIMEOUT_S = 1800
# `python -m` of this module would import the pybench.backends package, and numpy with it, first.
FLUX_HALF = "import juliacall, sys; from pybench.backends.flux.parity import main; sys.exit(main(sys.argv[1:]))"


def export_torch(model: str, image_size: int, batch_size: int, device: str, path: Path) -> None:
    """The PyTorch half (imports torch)."""
    import torch

    from pybench.backends.base import make_input
    from pybench.backends.pytorch.backend import reference_model
    from pybench.records.spec import CellSpec

    net = reference_model(model)
    layers: list[tuple[str, list[np.ndarray]]] = []

    def arr(t: torch.Tensor | None) -> np.ndarray | None:
        return None if t is None else t.detach().cpu().numpy()

    for mod in net.modules():
        if isinstance(mod, torch.nn.Conv2d):
            layers.append(("conv", [arr(mod.weight), arr(mod.bias)]))
        elif isinstance(mod, torch.nn.BatchNorm2d):
            layers.append(("bn", [arr(mod.weight), arr(mod.bias), arr(mod.running_mean), arr(mod.running_var)]))
        elif isinstance(mod, torch.nn.Linear):
            layers.append(("linear", [arr(mod.weight), arr(mod.bias)]))
    vgg_fmap = image_size // 32 if get_workload(model).family == "vgg" else None
    params = flux_params(layers, vgg_fmap)
    x = make_input(CellSpec("pytorch", model, device, batch_size, image_size, threads=1))
    dev = torch.device(device)
    net = net.to(dev).eval()
    with torch.no_grad():
        y = net(torch.from_numpy(x).to(dev)).cpu().numpy()
    np.savez(
        path,
        x=x,
        y=y,
        n=len(params),
        params=sum(p.numel() for p in net.parameters()),
        **{f"p{i:04d}": a for i, a in enumerate(params)},
    )


def compare_flux(model: str, image_size: int, device: str, npz: Path) -> dict:
    """The Flux half (never imports torch)."""
    from pybench.backends.flux.backend import build, start_julia
    from pybench.records.spec import available_cores, cuda_index

    data = np.load(npz)
    api = start_julia(available_cores(), cuda_index(device), tf32=False)
    net = build(api, get_workload(model), image_size, 0)
    slots = api.param_slots(net)
    n = int(data["n"])
    if len(slots) != n:
        raise RuntimeError(
            f"Flux model has {len(slots)} parameter arrays, the PyTorch export {n}; "
            f"Flux's first: {list(api.slot_names(net))[:4]}"
        )
    for i in range(n):
        api.load_slot(slots, i + 1, data[f"p{i:04d}"])
    y_flux = np.asarray(api.eval_output(net, to_julia_layout(data["x"]), device.startswith("cuda")).to_numpy())
    y_torch = data["y"].T  # (N, classes) -> Flux's (classes, N)
    diff = float(np.max(np.abs(y_flux - y_torch)))
    scale = float(np.max(np.abs(y_torch)))
    return {
        "params_pytorch": int(data["params"]),
        "params_flux": int(api.param_count(net)),
        "max_abs_err": diff,
        "max_rel_err": diff / scale if scale else diff,
    }


def _run(half: str, cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=WORKER_TIMEOUT_S)
    if proc.returncode != 0:
        last = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "")
        raise RuntimeError(f"{half} worker failed (exit code {proc.returncode}): {last.strip()}")


def run_parity(model: str, image_size: int, batch_size: int, device: str) -> dict:
    """Same weights, same input, eval mode: max absolute and relative output difference."""
    from pybench.backends.flux.julia_env import flux_availability, juliacall_env
    from pybench.records.spec import available_cores

    w = get_workload(model)
    if w.is_layer:
        raise UserError(f"parity compares whole models; {model} is a layer")
    status = flux_availability()
    if not status.ok:
        raise UserError(f"flux unavailable: {status.reason}")
    result: dict = {"model": model, "device": device, "image_size": image_size, "batch_size": batch_size}
    with tempfile.TemporaryDirectory(prefix="pybench-parity-") as tmp:
        npz, out = Path(tmp) / "torch.npz", Path(tmp) / "flux.json"
        try:
            _run("torch", [sys.executable, "-m", "pybench.backends.flux.parity", "torch", model,
                           str(image_size), str(batch_size), device, str(npz)], dict(os.environ))
            flux_env = {**os.environ, **juliacall_env(available_cores(), device.startswith("cuda"))}
            _run("flux", [sys.executable, "-c", FLUX_HALF, "flux", model, str(image_size), device,
                          str(npz), str(out)], flux_env)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            return {**result, "ok": False, "error": str(exc).splitlines()[0]}
        result.update(json.loads(out.read_text()))
    result["ok"] = result["max_rel_err"] <= PARITY_RTOL
    result["note"] = architecture_note(model, image_size) or ""
    return result


def main(argv: list[str]) -> int:
    if argv[0] == "torch":
        model, size, batch, device, path = argv[1:]
        export_torch(model, int(size), int(batch), device, Path(path))
    elif argv[0] == "flux":
        model, size, device, npz, out = argv[1:]
        Path(out).write_text(json.dumps(compare_flux(model, int(size), device, Path(npz))))
    else:
        raise SystemExit(f"usage: python -m pybench.backends.flux.parity torch|flux ...; got {argv[0]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
