"""The registry, the spec and its validation."""

import numpy as np
import pytest

from pybench.backends.base import make_input
from pybench.errors import UserError
from pybench.records.spec import CellSpec
from pybench.protocol.workloads import LAYERS, WORKLOADS, get_workload, resolve_models


def test_registry_is_the_seeds_nine_models_in_order():
    assert list(WORKLOADS) == ["vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "resnet18", "resnet34",
                               "resnet50", "resnet101", "resnet152"]
    assert [w.name for w in resolve_models(["all"])] == list(WORKLOADS)
    assert [w.name for w in resolve_models(["layers"])] == list(LAYERS)
    assert [w.name for w in resolve_models(["resnet50", "vgg16", "resnet50"])] == ["resnet50", "vgg16"]


def test_default_batch_follows_the_seed():
    assert get_workload("resnet101").default_batch("cuda:0") == 4
    assert get_workload("resnet152").default_batch("cuda:1") == 4
    assert get_workload("resnet152").default_batch("cpu") == 8
    assert get_workload("resnet50").default_batch("cuda:0") == 8
    assert get_workload("dense1024_512").default_batch("cpu") == 1


def test_layers_have_no_inference_column_and_their_own_input_shapes():
    assert get_workload("conv3x3_s1").phases == ("forward", "backward", "total")
    assert get_workload("resnet18").phases == ("forward", "backward", "total", "inference", "step")
    assert get_workload("dense1024_512").input_shape(1, 224) == (1, 1024)
    assert get_workload("batchnorm2d").input_shape(1, 224) == (1, 3, 224, 224)


def test_input_is_seeded_float32_of_the_spec_shape():
    spec = CellSpec("pytorch", "resnet18", "cpu", batch_size=2, image_size=64, threads=1, seed=7)
    x = make_input(spec)
    assert x.dtype == np.float32 and x.shape == (2, 3, 64, 64)
    assert np.array_equal(x, make_input(CellSpec("flux", "resnet18", "cpu", 2, 64, threads=1, seed=7)))
    assert not np.array_equal(x, make_input(CellSpec("pytorch", "resnet18", "cpu", 2, 64, threads=1)))


def test_spec_round_trips_through_json_and_has_one_identity():
    spec = CellSpec("pytorch", "vgg16", "cuda:0", 8, 224, dtype="bf16", channels_last=True, threads=2,
                    device_name="NVIDIA H200", label="box")
    again = CellSpec.from_json(spec.to_json())
    assert again == spec and again.key == spec.key
    assert spec.key.variant == "bf16, channels-last"
    flux = CellSpec("flux", "vgg16", "cuda:0", 8, 224, dtype="bf16", threads=2, device_name="NVIDIA H200",
                    label="box")
    # Side by side in one table (same cell), never the same row.
    assert flux.key.cell == spec.key.cell and flux.key != spec.key
    for change in ({"threads": 1}, {"tf32": True}, {"label": "other"}, {"device_name": "NVIDIA A100"},
                   {"batch_size": 4}, {"image_size": 112}, {"dtype": "fp32"}):
        other = CellSpec(**{**flux.to_json(), "stop": flux.stop, "phases": flux.phases, **change})
        assert other.key.cell != flux.key.cell, change


@pytest.mark.parametrize("kw, message", [
    ({"batch_size": 0}, "batch size must be at least 1 and at most 65536, got 0"),
    ({"image_size": 0}, "image size must be at least 1 and at most 16384, got 0"),
    ({"image_size": 31}, "too small for resnet18"),
    ({"dtype": "int8"}, "unknown dtype"),
    ({"threads": 0}, "threads must be at least 1 and at most 4096, got 0"),
    ({"model": "lenet"}, "unknown model 'lenet'"),
    ({"seed": -1}, "seed must be at least 0 and at most 4294967295, got -1"),
    ({"phases": ("forward", "warp")}, "unknown phase 'warp'"),
])
def test_spec_validation(kw, message):
    base = dict(framework="pytorch", model="resnet18", device="cpu", batch_size=2, image_size=64,
                threads=1)
    with pytest.raises(UserError, match=message):
        CellSpec(**{**base, **kw})
