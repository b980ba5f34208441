"""torchvision state_dict -> the variables of pybench.backends.jax.models, in numpy (never torch).

XLA's convolution is a cross-correlation like torch's, so kernels are only transposed, never
flipped: OIHW -> HWIO. Linear (out, in) -> Dense (in, out). BatchNorm weight/bias -> params
scale/bias, running_mean/var -> batch_stats mean/var. VGG's first classifier layer is permuted:
torch flattens the pooled (C, H, W) map, NHWC flattens (H, W, C).
"""

from __future__ import annotations

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from pybench.backends.jax.models import LAYER, VGG_POOL
from pybench.protocol.workloads import get_workload

VGG_FIRST_DENSE = "classifier.0"


def flax_path(torch_module: str) -> tuple[str, ...]:
    """"layer1.0.downsample.1" -> ("layer1_0", "downsample_1"): an index joins the name before it,
    as models.py names submodules after torchvision's Sequential children."""
    parts: list[str] = []
    for p in torch_module.split(".") if torch_module else ():
        if p.isdigit():
            parts[-1] += f"_{p}"
        else:
            parts.append(p)
    return tuple(parts)


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """torch Conv2d (Cout, Cin, kH, kW) -> Flax Conv (kH, kW, Cin, Cout), no flip."""
    return w.transpose(2, 3, 1, 0)


def dense_kernel(w: np.ndarray) -> np.ndarray:
    """torch Linear (out, in), y = x W^T + b -> Flax Dense (in, out), y = x K + b."""
    return w.T


def vgg_first_dense_kernel(w: np.ndarray, pooled: int = VGG_POOL) -> np.ndarray:
    """torch (out, C*7*7), inputs in (C, H, W) order -> Flax (7*7*C, out), inputs in (H, W, C)."""
    out = w.shape[0]
    return w.reshape(out, -1, pooled, pooled).transpose(2, 3, 1, 0).reshape(-1, out)


def from_torchvision(workload_name: str, state: dict[str, np.ndarray], variables: dict) -> dict:
    """torch state_dict arrays (by torch key) -> Flax variables shaped like `variables` (arrays or
    jax.ShapeDtypeStruct leaves: only shapes and dtypes are read). Every torch key but
    num_batches_tracked must land on a Flax leaf of the same shape, and every Flax leaf be filled;
    otherwise ValueError naming the key or leaf."""
    w = get_workload(workload_name)
    prefix = (LAYER,) if w.is_layer else ()
    template = flatten_dict(variables)
    out: dict[tuple[str, ...], np.ndarray] = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":  # torch's step counter; flax BatchNorm keeps none
            continue
        path = prefix + flax_path(module)
        value = np.asarray(value)
        if leaf in ("running_mean", "running_var"):
            dest = ("batch_stats", *path, leaf.removeprefix("running_"))
        elif leaf == "bias":
            dest = ("params", *path, "bias")
        elif leaf == "weight" and ("params", *path, "scale") in template:
            dest = ("params", *path, "scale")
        elif leaf == "weight":
            dest = ("params", *path, "kernel")
            if value.ndim == 4:
                value = conv_kernel(value)
            elif w.family == "vgg" and module == VGG_FIRST_DENSE:
                value = vgg_first_dense_kernel(value)
            else:
                value = dense_kernel(value)
        else:
            raise ValueError(f"torch key {key}: no Flax counterpart for {leaf!r}")
        name = "/".join(dest)
        if dest not in template:
            raise ValueError(f"torch key {key}: the Flax model has no {name}")
        if value.shape != tuple(template[dest].shape):
            raise ValueError(
                f"torch key {key}: shape {tuple(state[key].shape)} converts to {value.shape}, "
                f"Flax {name} is {tuple(template[dest].shape)}"
            )
        out[dest] = np.ascontiguousarray(value, dtype=template[dest].dtype)
    missing = sorted("/".join(k) for k in template.keys() - out.keys())
    if missing:
        raise ValueError(f"{len(missing)} Flax variables have no torch key, e.g. {missing[0]}")
    return unflatten_dict(out)
