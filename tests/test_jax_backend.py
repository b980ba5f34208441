"""The JAX backend on small shapes: jitted phases traced once, real VJPs, a real optax step, and a
worker that never imports torch."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pybench.backends.jax.backend import JaxBackend
from pybench.protocol.group import StopRule
from pybench.rounds.runner import run_cell
from pybench.records.spec import CellSpec


def backend(model="resnet18", **kw):
    spec = CellSpec("jax", model, "cpu", batch_size=kw.pop("batch_size", 2),
                    image_size=kw.pop("image_size", 32), threads=1, **kw)
    b = JaxBackend(spec)
    facts = b.prepare()
    return b, facts, b.sampler()


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow
def test_every_phase_is_traced_once_however_often_it_runs():
    b, facts, sampler = backend()
    assert facts.params == 11_689_512
    assert "XLA" in facts.notes[0]  # 32 px on the CPU: the record says what such a row measures
    for group in ("train", "step", "inference"):
        for _ in range(3):
            out = sampler.sample(group, 2)
            assert all(len(v) == 2 and min(v) > 0 for v in out.values())
        sampler.finish(group)
    assert dict(b.traces) == {"forward": 1, "backward": 1, "step": 1, "inference": 1}


@pytest.mark.slow
def test_forward_updates_running_statistics_and_backward_gives_parameter_gradients():
    b, _, _ = backend()
    before = b.stats
    b._forward()
    b.synchronize()
    assert b.y.shape == (2, 1000) and not leaves_equal(before, b.stats)
    b._backward()
    (grads,) = b.pending
    assert jax.tree.structure(grads) == jax.tree.structure(b.params)
    assert jnp.array_equal(b.dy, jnp.ones((2, 1000)))  # the all-ones seed, made by the first run


def test_layers_differentiate_the_input_too():
    b, facts, _ = backend("maxpool3x3_s2", batch_size=1)
    assert facts.params == 0
    b._forward()
    b._backward()
    _, dx = b.pending
    assert dx.shape == (1, 32, 32, 3)  # NHWC, the layout XLA prefers


@pytest.mark.slow
def test_step_updates_the_weights_with_sgd_momentum():
    b, _, sampler = backend()
    first = jax.tree.map(np.asarray, b.params)
    sampler.sample("step", 2)
    assert not leaves_equal(first, b.params)
    momentum = b.opt_state[0].trace  # optax.sgd(momentum=0.9) keeps a trace per parameter
    assert jax.tree.structure(momentum) == jax.tree.structure(b.params)
    sampler.finish("step")
    assert b.opt_state is None


@pytest.mark.slow
@pytest.mark.parametrize("dtype, expected", [("bf16", jnp.bfloat16), ("fp16", jnp.float16)])
def test_reduced_precision_computes_in_that_dtype_with_fp32_parameters(dtype, expected):
    b, _, _ = backend(dtype=dtype)
    b._inference()
    assert b.pending.dtype == expected
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(b.params))


PROBE = ("import sys, json; from pybench.records.spec import CellSpec; from pybench.rounds.worker import run_round; "
         "rec = run_round(CellSpec.from_json(json.load(sys.stdin)['spec'])); "
         "rec.framework_env['modules'] = sorted(m for m in ('torch', 'jax', 'juliacall') if m in sys.modules); "
         "print(json.dumps(rec.to_json()))")


@pytest.mark.slow
@pytest.mark.parametrize("framework, absent", [("jax", "torch"), ("pytorch", "jax")])
def test_a_worker_imports_its_own_framework_only(framework, absent):
    spec = CellSpec(framework, "resnet18", "cpu", 1, 32, threads=1, phases=("inference",),
                    stop=StopRule(precision=0.5, max_time=1))
    rec = run_cell(spec, command=[sys.executable, "-c", PROBE])
    assert rec.ok, rec.error
    assert absent not in rec.framework_env["modules"] and rec.framework_env["modules"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet18", "vgg16_bn"])
def test_parity_through_the_command_line(model):
    from processes import pybench

    p = pybench("parity", "--framework", "jax", "--model", model, "--image-size", "32", "--batch-size", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "True" in p.stdout and "JAX vs PyTorch" in p.stdout


def test_parity_refuses_the_reference_itself():
    from processes import pybench

    p = pybench("parity", "--framework", "pytorch", "--model", "resnet18")
    assert p.returncode == 2 and "use --framework jax|flux" in p.stderr
