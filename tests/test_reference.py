"""The bundled published dataset reproduces the seed's tables number for number."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

from pybench.errors import UserError
from pybench.report.reference import load_reference
from pybench.protocol.phases import SEED_PHASES as PHASES
from pybench.report.format import model_title

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "reference" / "seed-2018-tables.md"
needs_seed = pytest.mark.skipif(not SEED.exists(), reason=f"seed tables not found at {SEED}")


def seed_rows(md: str) -> list[tuple]:
    """(device, model title, framework text, four cell texts) for every table row, read independently
    of scripts/import_seed_tables.py."""
    out, device, title = [], None, None
    for line in md.splitlines():
        if line.startswith("## ") and " USED --- " in line:
            device = line.split(" --- ", 1)[1]
        elif re.match(r"^\|[^:M]|^\|\|", line):
            cells = line.split("|")[1:-1]
            title = cells[0] or title
            out.append((device, title, cells[1], tuple(cells[2:])))
    return out


@needs_seed
def test_dataset_reproduces_every_published_number():
    rows = load_reference("seed-2018")
    ours = [(r["device"], model_title(r["model"]), r["framework_text"], tuple(r["text"][p] for p in PHASES))
            for r in rows]
    assert ours == seed_rows(SEED.read_text(encoding="utf-8"))
    for r in rows:
        for p in PHASES:
            text = r["text"][p]
            assert r[p] == (float(text.removesuffix(" s")) if text else None)


@needs_seed
def test_generator_output_is_the_committed_file():
    spec = importlib.util.spec_from_file_location("import_seed_tables", ROOT / "scripts" / "import_seed_tables.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    committed = json.loads((ROOT / "pybench" / "data" / "seed-2018.json").read_text(encoding="utf-8"))
    assert script.parse(SEED.read_text(encoding="utf-8")) == committed


def test_dataset_shape_and_batch_rule():
    rows = load_reference()
    assert {r["device"] for r in rows} == {"Tesla V100 16 GB", "Tesla P100 16 GB", "Titan 1080Ti 12 GB",
                                           "Intel(R) Xeon(R) Silver 4114 CPU @ 2.20GHz"}
    assert {r["framework"] for r in rows} == {"PyTorch 0.4", "Flux 0.6"}
    for r in rows:
        small = r["device_kind"] == "cuda" and r["model"] in ("resnet101", "resnet152")
        assert (r["batch_size"], r["image_size"]) == ((4 if small else 8), 224)
    unitless = [(r["device"], r["model"], r["text"]["inference"]) for r in rows
                if r["text"]["inference"] and not r["text"]["inference"].endswith(" s")]
    assert unitless == [("Tesla P100 16 GB", "resnet50", "0.097551"), ("Titan 1080Ti 12 GB", "resnet18", "0.0219")]
    # The 1080 Ti table has no Flux row for Resnet152 at all: 4 devices x 9 models x 2 frameworks - 1.
    assert len(rows) == 71


def test_unknown_reference_lists_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown reference 'seed-2019'; valid: seed-2018$"):
        load_reference("seed-2019")
