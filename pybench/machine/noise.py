"""How quiet the machine was: an audit stored in every results file, and what would make it quieter.

At the start of a run: the load average, the processes busy on the CPU, the CPU frequency, governor
and turbo.  Over the run: the share of CPU time stolen by the hypervisor (these are VMs) and the
share other work took, from /proc/stat.  On CUDA: the GPU's clocks and the reasons NVML gives for
holding them down, at the start and the end (thermal and power limits bite under load).

Everything is read where readable and None otherwise; nothing here raises on a machine that lacks a
file or a driver.  File readers take the /proc or /sys root as a parameter so tests can point them
at crafted trees.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

from pybench.machine.nvml import SLOWDOWNS, clock_reasons, nvml_call, nvml_session
from pybench.errors import UserError

BUSY_PERCENT = 5.0  # of one core, over the sampling window
LOAD_PER_CORE = 0.5
STEAL_LIMIT = 0.02
OTHER_BUSY_LIMIT = 0.10


@dataclass(frozen=True)
class BusyProcess:
    pid: int
    name: str  # the kernel's comm: at most 15 characters
    cpu_percent: float  # of one core


@dataclass(frozen=True)
class GpuState:
    uuid: str
    sm_clock_mhz: int | None
    sm_clock_max_mhz: int | None
    memory_clock_mhz: int | None
    temperature_c: int | None
    reasons: tuple[str, ...] | None  # active clock-event reasons (nvml.CLOCK_REASONS); None: unreadable


@dataclass(frozen=True)
class CpuShare:
    """Shares of all CPUs' time over a window."""

    steal: float  # taken by the hypervisor for other VMs
    other_busy: float  # busy with anything but this process and its finished children
    seconds: float


