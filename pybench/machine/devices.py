"""Which device a run means, and the GPUs as NVML and the frameworks see them.

A GPU is identified by its UUID, never by an index.  NVML numbers GPUs in its own (PCI) order and
ignores CUDA_VISIBLE_DEVICES; CUDA numbers the GPUs visible to a process in CUDA_DEVICE_ORDER order
(fastest first unless PCI_BUS_ID).  `resolve_device` turns the user's `cuda:N` into the UUID of the
GPU that CUDA would call N in this process, by applying CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER to
NVML's list here (milliseconds; importing torch to ask it would cost seconds and initialise CUDA in
the orchestrator).  Where CUDA's order cannot be known from NVML (GPUs of different models under
fastest-first order) it asks the user to be explicit rather than guess.  Each worker is then pinned
to that UUID (`Device.visible_env`), so every framework in a cell sees that one GPU as its device 0,
and it records the UUID its framework reports (`gpu_identity`), which must be the same GPU.

NVML calls go through `nvml.nvml_call`: a refused one is a None in the facts, never a crash.
"""

from __future__ import annotations

import importlib.util
import os
import re
import uuid as uuidlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from pybench.errors import UserError
from pybench.machine.nvml import nvml_call, nvml_session

PCI_ORDER = "PCI_BUS_ID"


# --- NVML's GPUs ---------------------------------------------------------------------------------


def _text(v: str | bytes | None) -> str | None:
    return v.decode() if isinstance(v, bytes) else v


def _field(obj: Any, name: str) -> Any:
    return None if obj is None else getattr(obj, name, None)


def _memory_total(nv: Any, handle: Any) -> int | None:
    total = _field(nvml_call(nv, "nvmlDeviceGetMemoryInfo", handle), "total")
    return None if total is None else int(total)


def _mig_mode(nv: Any, handle: Any) -> bool:
    """Whether a GPU is split into MIG slices now (GPUs without MIG refuse the query)."""
    mode = nvml_call(nv, "nvmlDeviceGetMigMode", handle)  # [current, pending]
    return bool(mode) and mode[0] == nv.NVML_DEVICE_MIG_ENABLE


def _mig_devices(nv: Any, handle: Any, parent_uuid: str | None) -> list[dict]:
    """The MIG slices of a GPU in MIG mode, in NVML's order."""
    out = []
    for i in range(nvml_call(nv, "nvmlDeviceGetMaxMigDeviceCount", handle) or 0):
        mig = nvml_call(nv, "nvmlDeviceGetMigDeviceHandleByIndex", handle, i)
        if mig is not None:  # empty slots answer NotFound
            out.append({"uuid": _text(nvml_call(nv, "nvmlDeviceGetUUID", mig)),
                        "name": _text(nvml_call(nv, "nvmlDeviceGetName", mig)),
                        "memory_total": _memory_total(nv, mig), "parent_uuid": parent_uuid})
    return out


def gpus() -> list[dict]:
    """Every GPU NVML sees, in NVML's index order (CUDA_VISIBLE_DEVICES does not apply): index, uuid,
    name, driver, memory_total, pci_bus_id and its MIG slices; a fact NVML refuses is None.  Empty
    without a driver; never raises."""
    with nvml_session() as nv:
        if nv is None:
            return []
        driver = _text(nvml_call(nv, "nvmlSystemGetDriverVersion"))
        out = []
        for i in range(nvml_call(nv, "nvmlDeviceGetCount") or 0):
            h = nvml_call(nv, "nvmlDeviceGetHandleByIndex", i)
            if h is None:
                continue
            gpu_uuid = _text(nvml_call(nv, "nvmlDeviceGetUUID", h))
            mig_mode = _mig_mode(nv, h)
            out.append({
                "index": i,
                "uuid": gpu_uuid,
                "name": _text(nvml_call(nv, "nvmlDeviceGetName", h)),
                "driver": driver,
                "memory_total": _memory_total(nv, h),
                "pci_bus_id": _text(_field(nvml_call(nv, "nvmlDeviceGetPciInfo", h), "busId")),
                "mig_mode": mig_mode,
                "mig": _mig_devices(nv, h, gpu_uuid) if mig_mode else [],
            })
        return out


def gpu_memory_used(uuid: str) -> int | None:
    """Device memory in use as NVML sees it (every allocator and context, not only the framework's),
    of the GPU or MIG slice with this UUID; None when NVML cannot say."""
    with nvml_session() as nv:
        handle = None if nv is None else nvml_call(nv, "nvmlDeviceGetHandleByUUID", uuid)
        used = _field(None if handle is None else nvml_call(nv, "nvmlDeviceGetMemoryInfo", handle), "used")
    return None if used is None else int(used)


# --- which GPUs CUDA sees, in CUDA's order ---------------------------------------------------------


