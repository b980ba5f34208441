"""The Flax models against torchvision on the CPU: parameter counts, weight conversion, eval-output
parity, train mode and dtypes, on tiny shapes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from flax.errors import InvalidRngError  # noqa: E402

from pybench.backends.jax import convert, models, parity  # noqa: E402
from pybench.backends.pytorch.backend import count_params as torch_count_params  # noqa: E402
from pybench.backends.pytorch.backend import reference_model  # noqa: E402
from pybench.protocol.workloads import LAYERS, WORKLOADS  # noqa: E402

TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
}
IMAGES = np.random.default_rng(0).standard_normal((2, 32, 32, 3), dtype=np.float32)  # NHWC


@pytest.fixture(autouse=True)
def highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


def test_the_stated_counts_are_the_nine_models():
    assert set(TORCHVISION_PARAMS) == set(WORKLOADS)


@pytest.mark.slow
@pytest.mark.parametrize("name", [*WORKLOADS, *LAYERS])
def test_parameter_count_equals_torch(name):
    # jax.eval_shape and torch's meta device: no weights are allocated on either side.
    n = models.count_params(name)
    assert n == torch_count_params(name)
    assert n == TORCHVISION_PARAMS.get(name, n)


def test_parameter_count_does_not_depend_on_image_size():
    # torchvision's adaptive pool fixes VGG's classifier at 512*7*7 inputs at any image size.
    module = models.build("vgg16")
    counts = {models.param_count(models.abstract_variables(module, s, 1)) for s in (32, 100, 224)}
    assert counts == {TORCHVISION_PARAMS["vgg16"]}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet18", "vgg16_bn", "resnet50"])
def test_eval_output_parity_with_torchvision(model):
    r = parity.run_parity(model, image_size=32, batch=2)
    assert r["params_jax"] == r["params_torch"] == TORCHVISION_PARAMS[model]
    assert r["ok"] and r["max_rel_diff"] <= 1e-4, r


@pytest.mark.parametrize("name", LAYERS)
def test_layer_suite_eval_parity(name):
    # An odd size: padding and stride-2 edges differ from the even case.
    r = parity.run_parity(name, image_size=9, batch=2)
    assert r["params_jax"] == r["params_torch"]
    assert r["ok"] and r["max_rel_diff"] <= 1e-5, r


def test_batchnorm_train_mode_matches_torch():
    """Train mode normalises with batch statistics and moves the running ones by torch's momentum.
    One known difference: torch feeds the running variance the unbiased batch variance, Flax the
    biased one (a factor (n-1)/n on the batch term; it never enters a timed output)."""
    ref = reference_model("batchnorm2d").train()
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5), dtype=np.float32)
    state = {k: v.numpy().copy() for k, v in ref.state_dict().items()}
    with torch.no_grad():
        y_torch = ref(torch.from_numpy(x)).numpy()
    module = models.build("batchnorm2d")
    variables = convert.from_torchvision("batchnorm2d", state, models.abstract_variables(module, 5, 2))
    y, updated = module.apply(variables, models.to_nhwc(x), train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(np.asarray(y).transpose(0, 3, 1, 2), y_torch, rtol=1e-5, atol=1e-5)
    stats = updated["batch_stats"][models.LAYER]
    np.testing.assert_allclose(stats["mean"], ref.running_mean.numpy(), rtol=1e-6, atol=1e-6)
    n = x.size // x.shape[1]
    batch_var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(stats["var"], 0.9 * state["running_var"] + 0.1 * batch_var, rtol=1e-5)
    np.testing.assert_allclose(
        ref.running_var.numpy(), 0.9 * state["running_var"] + 0.1 * batch_var * n / (n - 1), rtol=1e-5
    )


@pytest.fixture(scope="module")
def resnet18_variables():
    return models.init_variables(models.build("resnet18"), image_size=32, batch=2, seed=0)


@pytest.mark.slow
def test_train_forward_updates_every_batch_stat(resnet18_variables):
    module, variables, x = models.build("resnet18"), resnet18_variables, IMAGES
    y, updated = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    assert y.shape == (2, 1000) and bool(jnp.isfinite(y).all())
    assert set(updated) == {"batch_stats"}
    before, after = jax.tree.leaves(variables["batch_stats"]), jax.tree.leaves(updated["batch_stats"])
    assert len(before) == len(after) == 2 * 20  # 20 BatchNorms in resnet18, mean and var each
    assert all(not np.allclose(a, b) for a, b in zip(before, after))


@pytest.mark.slow
def test_vgg_train_mode_drops_out_with_the_dropout_rng():
    module = models.build("vgg16")
    variables = models.init_variables(module, image_size=32, batch=1, seed=0)
    x = IMAGES[:1]
    with pytest.raises(InvalidRngError, match="dropout"):
        jax.eval_shape(lambda v, x: module.apply(v, x, train=True), variables, x)
    train = jax.jit(lambda v, x, key: module.apply(v, x, train=True, rngs={"dropout": key}))
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    assert np.array_equal(train(variables, x, k1), train(variables, x, k1))
    assert not np.array_equal(train(variables, x, k1), train(variables, x, k2))
    assert not np.array_equal(train(variables, x, k1), module.apply(variables, x, train=False))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_computes_in_dtype_with_fp32_params(dtype, resnet18_variables):
    variables, x = resnet18_variables, IMAGES
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {np.dtype(np.float32)}
    y32 = models.build("resnet18").apply(variables, x, train=False)
    y = models.build("resnet18", dtype).apply(variables, x, train=False)
    assert y.dtype == dtype
    rel = float(jnp.max(jnp.abs(y.astype(jnp.float32) - y32)) / jnp.max(jnp.abs(y32)))
    assert rel < 5e-2  # the same function, rounded: bf16 keeps 8 bits of mantissa


@pytest.mark.slow
def test_adaptive_pool_bins_as_torch():
    x = np.random.default_rng(0).standard_normal((2, 4, 10, 13), dtype=np.float32)
    for size in (1, 3, 7, 10, 13):
        want = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), (size, size)).numpy()
        got = np.asarray(models.adaptive_avg_pool(jnp.asarray(models.to_nhwc(x)), size))
        np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want, rtol=1e-6, atol=1e-6)


def test_vgg_first_dense_permutation():
    # torch flattens the pooled map as (C, H, W), NHWC as (H, W, C): the same product either way.
    rng = np.random.default_rng(0)
    c, out = 5, 3
    w = rng.standard_normal((out, c * 7 * 7))
    a = rng.standard_normal((c, 7, 7))
    k = convert.vgg_first_dense_kernel(w)
    np.testing.assert_allclose(a.transpose(1, 2, 0).reshape(-1) @ k, w @ a.reshape(-1))
    assert not np.allclose(a.transpose(1, 2, 0).reshape(-1) @ w.T, w @ a.reshape(-1))


def test_flax_path_joins_indices():
    assert convert.flax_path("layer1.0.downsample.1") == ("layer1_0", "downsample_1")
    assert convert.flax_path("features.10") == ("features_10",)
    assert convert.flax_path("") == ()


def _conv_state():
    w = np.zeros((64, 3, 3, 3), np.float32)
    return {"weight": w, "bias": np.zeros(64, np.float32)}


def test_conversion_fails_loudly():
    template = models.abstract_variables(models.build("conv3x3_s1"), 8, 1)
    converted = convert.from_torchvision("conv3x3_s1", _conv_state(), template)
    assert converted["params"][models.LAYER]["kernel"].shape == (3, 3, 3, 64)
    with pytest.raises(ValueError, match=r"^torch key weight: shape \(64, 3, 5, 5\)"):
        convert.from_torchvision("conv3x3_s1", {**_conv_state(), "weight": np.zeros((64, 3, 5, 5))}, template)
    extra = {**_conv_state(), "extra.bias": np.zeros(1)}
    with pytest.raises(ValueError, match=r"^torch key extra\.bias: the Flax model has no params/layer/extra/bias"):
        convert.from_torchvision("conv3x3_s1", extra, template)
    with pytest.raises(ValueError, match=r"1 Flax variables have no torch key, e\.g\. params/layer/bias"):
        convert.from_torchvision("conv3x3_s1", {"weight": _conv_state()["weight"]}, template)


@pytest.mark.slow
def test_jax_side_never_imports_torch():
    code = (
        "import sys; import pybench.backends.jax.models, pybench.backends.jax.convert, "
        "pybench.backends.jax.parity; assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_init_is_seeded():
    module = models.build("conv3x3_s1")
    a, b, c = (models.init_variables(module, 8, 1, seed) for seed in (0, 0, 1))
    kernel = lambda v: np.asarray(v["params"][models.LAYER]["kernel"])  # noqa: E731
    assert np.array_equal(kernel(a), kernel(b)) and not np.array_equal(kernel(a), kernel(c))
