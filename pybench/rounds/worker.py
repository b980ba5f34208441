"""Worker process: measures exactly one round of one cell and answers with one JSON record.

    python -m pybench.rounds.worker < request.json > record.json

The request is one JSON line: {"spec": ..., "plan": {group: samples}, "initial": seconds} for a round
in one go (a plan, or sampling until precise for `initial` seconds per group), or
{"spec": ..., "serve": true} for a lockstep round, in which further lines on stdin are commands.

Only the framework named in the spec is imported here (the Flux and JAX workers never import torch).
Anything a framework prints goes to stderr: stdout carries the record alone.
"""

from __future__ import annotations

import os
import time

STARTED = time.time()  # before anything heavy is imported: the round's timeline starts its worker here

# Framework.preload, passed by the runner: Julia's libstdc++/OpenSSL must load before numpy's and
# scipy's, which the pybench imports below bring in.
for _module in filter(None, os.environ.get("PYBENCH_PRELOAD", "").split(",")):
    __import__(_module)

import json  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from typing import TextIO  # noqa: E402

from pybench.backends import get_framework
from pybench.backends.base import Backend
from pybench.machine.devices import gpu_identity, gpu_memory_used
from pybench.machine.energy import EnergyMeter
from pybench.machine.gpu_probe import ClockProbe, clock_warnings, local_cores, process_identity
from pybench.rounds.interpreter import interpreter_facts
from pybench.machine.malloc import allocator_facts
from pybench.machine.lifetime import watch_parent
from pybench.protocol.group import GroupRun, Measurement, measure
from pybench.protocol.phases import groups_of
from pybench.records.record import CellRecord
from pybench.records.round import Round
from pybench.records.spec import CellSpec


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