@dataclass(frozen=True)
class NoiseAudit:
    cores: int
    load_avg: tuple[float, float, float] | None
    busy_processes: tuple[BusyProcess, ...]
    cpu_freq_mhz: float | None  # mean over CPUs at the start
    governor: str | None  # "performance", or several joined by "," when CPUs differ
    turbo: bool | None
    gpus: tuple[GpuState, ...] = ()
    during: CpuShare | None = None  # set by capture_end
    gpus_end: tuple[GpuState, ...] = ()

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> NoiseAudit:
        try:
            return cls(
                cores=int(data["cores"]),
                load_avg=tuple(data["load_avg"]) if data["load_avg"] is not None else None,
                busy_processes=tuple(BusyProcess(**p) for p in data["busy_processes"]),
                cpu_freq_mhz=data["cpu_freq_mhz"],
                governor=data["governor"],
                turbo=data["turbo"],
                gpus=tuple(_gpu_from_json(g) for g in data["gpus"]),
                during=CpuShare(**data["during"]) if data["during"] is not None else None,
                gpus_end=tuple(_gpu_from_json(g) for g in data["gpus_end"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"malformed noise audit in results file: {exc!r}") from None


def _gpu_from_json(g: dict) -> GpuState:
    reasons = g["reasons"]
    return GpuState(**{**g, "reasons": tuple(reasons) if reasons is not None else None})


# --- /proc -------------------------------------------------------------------------------------

def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def load_average(proc_root: str | Path = "/proc") -> tuple[float, float, float] | None:
    """1, 5 and 15 minute load averages (what os.getloadavg reads on Linux)."""
    text = _read(Path(proc_root) / "loadavg")
    try:
        one, five, fifteen = (float(v) for v in text.split()[:3])
    except (AttributeError, ValueError):
        return None
    return one, five, fifteen


@dataclass(frozen=True)
class _Proc:
    name: str
    ppid: int
    ticks: int  # user + system clock ticks


def _processes(proc_root: Path) -> dict[int, _Proc]:
    out = {}
    for entry in proc_root.iterdir() if proc_root.is_dir() else ():
        if not entry.name.isdigit():
            continue
        text = _read(entry / "stat")  # vanished processes are simply skipped
        if text is None:
            continue
        # "pid (comm) state ppid ..." where comm may hold spaces and parentheses: split at the last ')'
        head, _, rest = text.rpartition(")")
        fields = rest.split()
        try:
            out[int(entry.name)] = _Proc(head.partition("(")[2], int(fields[1]),
                                         int(fields[11]) + int(fields[12]))
        except (IndexError, ValueError):
            continue
    return out


def _descendants(root: int, procs: dict[int, _Proc]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, p in procs.items():
        children.setdefault(p.ppid, []).append(pid)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _busy(before: dict[int, _Proc], after: dict[int, _Proc], seconds: float, me: int,
          threshold: float) -> tuple[BusyProcess, ...]:
    mine = _descendants(me, {**before, **after})
    tick = os.sysconf("SC_CLK_TCK")
    busy = []
    for pid, p in after.items():
        if pid in mine or pid not in before:
            continue
        percent = 100.0 * (p.ticks - before[pid].ticks) / tick / seconds
        if percent > threshold:
            busy.append(BusyProcess(pid, p.name, round(percent, 1)))
    return tuple(sorted(busy, key=lambda b: -b.cpu_percent))


def busy_processes(window: float = 0.2, threshold: float = BUSY_PERCENT,
                   proc_root: str | Path = "/proc") -> tuple[BusyProcess, ...]:
    """Processes above `threshold` % of a core over `window` seconds, except this one and its
    descendants (the benchmark itself), busiest first."""
    root = Path(proc_root)
    before, t0 = _processes(root), time.monotonic()
    time.sleep(window)
    after, t1 = _processes(root), time.monotonic()
    return _busy(before, after, t1 - t0, os.getpid(), threshold)


def _cpu_times(proc_root: Path) -> tuple[int, int, int] | None:
    """(total, busy, steal) ticks of all CPUs from the first line of /proc/stat."""
    text = _read(proc_root / "stat")
    try:
        # user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
        v = [int(x) for x in text.splitlines()[0].split()[1:9]]
    except (AttributeError, IndexError, ValueError):
        return None
    if len(v) < 8:
        return None
    total = sum(v)
    return total, total - v[3] - v[4] - v[7], v[7]


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class StealMeter:
    """Reads /proc/stat when made and when read: the steal and other-work shares in between.

    Other work is all busy time minus this process's and its waited-for children's (workers that
    were joined); make and read it in the process that starts the workers.
    """

    def __init__(self, proc_root: str | Path = "/proc") -> None:
        self.proc_root = Path(proc_root)
        self._start = _cpu_times(self.proc_root)
        self._own = _own_cpu_seconds()
        self._t0 = time.monotonic()

    def read(self) -> CpuShare | None:
        """None when /proc/stat is unreadable or no tick has passed."""
        end = _cpu_times(self.proc_root)
        if self._start is None or end is None or end[0] <= self._start[0]:
            return None
        total, busy, steal = (e - s for e, s in zip(end, self._start))
        own = (_own_cpu_seconds() - self._own) * os.sysconf("SC_CLK_TCK")
        return CpuShare(steal=steal / total, other_busy=max(0.0, busy - own) / total,
                        seconds=time.monotonic() - self._t0)


MIN_ROUND_WINDOW_S = 1.0  # a shorter window holds a few clock ticks: too coarse to judge a round by


def other_busy(meter: StealMeter) -> float | None:
    """The share of all CPUs' time other work used since `meter` was made (read it once the round's
    workers are joined); None when unreadable or shorter than MIN_ROUND_WINDOW_S."""
    share = meter.read()
    return share.other_busy if share is not None and share.seconds >= MIN_ROUND_WINDOW_S else None


# --- /sys --------------------------------------------------------------------------------------

def cpu_frequency(sys_root: str | Path = "/sys") -> tuple[float | None, str | None, bool | None]:
    """(mean current MHz, governor(s), turbo on) from cpufreq; None for each part not readable."""
    cpu = Path(sys_root) / "devices/system/cpu"
    khz, governors = [], set()
    for d in sorted(cpu.glob("cpu[0-9]*/cpufreq")):
        text = _read(d / "scaling_cur_freq")
        if text and text.strip().isdigit():
            khz.append(int(text))
        gov = _read(d / "scaling_governor")
        if gov and gov.strip():
            governors.add(gov.strip())
    no_turbo, boost = _read(cpu / "intel_pstate/no_turbo"), _read(cpu / "cpufreq/boost")
    turbo = (no_turbo.strip() == "0" if no_turbo is not None
             else boost.strip() == "1" if boost is not None else None)
    return (sum(khz) / len(khz) / 1000 if khz else None,
            ",".join(sorted(governors)) or None, turbo)


# --- NVML --------------------------------------------------------------------------------------

def _gpu_state(nv, uuid: str) -> GpuState:
    handle = nvml_call(nv, "nvmlDeviceGetHandleByUUID", uuid)
    if handle is None:
        return GpuState(uuid, None, None, None, None, None)
    reasons = clock_reasons(nv, handle)
    return GpuState(
        uuid=uuid,
        sm_clock_mhz=nvml_call(nv, "nvmlDeviceGetClockInfo", handle, nv.NVML_CLOCK_SM),
        sm_clock_max_mhz=nvml_call(nv, "nvmlDeviceGetMaxClockInfo", handle, nv.NVML_CLOCK_SM),
        memory_clock_mhz=nvml_call(nv, "nvmlDeviceGetClockInfo", handle, nv.NVML_CLOCK_MEM),
        temperature_c=nvml_call(nv, "nvmlDeviceGetTemperature", handle, nv.NVML_TEMPERATURE_GPU),
        reasons=None if reasons is None else tuple(reasons),
    )


def gpu_states(uuids: Sequence[str]) -> tuple[GpuState, ...]:
    """Clocks, temperature and throttle reasons of the GPUs with these NVML UUIDs ("GPU-..."); a GPU
    NVML cannot read is a state of Nones, so the audit still says it was asked."""
    if not uuids:
        return ()
    with nvml_session() as nv:
        if nv is None:
            return tuple(GpuState(u, None, None, None, None, None) for u in uuids)
        return tuple(_gpu_state(nv, u) for u in uuids)


# --- the audit ---------------------------------------------------------------------------------

def capture_start(gpu_uuids: Sequence[str] = (), proc_root: str | Path = "/proc",
                  sys_root: str | Path = "/sys", window: float = 0.2) -> NoiseAudit:
    """The machine as a run starts; takes about `window` seconds to see which processes are busy."""
    freq, governor, turbo = cpu_frequency(sys_root)
    return NoiseAudit(
        cores=os.cpu_count() or 1,
        load_avg=load_average(proc_root),
        busy_processes=busy_processes(window, proc_root=proc_root),
        cpu_freq_mhz=freq,
        governor=governor,
        turbo=turbo,
        gpus=gpu_states(gpu_uuids),
    )


def capture_end(audit: NoiseAudit, meter: StealMeter, gpu_uuids: Sequence[str] = ()) -> NoiseAudit:
    """The audit completed with what the run saw: steal and other work, the GPUs after the load."""
    return replace(audit, during=meter.read(), gpus_end=gpu_states(gpu_uuids))


def advice(audit: NoiseAudit) -> list[str]:
    """What would make this machine quieter, one line each; empty when nothing was seen."""
    out = []
    if audit.load_avg and audit.load_avg[0] > LOAD_PER_CORE * audit.cores:
        out.append(f"load average {audit.load_avg[0]:.2f} on {audit.cores} cores: wait for other work "
                   "to finish before benchmarking")
    for p in audit.busy_processes:
        out.append(f"process {p.name!r} (pid {p.pid}) uses {p.cpu_percent:.0f}% of a core: stop it")
    if audit.during and audit.during.steal > STEAL_LIMIT:
        out.append(f"the hypervisor stole {audit.during.steal:.1%} of CPU time during the run: use a "
                   "dedicated (bare-metal or pinned) machine or a quieter hour")
    if audit.during and audit.during.other_busy > OTHER_BUSY_LIMIT:
        out.append(f"other work used {audit.during.other_busy:.0%} of the CPUs during the run")
    if audit.governor and audit.governor != "performance":
        out.append(f"CPU frequency governor is {audit.governor!r}: set 'performance' "
                   "(cpupower frequency-set -g performance)")
    if audit.turbo:
        out.append("turbo boost is on: its frequency follows temperature and load; turn it off "
                   "(intel_pstate/no_turbo=1 or cpufreq/boost=0 under /sys/devices/system/cpu)")
    for g in (*audit.gpus, *audit.gpus_end):
        slowing = [r for r in g.reasons or () if r in SLOWDOWNS]
        if slowing:
            out.append(f"GPU {g.uuid} held its clocks down ({', '.join(slowing)}): improve cooling "
                       "or power headroom, or lock clocks (nvidia-smi --lock-gpu-clocks)")
    return list(dict.fromkeys(out))  # a GPU throttled at the start and the end is one line
