"""Synthetic typed records and results documents for the reporting tests: no torch needed."""

from __future__ import annotations

from pathlib import Path

from pybench.protocol.group import PhaseSamples
from pybench.records.record import CellRecord
from pybench.records.round import Round, WorkloadFacts
from pybench.records.results import ResultsDoc
from pybench.records.spec import CellSpec

VERSIONS = {"pytorch": ("PyTorch", "2.14.1"), "flux": ("Flux", "0.16.3"), "jax": ("JAX", "0.10.2")}
GPU = "NVIDIA H200"
CPU = "AMD EPYC 9654 96-Core Processor"
# Nine samples around the median: the middle one is the median, the first 1% below it.  Tight enough
# (±0.75% at 95%) that a cell is precise; `noisy` widens it tenfold.
OFFSETS = (-0.01, -0.0075, -0.005, -0.0025, 0.0, 0.0025, 0.005, 0.0075, 0.01)


def spread(median: float, noisy: bool = False) -> list[float]:
    scale = 10 if noisy else 1
    return [median * (1 + scale * o) for o in OFFSETS]


def record(framework: str, model: str, medians: dict[str, float] | None = None, *,
           device: str = "cuda:0", batch: int = 8, image: int = 224, dtype: str = "fp32",
           threads: int = 16, params: int = 1000, noisy: tuple[str, ...] = (), label: str = "box",
           error: str | None = None, samples: dict[str, list[float]] | None = None,
           rounds: list[dict[str, list[float]]] | None = None, channels_last: bool = False,
           first_run: float | None = None) -> CellRecord:
    """One record; phases from `medians` (nine-sample spread), raw `samples` (one round) or
    `rounds` (phase -> samples per round); failed with `error`.  Rounds are numbered in one run, so
    records made here pair as if measured side by side."""
    raw_rounds = rounds or [samples or {p: spread(m, p in noisy) for p, m in (medians or {}).items()}]
    phases = tuple(raw_rounds[0]) or ("forward", "backward", "total", "inference")
    spec = CellSpec(framework=framework, model=model, device=device, batch_size=batch, image_size=image,
                    device_name=GPU if device.startswith("cuda") else CPU, label=label, dtype=dtype,
                    threads=threads, phases=phases, channels_last=channels_last)
    name, version = VERSIONS[framework]
    if error is not None:
        return CellRecord(spec=spec, status="failed", title=name, error=error)
    return CellRecord(
        spec=spec, status="ok", title=f"{name} {version}", workload=WorkloadFacts(params=params),
        framework_env={"threads": threads},
        rounds=[Round(phases={p: PhaseSamples(first_run=first_run or 10 * max(s), warmup=[], samples=list(s),
                                              stop_reason="converged")
                              for p, s in r.items()}, number=i + 1, run="synthetic")
                for i, r in enumerate(raw_rounds)],
        wall_time=1.0,
    )


def results_file(records: list[CellRecord], created: str = "2025-01-01T12:00:00+0000",
                 cores: int = 16) -> ResultsDoc:
    env = {"label": "box", "hostname": "box", "cpu": CPU, "cores_logical": cores,
           "cores_available": cores, "gpus": [{"index": 0, "name": GPU}], "threads": cores}
    return ResultsDoc(path=Path("synthetic.json"), created=created, environment=env, records=records)


def train(fwd: float, bwd: float, inf: float | None = None) -> dict[str, float]:
    """Phase medians with total = forward + backward, as the protocol defines it."""
    out = {"forward": fwd, "backward": bwd, "total": fwd + bwd}
    return out if inf is None else {**out, "inference": inf}
