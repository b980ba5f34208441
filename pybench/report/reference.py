"""Published datasets bundled with pybench (pybench/data/<name>.json): figures to show beside, never
among, this machine's measurements."""

from __future__ import annotations

import json
from importlib.resources import files

from pybench.errors import UserError


def available() -> list[str]:
    return sorted(p.name[:-5] for p in (files("pybench") / "data").iterdir() if p.name.endswith(".json"))


def load_reference(name: str = "seed-2018") -> list[dict]:
    """The rows of a bundled dataset: device, model, framework, seconds per phase (None: never measured)
    and the published text of each number."""
    names = available()
    if name not in names:
        raise UserError(f"unknown reference {name!r}; valid: {', '.join(names)}")
    data = json.loads((files("pybench") / "data" / f"{name}.json").read_text(encoding="utf-8"))
    return data["rows"]
