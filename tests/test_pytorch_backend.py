"""The PyTorch backend on small shapes: real models, real autograd."""

import pytest
import torch

from pybench.backends.pytorch import PyTorchBackend, count_params
from pybench.spec import CellSpec


def backend(model="resnet18", **kw):
    spec = CellSpec("pytorch", model, "cpu", batch_size=kw.pop("batch_size", 2),
                    image_size=kw.pop("image_size", 64), threads=1, **kw)
    b = PyTorchBackend(spec)
    info = b.prepare()
    return b, info


def test_phases_do_what_the_readme_says():
    b, info = backend()
    assert info["params"] == count_params("resnet18") == 11_689_512
    b.zero_grad()
    b.forward()
    assert b.module.training and b.y.requires_grad and b.y.shape == (2, 1000)
    b.backward()
    g1 = b.module.fc.weight.grad.clone()
    b.zero_grad()
    assert b.module.fc.weight.grad is None  # cleared: nothing accumulates across iterations
    b.forward()
    b.backward()
    # Same weights, same input: the same gradient again (BN batch statistics are recomputed).
    assert torch.allclose(b.module.fc.weight.grad, g1, rtol=1e-4, atol=1e-6)
    # The backward seed is all ones of the output's shape.
    assert torch.equal(b.grad_out, torch.ones(2, 1000))
    b.inference()
    assert not b.module.training


def test_inference_records_no_graph():
    b, _ = backend()
    calls = []
    b.module.fc.register_forward_hook(lambda m, i, o: calls.append((o.requires_grad, torch.is_inference(o))))
    b.inference()
    assert calls == [(False, True)]


def test_weights_are_seeded():
    b1, _ = backend(seed=3)
    b2, _ = backend(seed=3)
    assert torch.equal(b1.module.conv1.weight, b2.module.conv1.weight)


@pytest.mark.parametrize("kw", [{"dtype": "bf16"}, {"channels_last": True}])
def test_variants_run(kw):
    b, _ = backend(**kw)
    b.zero_grad()
    b.forward()
    if "dtype" in kw:
        assert b.y.dtype == torch.bfloat16
    else:
        assert b.x.is_contiguous(memory_format=torch.channels_last)
    b.backward()
    b.inference()


def test_pooling_layer_backward_reaches_the_input():
    b, info = backend("maxpool3x3_s2", batch_size=1, image_size=32)
    assert info["params"] == 0
    b.zero_grad()
    b.forward()
    b.backward()
    assert b.x.grad is not None and b.x.grad.shape == (1, 3, 32, 32)