def parse_visible_devices(value: str | None) -> list[int | str] | None:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: None when unset (every GPU), else its entries (indices,
    or UUIDs and UUID prefixes spelled 'GPU-...'/'MIG-...') up to the first invalid one, so ''
    and '-1' hide every GPU and '0,2,-1,1' shows 0 and 2."""
    if value is None:
        return None
    out: list[int | str] = []
    for item in value.split(","):
        item = item.strip()
        if item[:4].upper() in ("GPU-", "MIG-"):
            out.append(item)
            continue
        number = re.match(r"[+-]?\d+", item)  # CUDA reads an index like strtol: '1abc' is 1
        if number is None or int(number.group()) < 0:
            break
        out.append(int(number.group()))
    return out


def _by_uuid(prefix: str, devices: list[dict]) -> dict | None:
    """The one device whose UUID starts with `prefix` (case aside); None if none or ambiguous."""
    hits = [d for d in devices if (d.get("uuid") or "").lower().startswith(prefix.lower())]
    return hits[0] if len(hits) == 1 else None


def cuda_devices(nvml_gpus: list[dict], visible: str | None, order: str | None) -> list[dict]:
    """The devices CUDA enumerates for a process with this CUDA_VISIBLE_DEVICES and
    CUDA_DEVICE_ORDER, as {"uuid", "name", "is_mig", "parent_uuid"} in CUDA's order, from NVML's
    list (`gpus()`).

    Indices count GPUs in PCI bus order.  Under the default fastest-first order that is CUDA's order
    only when every GPU is the same model (ties go by PCI bus); with mixed models an index is a user
    error that names the fix.  An index past the last GPU or a UUID that matches none or several
    ends the list; a repeated entry hides every GPU (as in PyTorch's reading of CUDA).  MIG (NVIDIA's
    MIG user guide): a GPU in MIG mode appears as its first slice, a slice can be named by its
    'MIG-' UUID, and a process enumerates at most one slice.
    """
    entries = parse_visible_devices(visible)
    pci = [g.get("pci_bus_id") for g in nvml_gpus]
    physical = sorted(nvml_gpus, key=lambda g: g["pci_bus_id"].lower()) if all(pci) else list(nvml_gpus)
    indexed = entries is None or any(isinstance(e, int) for e in entries)
    if indexed and order != PCI_ORDER and len({g.get("name") for g in physical}) > 1:
        raise UserError(
            "GPUs of different models are visible and CUDA_DEVICE_ORDER is not PCI_BUS_ID, so CUDA's "
            "device numbers are unknown here: set CUDA_DEVICE_ORDER=PCI_BUS_ID (nvidia-smi's order) "
            "or CUDA_VISIBLE_DEVICES=<GPU UUID from nvidia-smi -L>")
    if entries is None:
        chosen = physical
    else:
        slices = [m for g in physical for m in g.get("mig", [])]
        chosen = []
        for entry in entries:
            if isinstance(entry, int):
                found = physical[entry] if entry < len(physical) else None
            else:
                found = _by_uuid(entry, slices if entry[:4].upper() == "MIG-" else physical)
            if found is None:
                break
            if any(found is c for c in chosen):
                return []
            chosen.append(found)
    out: list[dict] = []
    for d in chosen:
        if d.get("mig_mode"):  # a GPU in MIG mode: CUDA sees its first slice, or nothing
            if not d["mig"]:
                continue
            d = d["mig"][0]
        is_mig = "parent_uuid" in d
        if is_mig and any(o["is_mig"] for o in out):
            continue  # one MIG slice per process
        out.append({"uuid": d.get("uuid"), "name": d.get("name"), "is_mig": is_mig,
                    "parent_uuid": d.get("parent_uuid")})
    return out


def visible_gpus() -> list[dict]:
    """`cuda_devices` for this process's environment."""
    return cuda_devices(gpus(), os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("CUDA_DEVICE_ORDER"))


