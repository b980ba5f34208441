"""JAX on the CPU: which of the JAX backend's choices cost time, against PyTorch in the same process.

    python scripts/bench_jax_cpu_variants.py [--model resnet18] [--image-size 64] [--batch-size 8]
                                             [--threads 1] [--iterations 8]

One process, pinned to `--threads` cores before JAX starts (as a worker is), holds several compiled
variants of the JAX training step (loss, gradient, optax SGD with momentum) and eval forward, and
PyTorch's, and runs them interleaved, one iteration of each per round in a shuffled order, so the
machine's drift hits every variant alike.  Each variant's figure is the median over rounds of its
time divided by the backend variant's in the same round, with the quartiles of that ratio.
Variants, each one change from the backend's choices:
- backend: as `pybench.backends.jax` runs it (matmul precision "highest", BatchNorm's two-pass
  variance, dropout rng passed, step buffers donated); "backend (control)" is a second copy, whose
  ratio shows the noise floor;
- precision default: `jax_default_matmul_precision` left at its default;
- fast variance: BatchNorm with `use_fast_variance=True` (E[x^2] - E[x]^2, Flax's default);
- no donation: the step without `donate_argnums`;
- ynn convs off: XLA:CPU compiles convolutions without YNNPACK (`xla_cpu_experimental_ynn_fusion_type`
  left at individual dots only).
Nothing here is a target.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from contextlib import nullcontext
from typing import Any, Callable
from unittest import mock

from pybench.cli.options import positive_int
from pybench.machine.environment import available_cores
from pybench.protocol.workloads import WORKLOADS

YNN_DOTS_ONLY = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def jax_variants(model: str, image_size: int, batch: int) -> dict[str, dict[str, Callable[[], Any]]]:
    """name -> {"step": run one step, "inference": run one eval forward}, compiled, each blocking."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    from pybench.backends.base import SGD_LR, SGD_MOMENTUM, make_input, make_labels
    from pybench.backends.jax import models
    from pybench.records.spec import CellSpec
    from pybench.protocol.workloads import NUM_CLASSES

    spec = CellSpec("jax", model, "cpu", batch_size=batch, image_size=image_size, threads=1)
    x = jnp.asarray(models.to_nhwc(make_input(spec)))
    labels = jnp.asarray(make_labels(spec))
    rng = jax.random.PRNGKey(0)
    tx = optax.sgd(SGD_LR, momentum=SGD_MOMENTUM)

    def fast_bn(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
        return nn.BatchNorm(use_running_average=not train, momentum=models.BN_MOMENTUM,
                            epsilon=models.BN_EPSILON, use_fast_variance=True, dtype=dtype,
                            param_dtype=jnp.float32, name=name)

    def build(precision: str | None, fast_variance: bool, donate: bool, options: dict) -> dict:
        module = models.build(model)
        variables = models.init_variables(module, image_size, batch, 0)
        params, stats = variables["params"], variables.get("batch_stats", {})

        def step(params, stats, opt_state, x, labels, rng):
            def loss(p):
                logits, updates = module.apply({"params": p, "batch_stats": stats}, x, train=True,
                                               mutable=["batch_stats"], rngs={"dropout": rng})
                onehot = jax.nn.one_hot(labels, NUM_CLASSES)
                return optax.softmax_cross_entropy(logits, onehot).mean(), updates.get("batch_stats", {})

            (_, new_stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), new_stats, opt_state

        def inference(params, stats, x):
            return module.apply({"params": params, "batch_stats": stats}, x, train=False)

        state = [params, stats, tx.init(params)]
        # Tracing happens in lower(): the precision and BatchNorm choices apply there.
        with (jax.default_matmul_precision(precision) if precision else nullcontext()), \
                (mock.patch.object(models, "_bn", fast_bn) if fast_variance else nullcontext()):
            step_c = jax.jit(step, donate_argnums=(0, 1, 2) if donate else ()).lower(
                *state, x, labels, rng).compile(compiler_options=options)
            inf_c = jax.jit(inference).lower(params, stats, x).compile(compiler_options=options)
        frozen = jax.tree.map(jnp.copy, (params, stats))  # the step donates its own copies

        def run_step() -> None:
            state[:] = jax.block_until_ready(step_c(*state, x, labels, rng))

        return {"step": run_step, "inference": lambda: jax.block_until_ready(inf_c(*frozen, x))}

    return {
        "backend": build("highest", False, True, {}),
        "backend (control)": build("highest", False, True, {}),
        "precision default": build(None, False, True, {}),
        "fast variance": build("highest", True, True, {}),
        "no donation": build("highest", False, False, {}),
        "ynn convs off": build("highest", False, True, YNN_DOTS_ONLY),
    }


def torch_variant(model: str, image_size: int, batch: int, threads: int) -> dict[str, Callable[[], Any]]:
    import torch

    from pybench.backends.base import SGD_LR, SGD_MOMENTUM, make_input, make_labels
    from pybench.backends.pytorch.backend import build_module
    from pybench.records.spec import CellSpec

    torch.set_num_threads(threads)
    spec = CellSpec("pytorch", model, "cpu", batch_size=batch, image_size=image_size, threads=threads)
    torch.manual_seed(0)
    net = build_module(model)
    x, labels = torch.from_numpy(make_input(spec)), torch.from_numpy(make_labels(spec))
    opt = torch.optim.SGD(net.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)

    def step() -> None:
        net.train()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), labels).backward()
        opt.step()

    def inference() -> None:
        net.eval()
        with torch.inference_mode():
            net(x)

    return {"step": step, "inference": inference}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18", choices=list(WORKLOADS))
    ap.add_argument("--image-size", type=positive_int, default=64)
    ap.add_argument("--batch-size", type=positive_int, default=8)
    ap.add_argument("--threads", type=positive_int, default=1)
    ap.add_argument("--iterations", type=positive_int, default=8)
    args = ap.parse_args()
    if args.threads > available_cores():
        ap.error(f"--threads {args.threads} is more than the {available_cores()} cores available")

    from pybench.rounds.worker import pin_cores

    cores = pin_cores(args.threads)  # before JAX sizes its thread pool
    t0 = time.monotonic()
    variants = jax_variants(args.model, args.image_size, args.batch_size)
    variants["PyTorch (reference)"] = torch_variant(args.model, args.image_size, args.batch_size,
                                                    args.threads)
    print(f"{args.model}, batch {args.batch_size}, {args.image_size}x{args.image_size}, cpu, cores {cores}; "
          f"compiled in {time.monotonic() - t0:.0f} s; {args.iterations} interleaved iterations")
    phases = ("step", "inference")
    times: dict[str, dict[str, list[float]]] = {v: {p: [] for p in phases} for v in variants}
    order = list(variants)
    for i in range(args.iterations + 1):  # the first round is warm-up, dropped
        random.Random(i).shuffle(order)
        for name in order:
            for phase in phases:
                t = time.perf_counter()
                variants[name][phase]()
                if i:
                    times[name][phase].append(time.perf_counter() - t)
    print(f"{'variant':22s}" + "".join(f"{p + ' ms':>14s} {'/ backend [quartiles]':>24s}" for p in phases))
    for name, by_phase in times.items():
        line = f"{name:22s}"
        for p in phases:
            ratios = [t / b for t, b in zip(by_phase[p], times["backend"][p])]
            q1, q2, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
            line += f"{statistics.median(by_phase[p]) * 1e3:14.1f} {q2:9.2f} [{q1:.2f}, {q3:.2f}]".ljust(39)
        print(line)


if __name__ == "__main__":
    main()
