"""Fakes shared by test modules (so no test module imports another): a scripted sampler with an
injected clock and probes for the timing protocol, and a fake pynvml over a set of GPUs.  Records and
results files are `factories`; the `nvml` fixture that installs FakeNVML is in conftest."""

from __future__ import annotations

from types import SimpleNamespace

# --- the timing protocol: scripted iterations, an injected clock -----------------------------------


class Clock:
    """Seconds that pass only when the scripted sampler says work was done."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """A sampler whose iterations take scripted times (seconds), advancing the injected clock.

    `times[group]` maps each measured phase to a function of the iteration index (0: first run)."""

    def __init__(self, clock: Clock, times: dict, log: list | None = None) -> None:
        self.clock, self.times, self.log = clock, times, log if log is not None else []
        self.count = {g: 0 for g in times}

    def sample(self, group: str, n: int) -> dict[str, list[int]]:
        out = {p: [] for p in self.times[group]}
        for _ in range(n):
            i = self.count[group]
            self.count[group] += 1
            for phase, t in self.times[group].items():
                seconds = t(i)
                self.clock.now += seconds
                out[phase].append(round(seconds * 1e9))
        self.log.append(("sample", group))
        return out

    def finish(self, group: str) -> None:
        self.log.append(("finish", group))


class Probe:
    def __init__(self, log: list) -> None:
        self.log = log

    def reset(self) -> None:
        self.log.append(("reset", None))

    def read(self) -> dict:
        return {"peak": len(self.log)}


def const(seconds: float, first: float | None = None):
    return lambda i: first if i == 0 and first is not None else seconds


def scattered(seconds: float, first: float | None = None):
    """Distinct times spread over +50%, so no interval of the median ever gets tight."""
    return lambda i: first if i == 0 and first is not None else seconds * (1 + 0.5 * ((i * 0.6180339887) % 1))


TRAIN = {"forward": const(0.002, first=0.02), "backward": const(0.004, first=0.03)}


# --- NVML: what pynvml would report for a set of GPUs ----------------------------------------------

H100 = "GPU-11111111-1111-1111-1111-111111111111"
H100_B = "GPU-2222abcd-2222-2222-2222-222222222222"
A100 = "GPU-33333333-3333-3333-3333-333333333333"
SLICE_1 = "MIG-44444444-4444-4444-4444-444444444444"
SLICE_2 = "MIG-55555555-5555-5555-5555-555555555555"
A100_B = "GPU-66666666-6666-6666-6666-666666666666"


class NVMLError(Exception):
    pass


class FakeNVML:
    """What pynvml reports for a set of GPUs; `fail` names calls that raise NVMLError, as a MIG slice
    without privilege or an old driver does."""

    NVMLError = NVMLError
    NVML_DEVICE_MIG_ENABLE = 1
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self, devices: list[dict], fail: tuple[str, ...] = ()) -> None:
        self.devices = devices  # in NVML index order: uuid, name, bus, optional mig slices
        self.fail = set(fail)
        self.open = 0

    def _call(self, name: str) -> None:
        if name in self.fail:
            raise NVMLError(f"{name}: Insufficient Permissions")

    def _slices(self) -> list[dict]:
        return [s for d in self.devices for s in d.get("mig", [])]

    def nvmlInit(self):
        self._call("nvmlInit")
        self.open += 1

    def nvmlShutdown(self):
        self.open -= 1

    def nvmlSystemGetDriverVersion(self):
        self._call("nvmlSystemGetDriverVersion")
        return "570.86.15"

    def nvmlSystemGetCudaDriverVersion(self):
        self._call("nvmlSystemGetCudaDriverVersion")
        return 12080

    def nvmlDeviceGetCount(self):
        self._call("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        self._call("nvmlDeviceGetHandleByIndex")
        return self.devices[i]

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self._call("nvmlDeviceGetHandleByUUID")
        for d in self.devices + self._slices():
            if d["uuid"] == uuid:
                return d
        raise NVMLError("Not Found")

    def nvmlDeviceGetUUID(self, h):
        self._call("nvmlDeviceGetUUID")
        return h["uuid"].encode()  # older pynvml answers bytes

    def nvmlDeviceGetName(self, h):
        self._call("nvmlDeviceGetName")
        return h["name"]

    def nvmlDeviceGetMemoryInfo(self, h):
        self._call("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=h.get("memory", 80 << 30), used=h.get("used", 1 << 30))

    def nvmlDeviceGetPciInfo(self, h):
        self._call("nvmlDeviceGetPciInfo")
        return SimpleNamespace(busId=h["bus"].encode())

    def nvmlDeviceGetMigMode(self, h):
        self._call("nvmlDeviceGetMigMode")
        if "mig" not in h:
            raise NVMLError("Not Supported")
        return [1, 1]

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, i):
        if i >= len(h["mig"]):
            raise NVMLError("Not Found")
        return h["mig"][i]

    def nvmlDeviceIsMigDeviceHandle(self, h):
        return int(h in self._slices())

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, h):
        return next(d for d in self.devices if any(s is h for s in d.get("mig", [])))

    def nvmlDeviceGetCudaComputeCapability(self, h):
        self._call("nvmlDeviceGetCudaComputeCapability")
        return (9, 0)

    def nvmlDeviceGetMaxClockInfo(self, h, clock):
        self._call("nvmlDeviceGetMaxClockInfo")
        return 1980 if clock == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetPowerManagementLimit(self, h):
        self._call("nvmlDeviceGetPowerManagementLimit")
        return 700_000

    # what a running GPU reports, per device dict: SM clock, clock event reasons, CPU affinity (as
    # 64-bit words) and compute processes (tests/test_gpu_rows.py)
    def nvmlDeviceGetClockInfo(self, h, clock):
        self._call("nvmlDeviceGetClockInfo")
        return h.get("sm_mhz", 1980)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        self._call("nvmlDeviceGetCurrentClocksEventReasons")
        return h.get("reasons", 0)

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        self._call("nvmlDeviceGetCurrentClocksThrottleReasons")
        return h.get("reasons", 0)

    def nvmlDeviceGetCpuAffinity(self, h, words):
        self._call("nvmlDeviceGetCpuAffinity")
        mask = h.get("affinity", [])
        return mask + [0] * (words - len(mask))

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        self._call("nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=p, usedGpuMemory=1 << 30) for p in h.get("pids", [])]


def two_h100s() -> list[dict]:
    # NVML's index order need not be PCI order: index 0 sits on the higher bus.
    return [{"uuid": H100_B, "name": "NVIDIA H100 80GB HBM3", "bus": "00000000:9A:00.0"},
            {"uuid": H100, "name": "NVIDIA H100 80GB HBM3", "bus": "00000000:18:00.0", "used": 5 << 30}]


def mixed() -> list[dict]:
    return [{"uuid": H100, "name": "NVIDIA H100 80GB HBM3", "bus": "00000000:18:00.0"},
            {"uuid": A100, "name": "NVIDIA A100-SXM4-80GB", "bus": "00000000:9A:00.0"}]


def mig_a100() -> list[dict]:
    return [{"uuid": A100, "name": "NVIDIA A100-SXM4-40GB", "bus": "00000000:18:00.0",
             "mig": [{"uuid": SLICE_1, "name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb", "memory": 5 << 30},
                     {"uuid": SLICE_2, "name": "NVIDIA A100-SXM4-40GB MIG 3g.20gb", "memory": 20 << 30}]},
            {"uuid": A100_B, "name": "NVIDIA A100-SXM4-40GB", "bus": "00000000:9A:00.0"}]
