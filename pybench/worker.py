"""Worker process: measures exactly one round of one cell and answers with one JSON record.

    python -m pybench.worker < spec.json > record.json

Only the framework named in the spec is imported here (the Flux and JAX workers never import torch).
Anything a framework prints goes to stderr: stdout carries the record alone.
"""

from __future__ import annotations

import os

# Framework.preload, passed by the runner: Julia's libstdc++/OpenSSL must load before numpy's and
# scipy's, which the pybench imports below bring in.
for _module in filter(None, os.environ.get("PYBENCH_PRELOAD", "").split(",")):
    __import__(_module)

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

from pybench.backends import get_framework
from pybench.backends.base import Backend
from pybench.devices import gpu_identity, gpu_memory_used
from pybench.energy import EnergyMeter
from pybench.interpreter import interpreter_facts
from pybench.lifetime import watch_parent
from pybench.protocol import measure
from pybench.records import CellRecord, Round
from pybench.spec import CellSpec


class ProcessMemory:
    """Peak resident memory of this worker (Linux VmHWM, reset through clear_refs) plus the
    backend's device figures."""

    def __init__(self, backend: Backend, gpu_uuid: str | None) -> None:
        self.backend = backend
        self.gpu_uuid = gpu_uuid

    def reset(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets the resident-set high-water mark
        except OSError:
            pass
        self.backend.reset_peak_memory()

    def read(self) -> dict[str, int]:
        out = dict(self.backend.peak_memory())
        if self.gpu_uuid:
            used = gpu_memory_used(self.gpu_uuid)
            if used is not None:  # device-wide, every process, at the end of the window: not a peak
                out["nvml_device_used_snapshot"] = used
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        out["cpu_peak_rss"] = int(line.split()[1]) * 1024
        except OSError:
            pass
        return out


def pin_cores(threads: int) -> list[int] | None:
    """Run on exactly `threads` of the cores this process may use, so every framework's pools (XLA's,
    PyTorch's, Julia's) see the same machine; None where affinity cannot be set."""
    try:
        cores = sorted(os.sched_getaffinity(0))[:threads]
        os.sched_setaffinity(0, cores)
        return cores
    except (AttributeError, OSError):
        return None


def check_gpu(spec: CellSpec, env: dict) -> None:
    """The framework must have run on the GPU the cell names (pinning by UUID makes it its device 0)."""
    if not env.get("gpu_uuid"):  # the framework cannot say: pinning by UUID is the only guarantee
        env["gpu_identity"] = {"name": env.get("gpu"), "uuid": None, "note": "framework reports no UUID"}
        return
    identity = gpu_identity(str(env.get("gpu")), str(env["gpu_uuid"]))
    env["gpu_identity"] = identity
    if not spec.gpu.same_gpu(identity):
        raise RuntimeError(f"ran on {identity['name']} ({identity['uuid']}), not the requested "
                           f"{spec.gpu.name} ({spec.gpu.uuid})")


def one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_round(spec: CellSpec) -> CellRecord:
    """Prepare, measure and describe one round of a cell; an exception becomes a failed record."""
    started = time.time()
    framework = get_framework(spec.framework)
    record = CellRecord(spec=spec, status="failed", title=framework.title)
    cores = pin_cores(spec.threads)
    try:
        backend = framework.load_backend()(spec)
        record.workload = backend.prepare()
        record.title = f"{framework.title} {backend.version()}"
        measurement = measure(
            backend.sampler(),
            spec.phases,
            spec.stop,
            gpu=spec.device_kind == "cuda",
            memory=ProcessMemory(backend, spec.gpu.uuid if spec.gpu else None),
            energy=EnergyMeter(spec.gpu.uuid if spec.gpu else None),
        )
        record.framework_env = {**backend.environment(), "cores": cores, "python": interpreter_facts(spec)}
        if spec.gpu:
            check_gpu(spec, record.framework_env)
        record.rounds = [Round.of(measurement)]
        record.status = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure of the framework is this cell's result
        traceback.print_exc()  # full detail on stderr for the curious; the record keeps one line
        record.error = one_line(exc)
    record.wall_time = time.time() - started
    return record


def main() -> None:
    watch_parent()  # an orphaned worker would hold its device forever
    record_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # frameworks' chatter (Julia's included) goes to stderr
    spec = CellSpec.from_json(json.load(sys.stdin))
    record = run_round(spec)
    record_out.write(json.dumps(record.to_json()) + "\n")
    record_out.flush()
    sys.stderr.flush()
    # The record is out: skip interpreter teardown, where an embedded runtime's exit hooks (Julia's
    # under juliacall) can crash and turn a finished cell into a failed one.
    os._exit(0)


if __name__ == "__main__":
    main()