# --- the device of a run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """A resolved device.  For CUDA, `index` is the N the user chose (CUDA's numbering in the
    orchestrator's environment), `uuid` NVML's spelling ('GPU-...', or 'MIG-...' for a slice), and
    `name` NVML's (a slice's ends in 'MIG 1g.10gb' or the like)."""

    kind: str  # "cpu" or "cuda"
    index: int | None = None
    uuid: str | None = None
    name: str | None = None
    is_mig: bool = False
    parent_uuid: str | None = None  # a MIG slice's GPU

    def __post_init__(self) -> None:
        if self.kind not in ("cpu", "cuda") or (self.kind == "cuda") != (self.uuid is not None):
            raise ValueError(f"a device is 'cpu', or 'cuda' with the UUID to pin it by: {self}")

    @property
    def label(self) -> str:
        """As the user would write it: 'cpu' or 'cuda:N'."""
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    @property
    def visible_env(self) -> dict[str, str]:
        """Environment that pins a worker to this GPU, set before any framework loads: every
        framework in the cell then sees this one GPU, as its device 0."""
        if self.kind == "cpu":
            return {}
        return {"CUDA_VISIBLE_DEVICES": self.uuid, "CUDA_DEVICE_ORDER": PCI_ORDER}

    def same_gpu(self, identity: dict) -> bool:
        """Whether `gpu_identity`'s answer in the worker is this device.  A MIG slice may be reported
        by its GPU's UUID (CUDA's older device UUID call), which pinning makes unambiguous."""
        found = identity.get("uuid")
        return found is not None and (found == self.uuid or (self.is_mig and found == self.parent_uuid))

    def to_json(self) -> dict:
        return {**asdict(self), "label": self.label, "visible_env": self.visible_env}

    @classmethod
    def from_json(cls, data: dict) -> "Device":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def torch_cuda_version() -> str | None:
    """`torch.version.cuda` of the installed torch (None: CPU-only torch or no torch), read from its
    version.py without importing torch, which costs seconds."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text()
    except OSError:
        return None
    found = re.search(r"^cuda\b[^=\n]*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    return found.group(1) if found else None


def _why(visible: list[dict]) -> str:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        return f" (CUDA_VISIBLE_DEVICES={value})"
    return "" if visible else " (NVML found none)"


def resolve_device(arg: str) -> Device:
    """The user's --device: 'cpu', 'cuda' (= cuda:0), 'cuda:N' (CUDA's N in this environment), or
    'auto': CUDA device 0 when a GPU is visible and the installed torch is a CUDA build, else the
    CPU.  A CUDA device that is not there is a UserError."""
    if arg == "cpu":
        return Device("cpu")
    if arg == "auto":
        if torch_cuda_version() is None:
            return Device("cpu")
        visible = visible_gpus()
        return _cuda_device(arg, 0, visible) if visible else Device("cpu")
    match = re.fullmatch(r"cuda(?::([+-]?\d+))?", arg)
    if match is None:
        raise UserError(f"bad device {arg!r}; use auto, cpu, cuda or cuda:N")
    index = int(match.group(1) or 0)
    if index < 0:
        raise UserError(f"bad device index {index} in {arg!r}; CUDA devices count from 0")
    visible = visible_gpus()
    if not visible:
        raise UserError(f"{arg} requested but no CUDA GPU is visible{_why(visible)}")
    if index >= len(visible):
        count = "1 GPU is" if len(visible) == 1 else f"{len(visible)} GPUs are"
        raise UserError(f"{arg} requested but only {count} visible{_why(visible)}")
    return _cuda_device(arg, index, visible)


def _cuda_device(arg: str, index: int, visible: list[dict]) -> Device:
    d = visible[index]
    if d["uuid"] is None:
        raise UserError(f"{arg}: NVML gives no UUID for {d['name']}, so no worker can be pinned to it")
    return Device("cuda", index, d["uuid"], d["name"], d["is_mig"], d["parent_uuid"])


# --- which GPU a worker runs on --------------------------------------------------------------------


def nvml_uuid_forms(framework_uuid: str | bytes) -> list[str]:
    """NVML spellings a framework's device UUID may stand for.  torch's
    `get_device_properties(i).uuid` prints bare ('58a1e5ba-...'), as does CUDA.jl's; NVML prefixes
    'GPU-' for a GPU and 'MIG-' for a MIG slice.  16 raw bytes are read as the UUID."""
    if isinstance(framework_uuid, bytes) and len(framework_uuid) == 16:
        framework_uuid = str(uuidlib.UUID(bytes=framework_uuid))
    text = _text(framework_uuid).strip()
    if text[:4].upper() in ("GPU-", "MIG-"):
        return [text[:4].upper() + text[4:].lower()]
    try:
        bare = str(uuidlib.UUID(text))
    except ValueError:
        bare = text.lower()
    return [f"GPU-{bare}", f"MIG-{bare}"]


def gpu_identity(framework_name: str, framework_uuid: str | bytes) -> dict:
    """Which GPU a worker's framework actually runs on: {"name": the framework's name (a MIG
    slice's says so), "uuid": NVML's UUID for it (None if NVML does not know it),
    "framework_uuid": as the framework gave it}.  Check it with `Device.same_gpu`."""
    found = None
    with nvml_session() as nv:
        if nv is not None:
            found = next((u for u in nvml_uuid_forms(framework_uuid)
                          if nvml_call(nv, "nvmlDeviceGetHandleByUUID", u) is not None), None)
    return {"name": framework_name, "uuid": found, "framework_uuid": _text(framework_uuid)}
