"""Flax (linen) models computing exactly torchvision's functions, in NHWC (the layout XLA prefers).

Call `module.apply(variables, x_nhwc, train=...)`. In train mode BatchNorm normalises with batch
statistics and updates the `batch_stats` collection (pass `mutable=["batch_stats"]`), and VGG's
dropout draws from the `dropout` rng (pass `rngs={"dropout": key}`); eval mode needs neither.

Submodules are named after torchvision's state_dict paths, an index joined to the name before it
("layer1.0.downsample.1" -> layer1_0/downsample_1, "features.3" -> features_3): convert.py relies
on it. Parameters are always float32; `dtype` is the computation dtype, that of the output too.
This module never imports torch (the JAX worker must not).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pybench.protocol.workloads import NUM_CLASSES, Workload, get_workload

DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16, "fp16": jnp.float16}
# Flax keeps momentum * old + (1 - momentum) * batch: torch's momentum=0.1 is flax's 0.9.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
VGG_POOL = 7  # torchvision's AdaptiveAvgPool2d((7, 7)) before the classifier
VGG_DROPOUT = 0.5
LAYER = "layer"  # the submodule of a per-layer workload (torch's bare layer has no prefix)

# depth -> (bottleneck blocks, blocks per stage)
RESNET_STAGES = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
}
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_VGG19 = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"
)
VGG_CONFIGS = {16: _VGG16, 19: _VGG19}


def _conv(features: int, kernel: int, stride: int, pad: int, bias: bool, dtype: Any, name: str) -> nn.Conv:
    # Explicit symmetric padding, as torch pads; "SAME" would pad asymmetrically at stride 2.
    return nn.Conv(
        features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
        use_bias=bias, dtype=dtype, param_dtype=jnp.float32, name=name,
    )


def _bn(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
    # Two-pass variance, as torch computes it: E[x^2]-E[x]^2 loses digits on large activations.
    return nn.BatchNorm(
        use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
        use_fast_variance=False, dtype=dtype, param_dtype=jnp.float32, name=name,
    )


def _dense(features: int, dtype: Any, name: str) -> nn.Dense:
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, name=name)


def _pool_pad(kernel: int) -> tuple[tuple[int, int], tuple[int, int]]:
    return ((kernel // 2, kernel // 2),) * 2


def adaptive_avg_pool(x: jax.Array, size: int) -> jax.Array:
    """torch's AdaptiveAvgPool2d(size) on NHWC: output bin i averages input rows
    floor(i*H/size) to ceil((i+1)*H/size) (exclusive), so bins overlap or repeat when H is not a
    multiple of size. The bins are rectangles, so pooling rows then columns is the same mean."""

    def along(x: jax.Array, axis: int) -> jax.Array:
        n = x.shape[axis]
        if n == size:
            return x
        bounds = [((i * n) // size, -(-(i + 1) * n // size)) for i in range(size)]  # floor, ceil
        bins = [jax.lax.slice_in_dim(x, lo, hi, axis=axis).mean(axis, keepdims=True) for lo, hi in bounds]
        return jnp.concatenate(bins, axis=axis)

    return along(along(x, 1), 2)


def _nhwc_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], *shape[2:], shape[1]) if len(shape) == 4 else shape


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """An NCHW batch as NHWC (a dense layer's (N, features) input is returned unchanged)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


class Model(nn.Module):
    """A workload's model; `workload` says which, `dtype` is the computation dtype."""

    workload: Workload
    dtype: Any = jnp.float32

    def input_shape(self, batch: int, image_size: int) -> tuple[int, ...]:
        """NHWC for images, (N, features) for a dense layer."""
        return _nhwc_shape(self.workload.input_shape(batch, image_size))


def _shortcut(x: jax.Array, features: int, stride: int, needed: bool, train: bool, dtype: Any) -> jax.Array:
    """torchvision's downsample (1x1 conv + BN) when shape changes, else identity."""
    if not needed:
        return x
    return _bn(train, dtype, "downsample_1")(_conv(features, 1, stride, 0, False, dtype, "downsample_0")(x))


class BasicBlock(nn.Module):
    planes: int
    stride: int
    downsample: bool
    dtype: Any
    expansion = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        p, dt = self.planes, self.dtype
        y = nn.relu(_bn(train, dt, "bn1")(_conv(p, 3, self.stride, 1, False, dt, "conv1")(x)))
        y = _bn(train, dt, "bn2")(_conv(p, 3, 1, 1, False, dt, "conv2")(y))
        return nn.relu(y + _shortcut(x, p, self.stride, self.downsample, train, dt))


class Bottleneck(nn.Module):
    """ResNet v1.5: the stride is on the 3x3 convolution, as in torchvision."""

    planes: int
    stride: int
    downsample: bool
    dtype: Any
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        p, dt = self.planes, self.dtype
        y = nn.relu(_bn(train, dt, "bn1")(_conv(p, 1, 1, 0, False, dt, "conv1")(x)))
        y = nn.relu(_bn(train, dt, "bn2")(_conv(p, 3, self.stride, 1, False, dt, "conv2")(y)))
        y = _bn(train, dt, "bn3")(_conv(p * self.expansion, 1, 1, 0, False, dt, "conv3")(y))
        return nn.relu(y + _shortcut(x, p * self.expansion, self.stride, self.downsample, train, dt))


class ResNet(Model):
    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        dt = self.dtype
        bottleneck, stages = RESNET_STAGES[self.workload.depth]
        block = Bottleneck if bottleneck else BasicBlock
        x = jnp.asarray(x, dt)
        x = nn.relu(_bn(train, dt, "bn1")(_conv(64, 7, 2, 3, False, dt, "conv1")(x)))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=_pool_pad(3))  # pads with -inf, as torch
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), stages), start=1):
            for j in range(blocks):
                stride = 2 if i > 1 and j == 0 else 1
                downsample = stride != 1 or inplanes != planes * block.expansion
                x = block(planes, stride, downsample, dt, name=f"layer{i}_{j}")(x, train)
                inplanes = planes * block.expansion
        x = x.mean(axis=(1, 2))
        return _dense(NUM_CLASSES, dt, "fc")(x)