def pin_cores(threads: int, gpu_uuid: str | None = None) -> list[int] | None:
    """Run on exactly `threads` of the cores this process may use, so every framework's pools (XLA's,
    PyTorch's, Julia's) see the same machine; None where affinity cannot be set.

    A GPU worker instead gets every allowed core local to its GPU (NVML's affinity, its NUMA node):
    its launch thread, the driver's threads and Inductor's compile pool must not queue behind
    `threads` cores.  All allowed cores where NVML cannot say, or where fewer local cores than
    `threads` are allowed (a cgroup's share): torch's `threads` would oversubscribe them."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
        if gpu_uuid:
            local = [c for c in local_cores(gpu_uuid) or () if c in allowed]
            cores = local if len(local) >= threads else allowed
        else:
            cores = allowed[:threads]
        os.sched_setaffinity(0, cores)
        return cores
    except (AttributeError, OSError):
        return None


def check_gpu(spec: CellSpec, env: dict) -> None:
    """The framework must have run on the GPU the cell names (pinning by UUID makes it its device 0).
    A framework that reports no UUID (XLA) is confirmed by NVML listing this process on that GPU."""
    if not env.get("gpu_uuid"):
        env["gpu_identity"] = process_identity(spec.gpu.uuid, env.get("gpu"), os.getpid())
        return
    identity = gpu_identity(str(env.get("gpu")), str(env["gpu_uuid"]))
    env["gpu_identity"] = identity
    if not spec.gpu.same_gpu(identity):
        raise RuntimeError(f"ran on {identity['name']} ({identity['uuid']}), not the requested "
                           f"{spec.gpu.name} ({spec.gpu.uuid})")


def one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


class WorkerRound:
    """One round of a cell in this process: prepare, then groups as `protocol.GroupRun`s, then the
    record.  `run_round` drives it in one go; `serve` lets a lockstep orchestrator drive it."""

    def __init__(self, spec: CellSpec, spawned: float | None = None) -> None:
        self.started = time.time()
        self.spawned = STARTED if spawned is None else spawned  # when the orchestrator started us
        self.marks = {"started": STARTED}  # wall-clock ends of the round's steps (`Round.timeline`)
        self.spec = spec
        framework = get_framework(spec.framework)
        self.record = CellRecord(spec=spec, status="failed", title=framework.title)
        gpu_uuid = spec.gpu.uuid if spec.gpu else None
        self.cores = pin_cores(spec.threads, gpu_uuid)
        self.clocks = ClockProbe(gpu_uuid) if gpu_uuid else None
        backend = framework.load_backend()
        self.marks["imported"] = time.time()
        self.backend = backend(spec)
        self.record.workload = self.backend.prepare()
        self.marks["prepared"] = time.time()
        self.record.title = f"{framework.title} {self.backend.version()}"
        self.sampler = self.backend.sampler()
        self.memory = ProcessMemory(self.backend, spec.gpu.uuid if spec.gpu else None)
        self.energy = EnergyMeter(spec.gpu.uuid if spec.gpu else None)
        self.measurement = Measurement()
        self.runs: dict[str, GroupRun] = {}

    def group(self, group: str) -> GroupRun:
        if group not in self.runs:
            self.runs[group] = GroupRun(self.sampler, group, self.spec.device_kind == "cuda", self.memory,
                                        energy=self.energy, clocks=self.clocks)
        return self.runs[group]

    def end(self, group: str, limit: str) -> None:
        run = self.runs[group]
        phases, peak, _ = run.end(self.spec.stop, limit)
        self.measurement.phases.update({p: r for p, r in phases.items() if p in self.spec.phases})
        self.measurement.memory[group] = peak
        self.measurement.timeline.update(run.marks)
        if run.energy:
            self.measurement.energy[group] = run.energy

    def finish(self) -> CellRecord:
        record = self.record
        record.framework_env = {**self.backend.environment(), "cores": self.cores,
                                "python": interpreter_facts(self.spec), "allocator": allocator_facts()}
        record.numerics = self.backend.numerics()
        if self.spec.gpu:
            check_gpu(self.spec, record.framework_env)
        order = [p for p in self.spec.phases if p in self.measurement.phases]
        self.measurement.phases = {p: self.measurement.phases[p] for p in order}
        readings = self.clocks.readings if self.clocks else {}
        marks = {**self.marks, **self.measurement.timeline, "finished": time.time()}
        record.rounds = [Round.of(self.measurement, readings,
                                  {k: max(0.0, t - self.spawned) for k, t in marks.items()})]
        record.warnings.extend(clock_warnings(readings))
        record.status = "ok"
        record.wall_time = time.time() - self.started
        return record


def _failed(spec: CellSpec, exc: BaseException, started: float) -> CellRecord:
    traceback.print_exc()  # full detail on stderr for the curious; the record keeps one line
    record = CellRecord(spec=spec, status="failed", title=get_framework(spec.framework).title,
                        error=one_line(exc))
    record.wall_time = time.time() - started
    return record


def run_round(spec: CellSpec, plan: dict[str, int] | None = None, initial: float | None = None,
              spawned: float | None = None) -> CellRecord:
    """Prepare, measure and describe one round of a cell; an exception becomes a failed record."""
    started = time.time()
    try:
        one = WorkerRound(spec, spawned)
        one.measurement = measure(one.sampler, spec.phases, spec.stop, gpu=spec.device_kind == "cuda",
                                  memory=one.memory, plan=plan, energy=one.energy, initial=initial,
                                  clocks=one.clocks)
        return one.finish()
    except Exception as exc:  # noqa: BLE001 - any failure of the framework is this cell's result
        return _failed(spec, exc, started)


def prime(spec: CellSpec) -> dict:
    """A priming worker: the model built and each group run once, which fills the matrix's compile
    cache.  Its reply is {"primed": seconds}, or the failed record."""
    started = time.time()
    try:
        one = WorkerRound(spec)
        for group in groups_of(spec.phases):
            one.sampler.sample(group, 1)
            one.sampler.finish(group)
        return {"primed": time.time() - started}
    except Exception as exc:  # noqa: BLE001 - the counted rounds will fail with the same reason
        return {"record": _failed(spec, exc, started).to_json()}


def serve(spec: CellSpec, commands: TextIO, replies: TextIO, spawned: float | None = None) -> None:
    """Lockstep mode: prepare, say so, then obey one JSON command per line until "done".

    Commands: {"begin": group} (first run, warm-up), {"block": group, "n": k} (k samples, reply their
    seconds), {"end": group, "limit": reason}, {"done": true} (reply the record).  While the other
    frameworks of the cell run their blocks this process is blocked reading its pipe.  Any failure
    replies a failed record and ends the process.
    """
    started = time.time()

    def reply(message: dict) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    try:
        one = WorkerRound(spec, spawned)
        reply({"ready": True})
        for line in commands:
            cmd = json.loads(line)
            if "begin" in cmd:
                reply({"first": one.group(cmd["begin"]).begin()})
            elif "block" in cmd:
                run = one.group(cmd["block"])
                reply({"seconds": run.block(int(cmd["n"]))[run.lead]})
            elif "end" in cmd:
                one.end(cmd["end"], cmd["limit"])
                reply({"ended": True})
            else:
                reply({"record": one.finish().to_json(summary=False)})
                return
        raise RuntimeError("the orchestrator closed the command pipe")
    except Exception as exc:  # noqa: BLE001 - any failure of the framework is this cell's result
        reply({"record": _failed(spec, exc, started).to_json()})


def main() -> None:
    watch_parent()  # an orphaned worker would hold its device forever
    record_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # frameworks' chatter (Julia's included) goes to stderr
    request = json.loads(sys.stdin.readline())
    spec = CellSpec.from_json(request["spec"])
    spawned = request.get("spawned")
    spawned = float(spawned) if isinstance(spawned, (int, float)) else None
    if request.get("serve"):
        serve(spec, sys.stdin, record_out, spawned)
    elif request.get("prime"):
        record_out.write(json.dumps(prime(spec)) + "\n")
    else:
        record = run_round(spec, request.get("plan"), request.get("initial"), spawned)
        record_out.write(json.dumps(record.to_json(summary=False)) + "\n")
    record_out.flush()
    sys.stderr.flush()
    # The record is out: skip interpreter teardown, where an embedded runtime's exit hooks (Julia's
    # under juliacall) can crash and turn a finished cell into a failed one.
    os._exit(0)


if __name__ == "__main__":
    main()
