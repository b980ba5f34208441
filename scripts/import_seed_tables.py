"""Turn the seed's published markdown tables into the bundled reference dataset.

    python scripts/import_seed_tables.py [SEED_MD] [OUT_JSON]

Defaults: ../shared/reference/seed-2018-tables.md -> pybench/data/seed-2018.json.  Every number keeps
its published text too ("0.097551" has no unit in the original), so a report can show it verbatim.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pybench.protocol.workloads import WORKLOADS  # noqa: E402

DEFAULT_MD = ROOT.parent / "shared" / "reference" / "seed-2018-tables.md"
DEFAULT_OUT = ROOT / "pybench" / "data" / "seed-2018.json"
YEAR = 2018
# The seed names Flux without a version; its README dates the tables to Flux 0.6.
FRAMEWORKS = {"Pytorch 0.4": "PyTorch 0.4", "Flux": "Flux 0.6"}
PHASES = ("forward", "backward", "total", "inference")
TITLES = {w.title.replace(" ", "").lower(): w.name for w in WORKLOADS.values()}
NUMBER = re.compile(r"^(\d+(?:\.\d+)?)(?: s)?$")


def model_name(title: str) -> str:
    try:
        return TITLES[title.replace(" ", "").lower()]
    except KeyError:
        raise ValueError(f"unknown model {title!r} in the seed tables") from None


def seconds(text: str) -> float | None:
    if not text:
        return None
    m = NUMBER.match(text)
    if not m:
        raise ValueError(f"unreadable number {text!r} in the seed tables")
    return float(m.group(1))


def batch_rule(md: str) -> tuple[int, int, int, set[str]]:
    """(default batch, image size, small GPU batch, models that use it) from 'Input Dimensions'."""
    default, small = list(re.finditer(r"Batch Size = (\d+), Image = 3 x (\d+) x \d+", md))[:2]
    listed = md[small.end():].split("##", 1)[0]  # the bullets under the second size
    models = {model_name(m) for m in re.findall(r"^\s*\*\s*(.+?)\s*$", listed, re.M)}
    return int(default.group(1)), int(default.group(2)), int(small.group(1)), models


def parse(md: str) -> dict:
    default, image, small, small_models = batch_rule(md)
    rows = []
    device = kind = None
    model = ""
    for line in md.splitlines():
        heading = re.match(r"^## (GPU|CPU) USED --- (.+?)\s*$", line)
        if heading:
            kind, device = ("cuda" if heading.group(1) == "GPU" else "cpu"), heading.group(2)
            continue
        if not line.startswith("|") or device is None or line.startswith(("|Model|", "|:")):
            continue
        cells = [c.strip() for c in line.strip()[1:-1].split("|")]  # outer pipes only: cells may be empty
        title, framework, texts = cells[0], cells[1], cells[2:]
        if len(texts) != len(PHASES):
            raise ValueError(f"expected {len(PHASES)} timings in {line!r}")
        model = model_name(title) if title else model  # the seed names a model on its first row only
        rows.append({
            "device": device,
            "device_kind": kind,
            "model": model,
            "framework": FRAMEWORKS[framework],
            "framework_text": framework,
            "batch_size": small if kind == "cuda" and model in small_models else default,
            "image_size": image,
            "year": YEAR,
            **{p: seconds(t) for p, t in zip(PHASES, texts)},
            "text": dict(zip(PHASES, texts)),
        })
    return {"name": f"seed-{YEAR}", "unit": "seconds per batch", "rows": rows}


def main(argv: list[str]) -> int:
    src = Path(argv[0]) if argv else DEFAULT_MD
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    data = parse(src.read_text(encoding="utf-8"))
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(data['rows'])} rows -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