class VGG(Model):
    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        dt = self.dtype
        x = jnp.asarray(x, dt)
        i = 0  # index in torchvision's `features`: conv, [bn,] relu, or max pool
        for v in VGG_CONFIGS[self.workload.depth]:
            if v == "M":
                x = nn.max_pool(x, (2, 2), (2, 2))
                i += 1
                continue
            x = _conv(v, 3, 1, 1, True, dt, f"features_{i}")(x)  # torchvision keeps the bias under BN
            if self.workload.batchnorm:
                x = _bn(train, dt, f"features_{i + 1}")(x)
            x = nn.relu(x)
            i += 3 if self.workload.batchnorm else 2
        # Flattened (H, W, C); torch flattens (C, H, W): convert.py permutes classifier_0 to match.
        x = adaptive_avg_pool(x, VGG_POOL).reshape(x.shape[0], -1)
        for idx in (0, 3):  # Linear, ReLU, Dropout twice
            x = nn.relu(_dense(4096, dt, f"classifier_{idx}")(x))
            x = nn.Dropout(VGG_DROPOUT, deterministic=not train)(x)
        return _dense(NUM_CLASSES, dt, "classifier_6")(x)


class Layer(Model):
    """One layer of the per-layer suite, as pybench.backends.pytorch builds it in torch."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        w, dt = self.workload, self.dtype
        x = jnp.asarray(x, dt)
        k, s = (w.kernel, w.kernel), (w.stride, w.stride)
        if w.family == "conv":
            return _conv(w.channels[1], w.kernel, w.stride, w.kernel // 2, True, dt, LAYER)(x)
        if w.family == "maxpool":
            return nn.max_pool(x, k, s, padding=_pool_pad(w.kernel))
        if w.family == "meanpool":  # torch's AvgPool2d default divides by the full window
            return nn.avg_pool(x, k, s, padding=_pool_pad(w.kernel), count_include_pad=True)
        if w.family == "batchnorm":
            return _bn(train, dt, LAYER)(x)
        if w.family == "dense":
            return _dense(w.channels[1], dt, LAYER)(x)
        raise ValueError(f"no Flax layer for family {w.family!r}")


def build(workload_name: str, dtype: Any = jnp.float32) -> Model:
    """The Flax module of a workload, computing in `dtype` with float32 parameters."""
    w = get_workload(workload_name)
    cls = Layer if w.is_layer else {"resnet": ResNet, "vgg": VGG}[w.family]
    return cls(workload=w, dtype=dtype)


def _input(module: Model, image_size: int, batch: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(module.input_shape(batch, image_size), jnp.float32)


def abstract_variables(module: Model, image_size: int, batch: int) -> dict:
    """The variables' shapes and dtypes (jax.ShapeDtypeStruct leaves), allocating nothing."""
    init = functools.partial(module.init, train=False)
    return jax.eval_shape(init, jax.random.PRNGKey(0), _input(module, image_size, batch))


def init_variables(module: Model, image_size: int, batch: int, seed: int) -> dict:
    """Freshly initialised {"params", "batch_stats" (where BatchNorm)} from PRNGKey(seed)."""
    # lazy_init runs only the initialisers, never the forward pass init would trace.
    return module.lazy_init(jax.random.PRNGKey(seed), _input(module, image_size, batch), train=False)


def param_count(variables: dict) -> int:
    """Number of parameters (not BatchNorm statistics); arrays or abstract shapes alike."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables.get("params", {})))


def count_params(workload_name: str) -> int:
    """A workload's parameter count without allocating weights (independent of image size)."""
    w = get_workload(workload_name)
    return param_count(abstract_variables(build(workload_name), w.min_image_size, 1))
