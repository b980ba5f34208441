"""PyTorch -> Flux layout conversions, in numpy only (the Flux worker imports this, never torch).

Julia arrays are column-major, so a C-ordered numpy array of shape (A, B, C, D) is, byte for byte,
a Julia array of size (D, C, B, A): NCHW batches are WHCN batches, and `.T` is the zero-copy
view that presents them that way (juliacall passes numpy arrays to Julia as PyArray, by shape).
"""

from __future__ import annotations

import math

import numpy as np


def to_julia_layout(x: np.ndarray) -> np.ndarray:
    """NCHW (C order) -> the same memory seen with reversed dims (W, H, C, N), Fortran order."""
    return x.T


def conv_weight(w: np.ndarray) -> np.ndarray:
    """torch Conv2d weight (Cout, Cin, kH, kW) -> Flux Conv weight (kW, kH, Cin, Cout).

    torch computes a cross-correlation, Flux's `Conv` a true convolution (NNlib flips the kernel),
    so the kernel is flipped along both spatial axes to compute the same function.
    """
    return np.asfortranarray(w[:, :, ::-1, ::-1].T)


def dense_weight(w: np.ndarray) -> np.ndarray:
    """torch Linear (out, in) is Flux Dense (out, in): y = W*x + b in both."""
    return np.asfortranarray(w)


def batchnorm(
    weight: np.ndarray,
    bias: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    conv_bias: np.ndarray | None = None,
) -> list[np.ndarray]:
    """torch BatchNorm2d -> Flux BatchNorm (γ, β, μ, σ²); both compute γ(x-μ)/sqrt(σ²+ϵ)+β with
    ϵ = 1e-5.  Metalhead drops the bias of a convolution followed by a norm layer; in eval mode
    that bias is exactly a shift of the running mean, so it is folded into μ."""
    mu = running_mean if conv_bias is None else running_mean - conv_bias
    return [weight, bias, mu, running_var]


def adaptive_pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """torch's AdaptiveAvgPool along one axis as an (n_out, n_in) matrix: bin i averages
    [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out))."""
    a = np.zeros((n_out, n_in))
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, math.ceil((i + 1) * n_in / n_out)
        a[i, lo:hi] = 1.0 / (hi - lo)
    return a


def fold_adaptive_pool(w: np.ndarray, channels: int, fmap: int, pooled: int = 7) -> np.ndarray:
    """torchvision VGG: Linear(C*7*7) after AdaptiveAvgPool2d(7) on a fmap x fmap feature map is
    one linear map, Linear(C*fmap*fmap); Metalhead's VGG has that Dense (sized by the image) and no
    pool.  Both flatten (C, H, W) with W fastest, so indices agree.  Identity when fmap == 7."""
    a = adaptive_pool_matrix(fmap, pooled)
    w4 = w.reshape(w.shape[0], channels, pooled, pooled).astype(np.float64)
    folded = np.einsum("ocik,ij,kl->ocjl", w4, a, a)
    return folded.reshape(w.shape[0], channels * fmap * fmap).astype(w.dtype)


def flux_params(layers: list[tuple[str, list[np.ndarray]]], vgg_fmap: int | None = None) -> list[np.ndarray]:
    """torch layers in module order -> the arrays `PyBench.param_slots` expects, in order.

    `layers` holds ("conv", [w, b or None]), ("bn", [weight, bias, mean, var]) or
    ("linear", [w, b]).  `vgg_fmap`: the feature-map side before torchvision's adaptive pool, to
    fold it into the first Linear (VGG only).
    """
    out: list[np.ndarray] = []
    pending_bias: np.ndarray | None = None  # a conv bias waiting for its BatchNorm
    first_linear = True
    for i, (kind, arrays) in enumerate(layers):
        if kind == "conv":
            w, b = arrays
            out.append(conv_weight(w))
            followed_by_bn = i + 1 < len(layers) and layers[i + 1][0] == "bn"
            if b is not None and followed_by_bn:
                pending_bias = b
            elif b is not None:
                out.append(b)
        elif kind == "bn":
            out.extend(batchnorm(*arrays, conv_bias=pending_bias))
            pending_bias = None
        elif kind == "linear":
            w, b = arrays
            if first_linear and vgg_fmap is not None:
                w = fold_adaptive_pool(w, w.shape[1] // 49, vgg_fmap)
            first_linear = False
            out.extend([dense_weight(w), b])
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
    return [np.asarray(a, dtype=np.float32) for a in out]


# Where the Flux (Metalhead) architecture is not torchvision's; reports footnote such rows.
ARCHITECTURE_NOTES: dict[str, str] = {
    "vgg16_bn": "Metalhead's VGG-BN convolutions have no bias (BatchNorm follows): 138,361,768 "
    "parameters vs torchvision's 138,365,992",
    "vgg19_bn": "Metalhead's VGG-BN convolutions have no bias (BatchNorm follows): 143,672,744 "
    "parameters vs torchvision's 143,678,248",
}
VGG_SIZE_NOTE = (
    "at {size}px Metalhead's VGG classifier takes the {fmap}x{fmap} feature map directly, "
    "torchvision's averages it to 7x7 first: different first Dense layer and FLOPs"
)


def architecture_note(model: str, image_size: int) -> str | None:
    """Why the Flux row's model differs from the PyTorch row's, or None when they are the same."""
    notes = [ARCHITECTURE_NOTES[model]] if model in ARCHITECTURE_NOTES else []
    fmap = image_size // 32
    if model.startswith("vgg") and fmap != 7:
        notes.append(VGG_SIZE_NOTE.format(size=image_size, fmap=fmap))
    return "; ".join(notes) or None
