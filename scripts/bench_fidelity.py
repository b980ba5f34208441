"""Fidelity: does the harness report what a plain hand-written loop measures?

    python scripts/bench_fidelity.py --framework pytorch|jax [--model resnet18] [--max-time 60]
                                     [--batch-size 8] [--image-size 224] [--threads N]

The harness side is the real protocol (`protocol.measure`, default stopping rule) driving the real
backend's sampler.  The hand side is the loop a user of that framework writes, on a second copy of
the same model (same seed, input, labels, batch and threads):
- PyTorch: perf_counter around `model(x)`, `y.backward(ones)`, a `torch.optim.SGD` step and an eval
  forward under `inference_mode`;
- JAX: a jitted train-mode forward returning `jax.vjp`'s VJP, the jitted VJP application, a jitted
  optax step, a jitted eval forward, each followed by `block_until_ready` and compiled once before
  timing, on the same Flax model (`pybench.backends.jax.models`).
The two are interleaved iteration by iteration (one hand iteration right before each harness
sample), because a shared machine's speed drifts by tens of percent over minutes and separate runs
would measure the drift.  The time limit covers both loops.  Prints, per phase, harness median /
hand-loop median.  Target: every ratio within 3% (0.97 .. 1.03) at the default resnet18, batch 8,
224x224, every core.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable, Protocol

from pybench.cli.options import positive_float, positive_int
from pybench.machine.environment import available_cores
from pybench.errors import UserError
from pybench.protocol.phases import PHASES
from pybench.protocol.group import StopRule, measure
from pybench.protocol.sampling import Sampler
from pybench.records.spec import CellSpec
from pybench.protocol.workloads import WORKLOADS

TARGET = 0.03


class HandLoop(Protocol):
    times: dict[str, list[float]]  # seconds per iteration, by phase (derived phases included)

    def iteration(self, group: str) -> None: ...


def timed(times: dict[str, list[float]], steps: tuple[tuple[str, Callable[[], None]], ...]) -> None:
    """Run the steps back to back, appending each one's seconds; total is their sum when both train
    phases ran."""
    t0 = time.perf_counter()
    for name, run in steps:
        run()
        t1 = time.perf_counter()
        times[name].append(t1 - t0)
        t0 = t1
    if "backward" in dict(steps):
        times["total"].append(times["forward"][-1] + times["backward"][-1])


class TorchHandLoop:
    """What a PyTorch user writes, on its own copy of the model."""

    def __init__(self, spec: CellSpec) -> None:
        import torch

        from pybench.backends.base import SGD_LR, SGD_MOMENTUM, make_input, make_labels
        from pybench.backends.pytorch.backend import build_module
        from pybench.protocol.workloads import NUM_CLASSES

        torch.manual_seed(spec.seed)
        self.torch = torch
        self.model = build_module(spec.model)
        self.x = torch.from_numpy(make_input(spec))
        self.labels = torch.from_numpy(make_labels(spec))
        self.dy = torch.ones(spec.batch_size, NUM_CLASSES)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)
        self.times: dict[str, list[float]] = {p: [] for p in PHASES}
        self.y: Any = None

    def iteration(self, group: str) -> None:
        torch, model = self.torch, self.model
        if group == "train":
            model.train()
            model.zero_grad(set_to_none=True)
            timed(self.times, (("forward", self._forward), ("backward", self._backward)))
        elif group == "step":
            model.train()
            timed(self.times, (("step", self._step),))
        else:
            model.eval()
            with torch.inference_mode():
                timed(self.times, (("inference", lambda: model(self.x)),))

    def _forward(self) -> None:
        self.y = self.model(self.x)

    def _backward(self) -> None:
        self.y.backward(self.dy)
        self.y = None

    def _step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.torch.nn.functional.cross_entropy(self.model(self.x), self.labels).backward()
        self.optimizer.step()


class JaxHandLoop:
    """What a JAX user writes: four jitted functions, compiled before timing, block_until_ready."""

    def __init__(self, spec: CellSpec) -> None:
        import jax
        import jax.numpy as jnp
        import optax

        from pybench.backends.base import SGD_LR, SGD_MOMENTUM, make_input, make_labels
        from pybench.backends.jax import models
        from pybench.protocol.workloads import NUM_CLASSES

        module = models.build(spec.model, models.DTYPES[spec.dtype])
        variables = models.init_variables(module, spec.image_size, spec.batch_size, spec.seed)
        tx = optax.sgd(SGD_LR, momentum=SGD_MOMENTUM)
        # Inputs are arguments, as data is: a closed-over array would be a compile-time constant.
        # The rng is VGG's dropout key, as the backend passes it.
        self.x = jnp.asarray(models.to_nhwc(make_input(spec)))
        self.labels = jnp.asarray(make_labels(spec))
        self.rng = jax.random.PRNGKey(spec.seed)

        def train_apply(params, stats, x, rng):
            y, updates = module.apply({"params": params, "batch_stats": stats}, x, train=True,
                                      mutable=["batch_stats"], rngs={"dropout": rng})
            return y, updates.get("batch_stats", {})

        def forward(params, stats, x, rng):
            return jax.vjp(lambda p: train_apply(p, stats, x, rng), params, has_aux=True)

        def step(params, stats, opt_state, x, labels, rng):
            def loss(p):
                logits, new_stats = train_apply(p, stats, x, rng)
                onehot = jax.nn.one_hot(labels, NUM_CLASSES)
                return optax.softmax_cross_entropy(logits, onehot).mean(), new_stats

            (_, new_stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), new_stats, opt_state

        self.forward = jax.jit(forward)
        self.backward = jax.jit(lambda vjp, dy: vjp(dy))
        self.step = jax.jit(step, donate_argnums=(0, 1, 2))
        self.inference = jax.jit(lambda params, stats, x: module.apply(
            {"params": params, "batch_stats": stats}, x, train=False))
        self.block = jax.block_until_ready
        self.params, self.stats = variables["params"], variables.get("batch_stats", {})
        # Training steps update their own copy: the train and inference loops keep the initial one.
        copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731
        self.step_state = (copy(self.params), copy(self.stats), tx.init(self.params))
        # Compile everything before anything is timed (an expert's warm-up).
        self._forward()
        self.dy = jnp.ones_like(self.y)
        self._backward()
        self._step()
        self._inference()
        self.times: dict[str, list[float]] = {p: [] for p in PHASES}

    def iteration(self, group: str) -> None:
        if group == "train":
            timed(self.times, (("forward", self._forward), ("backward", self._backward)))
        elif group == "step":
            timed(self.times, (("step", self._step),))
        else:
            timed(self.times, (("inference", self._inference),))

    def _forward(self) -> None:
        self.y, self.vjp, self.stats = self.block(self.forward(self.params, self.stats, self.x, self.rng))

    def _backward(self) -> None:
        self.block(self.backward(self.vjp, self.dy))
        self.vjp = None

    def _step(self) -> None:
        self.step_state = self.block(self.step(*self.step_state, self.x, self.labels, self.rng))

    def _inference(self) -> None:
        self.block(self.inference(self.params, self.stats, self.x))


class Interleaved:
    """The backend's real sampler, with one hand-loop iteration right before each of its samples."""

    def __init__(self, inner: Sampler, hand: HandLoop) -> None:
        self.inner = inner
        self.hand = hand

    def sample(self, group: str, n: int) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for _ in range(n):
            self.hand.iteration(group)
            for phase, values in self.inner.sample(group, 1).items():
                out.setdefault(phase, []).extend(values)
        return out

    def finish(self, group: str) -> None:
        self.inner.finish(group)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", required=True, choices=("pytorch", "jax"))
    ap.add_argument("--model", default="resnet18", choices=list(WORKLOADS))
    ap.add_argument("--max-time", type=positive_float, default=60.0, help="seconds per cell, both loops")
    ap.add_argument("--batch-size", type=positive_int, default=8)
    ap.add_argument("--image-size", type=positive_int, default=224)
    ap.add_argument("--threads", type=positive_int, default=available_cores(), help="default: every core")
    args = ap.parse_args()
    if args.threads > available_cores():
        ap.error(f"--threads {args.threads} is more than the {available_cores()} cores available")

    from pybench.rounds.worker import pin_cores

    # Pinned before the framework starts its thread pools, as a worker is (XLA sizes its pool from
    # the cores it may use; PyTorch gets set_num_threads from the backend).
    cores = pin_cores(args.threads)
    try:
        spec = CellSpec(args.framework, args.model, "cpu", batch_size=args.batch_size,
                        image_size=args.image_size, threads=args.threads,
                        stop=StopRule(max_time=args.max_time))
    except UserError as exc:
        ap.error(str(exc))
    if args.framework == "pytorch":
        from pybench.backends.pytorch.backend import PyTorchBackend as backend_cls
        hand_cls: type = TorchHandLoop
    else:
        from pybench.backends.jax.backend import JaxBackend as backend_cls
        hand_cls = JaxHandLoop
    backend = backend_cls(spec)
    backend.prepare()
    hand = hand_cls(spec)
    result = measure(Interleaved(backend.sampler(), hand), spec.phases, spec.stop, gpu=False)

    print(f"fidelity: {args.framework} {backend.version()}, {args.model}, batch {args.batch_size}, "
          f"{args.image_size}x{args.image_size}, cpu, {args.threads} thread(s) on cores {cores}, "
          f"max-time {args.max_time:g} s")
    print(f"{'phase':10s} {'harness ms':>11s} {'n':>4s}  {'stop':15s} {'hand ms':>9s} {'ratio':>6s}")
    worst = 0.0
    for phase in spec.phases:
        samples = result.phases[phase]
        harness = statistics.median(samples.samples)
        hand_times = hand.times[phase][1:]  # the first pairs with the harness's first run
        own = statistics.median(hand_times)
        worst = max(worst, abs(harness / own - 1))
        print(f"{phase:10s} {harness * 1e3:11.2f} {len(samples.samples):4d}  {samples.stop_reason:15s} "
              f"{own * 1e3:9.2f} {harness / own:6.3f}")
    verdict = "within" if worst <= TARGET else "OUTSIDE"
    print(f"largest deviation {worst:.1%}: {verdict} the {TARGET:.0%} target")


if __name__ == "__main__":
    main()
