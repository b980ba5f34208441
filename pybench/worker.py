"""Worker process: runs exactly one cell and answers with one JSON record.

    python -m pybench.worker < spec.json > record.json

Only the framework named in the spec is imported here (the Flux worker never imports torch).  Anything
a framework prints goes to stderr: stdout carries the record alone.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

from pybench.backends import load_backend
from pybench.backends.base import Backend
from pybench.environment import gpu_memory_used
from pybench.protocol import measure
from pybench.spec import CellSpec, cuda_index


class ProcessMemory:
    """Peak resident memory of this worker (Linux VmHWM, reset through clear_refs) plus the
    backend's device figures."""

    def __init__(self, backend: Backend, device: str) -> None:
        self.backend = backend
        self.gpu_index = cuda_index(device)

    def reset(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets the resident-set high-water mark
        except OSError:
            pass
        self.backend.reset_peak_memory()

    def read(self) -> dict:
        out = dict(self.backend.peak_memory())
        if self.gpu_index >= 0:
            out["nvml_used"] = gpu_memory_used(self.gpu_index)
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        out["cpu_peak_rss"] = int(line.split()[1]) * 1024
        except OSError:
            pass
        return out


def one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_cell(spec: CellSpec) -> dict:
    """Prepare, measure and describe one cell; an exception becomes a failed record."""
    started = time.time()
    record: dict = {"spec": spec.to_json(), "cell": spec.cell_id, "framework": spec.framework}
    try:
        backend = load_backend(spec.framework)(spec)
        record["workload"] = backend.prepare()
        record["framework_env"] = backend.environment()
        results = measure(
            backend.sampler(),
            spec.phases,
            spec.stop,
            gpu=spec.device_kind == "cuda",
            memory=ProcessMemory(backend, spec.device),
        )
        record["phases"] = {p: r.to_json() for p, r in results.items()}
        record["noisy"] = any(r.noisy for r in results.values())
        record["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure of the framework is this cell's result
        traceback.print_exc()  # full detail on stderr for the curious; the record keeps one line
        record["status"] = "failed"
        record["error"] = one_line(exc)
    record["wall_time"] = time.time() - started
    return record


def main() -> None:
    record_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # frameworks' chatter (Julia's included) goes to stderr
    spec = CellSpec.from_json(json.load(sys.stdin))
    record = run_cell(spec)
    record_out.write(json.dumps(record) + "\n")
    record_out.flush()
    sys.stderr.flush()
    # The record is out: skip interpreter teardown, where an embedded runtime's exit hooks (Julia's
    # under juliacall) can crash and turn a finished cell into a failed one.
    os._exit(0)


if __name__ == "__main__":
    main()
