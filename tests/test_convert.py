"""PyTorch -> Flux conversion math, checked in numpy against torch (no Julia needed).

Flux's computations are written out in numpy on the Julia-layout arrays: a true convolution
(scipy.signal.convolve flips the kernel, as NNlib's Conv does), BatchNorm's formula, Dense's W*x+b.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import convolve

from pybench.backends.flux import convert
from pybench.backends.pytorch.backend import build_module

rng = np.random.default_rng(0)


def randn(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def flux_conv(xj: np.ndarray, kj: np.ndarray, stride: tuple[int, int], pad: tuple[int, int]) -> np.ndarray:
    """NNlib's Conv (true convolution) on (W, H, C, N) input and (kW, kH, Cin, Cout) kernel."""
    xp = np.pad(xj, ((pad[1], pad[1]), (pad[0], pad[0]), (0, 0), (0, 0)))
    n, cout = xj.shape[3], kj.shape[3]
    out = None
    for b in range(n):
        for co in range(cout):
            acc = sum(convolve(xp[:, :, ci, b], kj[:, :, ci, co], mode="valid") for ci in range(xj.shape[2]))
            if out is None:
                out = np.zeros(acc.shape + (cout, n), dtype=np.float64)
            out[:, :, co, b] = acc
    return out[:: stride[1], :: stride[0]]  # (W, H): stride is (sH, sW) as torch gives it


@pytest.mark.parametrize("kernel,stride,pad", [((3, 3), (1, 1), (1, 1)), ((3, 5), (2, 1), (1, 2)), ((7, 7), (2, 2), (3, 3))])
def test_flipped_kernel_true_convolution_equals_torch_conv2d(kernel, stride, pad):
    x, w = randn(2, 3, 11, 13), randn(4, 3, *kernel)
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=pad).numpy()
    got = flux_conv(convert.to_julia_layout(x), convert.conv_weight(w), stride, pad)
    assert got.shape == want.T.shape
    np.testing.assert_allclose(got, want.T, rtol=1e-4, atol=1e-4)
    # Without the flip the same layout computes something else: the flip is what makes it equal.
    unflipped = flux_conv(convert.to_julia_layout(x), w.T, stride, pad)
    assert not np.allclose(unflipped, want.T, atol=1e-2)


def test_conv_weight_layout():
    w = randn(5, 3, 2, 4)  # (Cout, Cin, kH, kW)
    k = convert.conv_weight(w)
    assert k.shape == (4, 2, 3, 5) and k.flags.f_contiguous
    assert k[0, 0, 1, 2] == w[2, 1, 1, 3]  # flipped: kw 0 <- 3, kh 0 <- 1


def test_batchnorm_mapping_matches_torch_eval():
    c = 6
    weight, bias, mean, var = randn(c), randn(c), randn(c), 0.5 + rng.random(c, dtype=np.float32)
    x = randn(3, c, 5, 4)
    bn = torch.nn.BatchNorm2d(c).eval()
    with torch.no_grad():
        for t, v in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), (weight, bias, mean, var)):
            t.copy_(torch.from_numpy(v))
        want = bn(torch.from_numpy(x)).numpy()
    gamma, beta, mu, sigma2 = convert.batchnorm(weight, bias, mean, var)
    xj = convert.to_julia_layout(x)  # channels are dim 3 of (W, H, C, N)
    shape = (1, 1, c, 1)
    got = gamma.reshape(shape) * (xj - mu.reshape(shape)) / np.sqrt(sigma2.reshape(shape) + 1e-5) + beta.reshape(shape)
    np.testing.assert_allclose(got, want.T, rtol=1e-5, atol=1e-5)


