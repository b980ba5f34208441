"""Synthetic results files for the reporting tests: the layout pybench.worker writes, no torch needed."""

from __future__ import annotations

from pybench.protocol import summarize
from pybench.results import SCHEMA, SCHEMA_VERSION

VERSIONS = {"pytorch": ("PyTorch", "2.14.1"), "flux": ("Flux", "0.16.3")}
GPU = "NVIDIA H200"
CPU = "AMD EPYC 9654 96-Core Processor"


def phase(samples: list[float], noisy: bool = False, first_run: float | None = None) -> dict:
    return {
        "first_run": first_run if first_run is not None else 10 * max(samples),
        "warmup": [],
        "samples": list(samples),
        "stats": summarize(samples).__dict__,
        "stop_reason": "max_time" if noisy else "converged",
        "noisy": noisy,
        "memory": {},
    }


def spread(median: float) -> list[float]:
    """Three samples whose median is exactly `median` and whose minimum is 1% lower."""
    return [median * 0.99, median, median * 1.01]


def record(framework: str, model: str, medians: dict[str, float] | None = None, *,
           device: str = "cuda:0", batch: int = 8, image: int = 224, dtype: str = "fp32",
           variant: str = "", threads: int = 16, params: int = 1000, noisy: tuple[str, ...] = (),
           error: str | None = None, samples: dict[str, list[float]] | None = None) -> dict:
    """One record; phases from `medians` (three-sample spread) or raw `samples`; failed with `error`."""
    spec = {"framework": framework, "model": model, "device": device, "batch_size": batch,
            "image_size": image, "dtype": dtype, "variant": variant, "threads": threads,
            "tf32": False, "seed": 0, "stop": {}, "phases": ["forward", "backward", "total", "inference"]}
    kind = "cuda" if device.startswith("cuda") else "cpu"
    rec = {"spec": spec, "cell": f"{model}/{kind}/b{batch}/{image}px", "framework": framework,
           "wall_time": 1.0}
    if error is not None:
        return {**rec, "status": "failed", "error": error}
    name, version = VERSIONS[framework]
    raw = samples or {p: spread(m) for p, m in (medians or {}).items()}
    phases = {p: phase(s, noisy=p in noisy) for p, s in raw.items()}
    return {**rec, "status": "ok", "workload": {"params": params},
            "framework_env": {"framework": name, "version": version},
            "phases": phases, "noisy": any(p["noisy"] for p in phases.values())}


def results_file(records: list[dict], created: str = "2025-01-01T12:00:00+0000", gpu: str = GPU,
                 cpu: str = CPU, cores: int = 16) -> dict:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": created,
        "command": ["pybench", "run"],
        "environment": {"label": "box", "hostname": "box", "cpu": cpu, "cores_logical": cores,
                        "cores_available": cores, "gpus": [{"index": 0, "name": gpu}],
                        "threads": cores, "tf32": False},
        "records": records,
    }


def train(fwd: float, bwd: float, inf: float | None = None) -> dict[str, float]:
    """Phase medians with total = forward + backward, as the protocol defines it."""
    out = {"forward": fwd, "backward": bwd, "total": fwd + bwd}
    return out if inf is None else {**out, "inference": inf}
