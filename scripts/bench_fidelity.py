"""Fidelity: does the harness report what a plain hand-written loop measures?

    python scripts/bench_fidelity.py [--model resnet18] [--max-time 60]

The harness side is the real protocol (`protocol.measure` with its default stopping rule) driving the
real PyTorch backend through its Python sampler.  The hand side is the simplest timed loop anyone
would write, on a second copy of the same model (same seed, input, batch and threads).  The two are
interleaved iteration by iteration, because a shared machine's speed drifts by tens of percent
over minutes (seen here), and that drift would otherwise be mistaken for a harness bias.  The script
prints, for forward, backward and inference, harness median / hand-loop median.  Target: each
within 3% (0.97 .. 1.03).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pybench.backends.base import make_input
from pybench.backends.pytorch import PyTorchBackend, build_module
from pybench.protocol import PythonLoopSampler, measure
from pybench.spec import CellSpec, StopRule, available_cores


class HandLoop:
    """What a user would write: perf_counter around model(x), y.backward(g), and eval inference."""

    def __init__(self, spec: CellSpec) -> None:
        torch.manual_seed(spec.seed)
        self.model = build_module(spec.model)
        self.x = torch.from_numpy(make_input(spec))
        self.g = torch.ones(spec.batch_size, 1000)
        self.times: dict[str, list[float]] = {"forward": [], "backward": [], "inference": []}

    def train_iteration(self) -> None:
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        y = self.model(self.x)
        t1 = time.perf_counter()
        y.backward(self.g)
        t2 = time.perf_counter()
        self.times["forward"].append(t1 - t0)
        self.times["backward"].append(t2 - t1)

    def inference_iteration(self) -> None:
        self.model.eval()
        with torch.inference_mode():
            t0 = time.perf_counter()
            self.model(self.x)
            self.times["inference"].append(time.perf_counter() - t0)


class Interleaved(PythonLoopSampler):
    """The harness's own sampler, with one hand-loop iteration run just before each of its samples."""

    def __init__(self, backend: PyTorchBackend, hand: HandLoop) -> None:
        super().__init__(backend)
        self.hand = hand

    def train(self, n: int) -> list[tuple[int, int]]:
        out = []
        for _ in range(n):
            self.hand.train_iteration()
            out += super().train(1)
        return out

    def inference(self, n: int) -> list[int]:
        out = []
        for _ in range(n):
            self.hand.inference_iteration()
            out += super().inference(1)
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--max-time", type=float, default=StopRule.max_time)
    args = ap.parse_args()
    threads = available_cores()
    torch.set_num_threads(threads)
    spec = CellSpec("pytorch", args.model, "cpu", batch_size=8, image_size=224, threads=threads,
                    stop=StopRule(max_time=args.max_time))
    backend = PyTorchBackend(spec)
    backend.prepare()
    hand = HandLoop(spec)
    # Both see the same number of iterations; the first of each is warm-up on both sides.
    results = measure(Interleaved(backend, hand), spec.phases, spec.stop, gpu=False)
    print(f"{args.model} batch 8 224x224 cpu, {threads} threads")
    for phase in ("forward", "backward", "inference"):
        res = results[phase]
        hand_median = statistics.median(hand.times[phase][1:])
        print(f"{phase:9s} harness {res.summary.median * 1e3:8.2f} ms (n={res.summary.n:3d}, "
              f"{res.stop_reason})  hand loop {hand_median * 1e3:8.2f} ms  "
              f"ratio {res.summary.median / hand_median:.3f}")


if __name__ == "__main__":
    main()
