"""The PyTorch backend on small shapes: real models, real autograd, a real optimizer step."""

import pytest
import torch

from pybench.backends.base import make_labels
from pybench.backends.pytorch.backend import PyTorchBackend, count_params
from pybench.records.spec import CellSpec


def backend(model="resnet18", **kw):
    spec = CellSpec("pytorch", model, "cpu", batch_size=kw.pop("batch_size", 2),
                    image_size=kw.pop("image_size", 64), threads=1, **kw)
    b = PyTorchBackend(spec)
    facts = b.prepare()
    return b, facts, b.sampler()


def test_train_group_does_what_the_readme_says():
    b, facts, sampler = backend()
    assert facts.params == count_params("resnet18") == 11_689_512
    out = sampler.sample("train", 1)
    assert set(out) == {"forward", "backward"}
    assert b.module.training
    g1 = b.module.fc.weight.grad.clone()
    # The backward seed is all ones of the output's shape, made by the first (excluded) iteration.
    assert torch.equal(b.grad_out, torch.ones(2, 1000))
    sampler.sample("train", 1)
    # Cleared before every iteration: the same weights and input give the same gradient again.
    assert torch.allclose(b.module.fc.weight.grad, g1, rtol=1e-4, atol=1e-6)
    sampler.finish("train")
    assert b.module.fc.weight.grad is None  # released before the next group's memory window


def test_step_is_a_full_sgd_momentum_update_on_seeded_labels():
    b, _, sampler = backend()
    before = b.module.fc.weight.detach().clone()
    sampler.sample("step", 2)
    opt = b.optimizer
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["momentum"] == 0.9
    assert not torch.equal(before, b.module.fc.weight)  # the weights moved
    assert torch.equal(b.labels, torch.from_numpy(make_labels(b.spec)))
    assert b.labels.min() >= 0 and b.labels.max() < 1000
    sampler.finish("step")
    assert b.optimizer is None and b.module.fc.weight.grad is None


def test_inference_records_no_graph():
    b, _, sampler = backend()
    calls = []
    b.module.fc.register_forward_hook(lambda m, i, o: calls.append((o.requires_grad, torch.is_inference(o))))
    sampler.sample("inference", 1)
    assert calls == [(False, True)] and not b.module.training


def test_weights_are_seeded():
    b1, _, _ = backend(seed=3)
    b2, _, _ = backend(seed=3)
    assert torch.equal(b1.module.conv1.weight, b2.module.conv1.weight)


@pytest.mark.parametrize("kw", [{"dtype": "bf16"}, {"channels_last": True}])
def test_variants_run(kw):
    b, _, sampler = backend(**kw)
    b._zero_grad()
    b._forward()
    if "dtype" in kw:
        assert b.y.dtype == torch.bfloat16
    else:
        assert b.x.is_contiguous(memory_format=torch.channels_last)
    b._backward()
    for group in ("step", "inference"):
        sampler.sample(group, 1)


def test_channels_last_layer_input_stays_a_leaf_whose_gradient_is_cleared():
    b, _, sampler = backend("conv3x3_s1", batch_size=1, image_size=32, channels_last=True)
    assert b.x.is_leaf and b.x.is_contiguous(memory_format=torch.channels_last)
    sampler.sample("train", 2)
    assert b.x.grad is not None
    sampler.finish("train")
    assert b.x.grad is None


def test_pooling_layer_backward_reaches_the_input():
    b, facts, sampler = backend("maxpool3x3_s2", batch_size=1, image_size=32)
    assert facts.params == 0
    sampler.sample("train", 1)
    assert b.x.grad is not None and b.x.grad.shape == (1, 3, 32, 32)
