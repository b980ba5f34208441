"""Proof that a PyTorch row and a JAX row time the same function: torchvision's weights copied into
the Flax model, eval outputs compared on the same seeded input.

Only `reference_model` and `torch_reference` import torch, inside the functions: the JAX worker
can import this module without it.
"""

from __future__ import annotations

import jax
import numpy as np

from pybench.backends.base import PARITY_RTOL, make_input
from pybench.backends.jax.convert import from_torchvision
from pybench.backends.jax.models import abstract_variables, build, param_count, to_nhwc
from pybench.records.spec import CellSpec


def torch_reference(spec: CellSpec) -> dict:
    """The reference module in eval mode on spec's device: {"state": its state_dict as numpy,
    "x": the NCHW input make_input gives, "y": its output, "params": its parameter count}."""
    import torch

    from pybench.backends.pytorch.backend import reference_model

    dev = torch.device(spec.device)
    net = reference_model(spec.model).to(dev).eval()
    x = make_input(spec)
    with torch.no_grad():
        y = net(torch.from_numpy(x).to(dev)).cpu().numpy()
    return {
        "state": {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()},
        "x": x,
        "y": y,
        "params": sum(p.numel() for p in net.parameters()),
    }


def jax_device(spec: CellSpec) -> jax.Device:
    """The spec's "cpu" / "cuda:N" as a JAX device."""
    return jax.devices("cpu")[0] if spec.device_kind == "cpu" else jax.devices("gpu")[spec.cuda_index]


def run_parity(model: str, image_size: int, batch: int, device: str = "cpu") -> dict:
    """torchvision vs Flax, same weights and input, eval mode, fp32: max absolute difference and
    that difference relative to max |torch output|; ok when the latter is within PARITY_RTOL."""
    spec = CellSpec("jax", model, device, batch, image_size, threads=1)
    ref = torch_reference(spec)
    module = build(model)
    variables = from_torchvision(model, ref["state"], abstract_variables(module, image_size, batch))
    dev = jax_device(spec)
    with jax.default_matmul_precision("highest"):  # no TF32 or bf16 passes on GPUs
        apply = jax.jit(lambda v, x: module.apply(v, x, train=False))
        y = np.asarray(apply(jax.device_put(variables, dev), jax.device_put(to_nhwc(ref["x"]), dev)))
    if y.ndim == 4:  # image layers: back to torch's NCHW
        y = y.transpose(0, 3, 1, 2)
    diff = float(np.max(np.abs(y - ref["y"])))
    scale = float(np.max(np.abs(ref["y"])))
    rel = diff / scale if scale else diff
    return {
        "model": model,
        "device": device,
        "image_size": image_size,
        "batch_size": batch,
        "params_torch": ref["params"],
        "params_jax": param_count(variables),
        "max_abs_diff": diff,
        "max_rel_diff": rel,
        "ok": rel <= PARITY_RTOL,
    }