def test_conv_bias_folds_into_batchnorm_mean():
    """Metalhead's conv before a BatchNorm has no bias; in eval mode torch's bias is a mean shift."""
    x, w, b = randn(2, 3, 8, 8), randn(4, 3, 3, 3), randn(4)
    stats = (randn(4), randn(4), randn(4), 0.5 + rng.random(4, dtype=np.float32))
    xt = torch.from_numpy(x)
    want = F.batch_norm(F.conv2d(xt, torch.from_numpy(w), torch.from_numpy(b), padding=1),
                        torch.from_numpy(stats[2]), torch.from_numpy(stats[3]),
                        torch.from_numpy(stats[0]), torch.from_numpy(stats[1]), training=False).numpy()
    gamma, beta, mu, sigma2 = convert.batchnorm(*stats, conv_bias=b)
    y = F.conv2d(xt, torch.from_numpy(w), None, padding=1)  # no bias, as in Metalhead
    got = F.batch_norm(y, torch.from_numpy(mu), torch.from_numpy(sigma2), torch.from_numpy(gamma),
                       torch.from_numpy(beta), training=False).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_dense_mapping_matches_torch_linear():
    x, w, b = randn(3, 10), randn(4, 10), randn(4)
    want = F.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)).numpy()
    got = convert.dense_weight(w) @ convert.to_julia_layout(x) + b[:, None]  # W*x .+ b on (in, N)
    np.testing.assert_allclose(got, want.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmap", [1, 2, 7, 9])
def test_adaptive_pool_folds_into_first_dense(fmap):
    c = 4
    f, w, b = randn(2, c, fmap, fmap), randn(5, c * 49), randn(5)
    ft = torch.from_numpy(f)
    want = F.linear(torch.flatten(F.adaptive_avg_pool2d(ft, 7), 1), torch.from_numpy(w), torch.from_numpy(b)).numpy()
    folded = convert.fold_adaptive_pool(w, c, fmap)
    assert folded.shape == (5, c * fmap * fmap)
    # Flux flattens (W, H, C) column-major: the same index order as torch's flatten of (C, H, W).
    flat = convert.to_julia_layout(f).reshape(-1, f.shape[0], order="F")
    np.testing.assert_allclose(folded @ flat + b[:, None], want.T, rtol=1e-4, atol=1e-4)


def test_nchw_is_whcn_without_a_copy():
    x = randn(2, 3, 4, 5)  # N, C, H, W, C order
    v = convert.to_julia_layout(x)
    assert v.shape == (5, 4, 3, 2)
    assert np.shares_memory(v, x) and v.flags.f_contiguous
    assert v.strides == tuple(reversed(x.strides))
    assert v[4, 3, 2, 1] == x[1, 2, 3, 4]
    # Julia reads the same bytes column-major with the reversed dims.
    as_julia = np.ndarray(shape=v.shape, dtype=x.dtype, buffer=x.tobytes(order="C"), order="F")
    np.testing.assert_array_equal(as_julia, v)


def torch_layers(net: torch.nn.Module) -> list:
    out = []
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            out.append(("conv", [m.weight.detach().numpy(), None if m.bias is None else m.bias.detach().numpy()]))
        elif isinstance(m, torch.nn.BatchNorm2d):
            out.append(("bn", [t.detach().numpy() for t in (m.weight, m.bias, m.running_mean, m.running_var)]))
        elif isinstance(m, torch.nn.Linear):
            out.append(("linear", [m.weight.detach().numpy(), m.bias.detach().numpy()]))
    return out


def test_flux_params_resnet18_matches_metalhead_slots():
    params = convert.flux_params(torch_layers(build_module("resnet18")))
    # Metalhead ResNet18: 20 bias-free convs, 20 BatchNorms (4 arrays each), one Dense (2).
    assert len(params) == 20 + 20 * 4 + 2
    assert params[0].shape == (7, 7, 3, 64) and params[-2].shape == (1000, 512)
    assert all(p.dtype == np.float32 for p in params)


@pytest.mark.slow
def test_flux_params_vgg16_bn_drops_conv_bias_and_folds_pool():
    params = convert.flux_params(torch_layers(build_module("vgg16_bn")), vgg_fmap=2)
    assert len(params) == 13 + 13 * 4 + 3 * 2
    assert params[0].shape == (3, 3, 3, 64) and params[1].shape == (64,)  # conv weight, then γ
    assert params[-6].shape == (4096, 512 * 2 * 2)  # first Dense sized for a 64 px image


def test_vgg_bn_parameter_difference_is_the_conv_biases():
    net = build_module("vgg16_bn")
    total = sum(p.numel() for p in net.parameters())
    biases = sum(m.bias.numel() for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert (total, total - biases) == (138_365_992, 138_361_768)
    assert "138,361,768" in convert.architecture_note("vgg16_bn", 224)


def test_architecture_notes():
    assert convert.architecture_note("resnet50", 64) is None
    assert convert.architecture_note("vgg16", 224) is None
    assert "2x2" in convert.architecture_note("vgg16", 64)
