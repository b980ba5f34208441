"""Fidelity: does the harness report what a plain hand-written loop measures?

    python scripts/bench_fidelity.py [--model resnet18] [--iters 30]

Runs the cell through the real runner (worker process, full protocol), then times the same model,
batch and threads with the simplest loop anyone would write, in this process, and prints the ratio
harness/hand for forward, backward and inference.  Target: each within 3% (0.97 .. 1.03).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from pybench.backends.base import make_input
from pybench.runner import run_cell
from pybench.spec import CellSpec, available_cores


def hand_loop(spec: CellSpec, iters: int) -> dict[str, float]:
    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    model = getattr(torchvision.models, spec.model)(weights=None)
    x = torch.from_numpy(make_input(spec))
    g = torch.ones(spec.batch_size, 1000)
    fwd, bwd, inf = [], [], []
    model.train()
    for i in range(iters + 1):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        y = model(x)
        t1 = time.perf_counter()
        y.backward(g)
        t2 = time.perf_counter()
        if i:  # the first iteration is warm-up
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    model.eval()
    with torch.inference_mode():
        for i in range(iters + 1):
            t0 = time.perf_counter()
            model(x)
            if i:
                inf.append(time.perf_counter() - t0)
    return {"forward": statistics.median(fwd), "backward": statistics.median(bwd),
            "inference": statistics.median(inf)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--iters", type=int, default=30)
    args = ap.parse_args()
    spec = CellSpec("pytorch", args.model, "cpu", batch_size=8, image_size=224,
                    threads=available_cores())
    record = run_cell(spec)
    if record["status"] != "ok":
        raise SystemExit(f"harness cell failed: {record['error']}")
    hand = hand_loop(spec, args.iters)
    print(f"{args.model} batch 8 224x224 cpu, {spec.threads} threads")
    for phase, ref in hand.items():
        st = record["phases"][phase]["stats"]
        print(f"{phase:9s} harness {st['median'] * 1e3:8.2f} ms (n={st['n']:3d})  "
              f"hand loop {ref * 1e3:8.2f} ms  ratio {st['median'] / ref:.3f}")


if __name__ == "__main__":
    main()
