"""Version-1 results documents (one process per cell, statistics stored per phase, label and device
name only in the file's environment) read as version 2: each record becomes one unnumbered round."""

from __future__ import annotations

import re
from typing import Any

from pybench.protocol.phases import PHASES
from pybench.protocol.group import StopRule
from pybench.records.round import SCHEMA_VERSION, parse
from pybench.records.shape import field_of


_V1_REASONS = {"converged": "converged", "max_samples": "max_samples", "max_time": "noisy"}


def migrate_v1(doc: dict) -> dict:
    """A version-1 document as version 2: each record becomes one round; the label and device name,
    which version 1 kept only in the file's environment, move into the spec."""
    env = field_of(doc, "environment", dict, "environment")
    label = str(env.get("label") or env.get("hostname") or "unknown")
    records = [parse(f"record #{i + 1}", lambda: _migrate_record(rec, f"record #{i + 1}", label, env))
               for i, rec in enumerate(field_of(doc, "records", list, "file"))]
    return {**doc, "schema_version": SCHEMA_VERSION, "records": records}


def _migrate_record(rec: Any, where: str, label: str, env: dict) -> dict:
    spec = dict(field_of(rec, "spec", dict, where))
    device = field_of(spec, "device", str, f"{where}.spec")
    spec.setdefault("label", label)
    spec.setdefault("device_name", _v1_device_name(device, env))
    stop = field_of(spec, "stop", dict, f"{where}.spec", optional=True) or {}
    spec["stop"] = {k: v for k, v in stop.items() if k in StopRule.__dataclass_fields__}
    spec.setdefault("phases", list(field_of(rec, "phases", dict, where, optional=True) or ()))
    for stale in ("variant",):
        spec.pop(stale, None)
    status = field_of(rec, "status", str, where)
    status = "skipped" if rec.get("skipped") else status
    fw_env = field_of(rec, "framework_env", dict, where, optional=True) or {}
    title = f"{fw_env.get('framework') or spec.get('framework')} {fw_env.get('version') or ''}".strip()
    rounds = []
    if status == "ok":
        phases = {name: field_of(field_of(rec, "phases", dict, where), name, dict, f"{where}.phases")
                  for name in rec["phases"]}
        memory = {}
        for name, p in phases.items():
            peaks = field_of(p, "memory", dict, f"{where}.phases.{name}", optional=True) or {}
            memory.setdefault(PHASES[name].group if name in PHASES else name,
                              {k: v for k, v in peaks.items() if v is not None})
        rounds.append({
            "phases": {name: {"first_run": p.get("first_run"), "warmup": p.get("warmup", []),
                              "samples": p.get("samples"),
                              "stop_reason": _V1_REASONS.get(p.get("stop_reason"), "noisy")}
                       for name, p in phases.items()},
            "memory": memory,
        })
    workload = rec.get("workload")
    if isinstance(workload, dict):
        note = workload.get("architecture_note")
        workload = {"params": workload.get("params"), "flops_forward": workload.get("flops_forward"),
                    "notes": [note] if note else []}
    return {
        "spec": spec, "status": status, "title": title, "error": rec.get("error"),
        "workload": workload, "framework_env": fw_env, "rounds": rounds, "peak": rec.get("peak"),
        "warnings": [], "stderr_tail": rec.get("stderr_tail") or [],
        "wall_time": rec.get("wall_time") or 0.0,
    }


def _v1_device_name(device: str, env: dict) -> str:
    if device.startswith("cuda"):
        found = re.fullmatch(r"cuda(?::([0-9]{1,3}))?", device)
        if not found:
            return device  # the spec's own check names the bad device
        index = int(found.group(1) or 0)
        for gpu in env.get("gpus") or []:
            if isinstance(gpu, dict) and gpu.get("index") == index:
                return str(gpu.get("name"))
        return device
    return str(env.get("cpu") or "CPU")
