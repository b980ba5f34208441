"""The answer at a glance (issue 25): verdict lines, tables that fit 80/100/120 columns without a
wrapped or cut cell, reasons instead of blank cells, parity (cached per versions), numerics stated and
compared, break-even in steps.  Synthetic records (tests/factories.py) and a scripted parity check."""

from __future__ import annotations

import dataclasses
import json
import random
import re

import pytest
from rich.console import Console

from factories import record, spread
from pybench.records.numerics import Numerics, Parity, speed_differences
from pybench.records.record import CellRecord
from pybench.records.shape import Malformed
from pybench.records.statistics import STATS
from pybench.report.answer import answers
from pybench.report.format import fixed, fmt_duration
from pybench.report.glance import compare_answer
from pybench.report.view import rows_of
from pybench.rounds import parity

TRAIN = {"forward": 0.1, "backward": 0.2, "total": 0.3, "inference": 0.08, "step": 0.35}
SCIENTIFIC = re.compile(r"\d[eE][+-]?\d")


def _rounds(medians: dict[str, float], n: int = 5, jitter: float = 0.02, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [{p: spread(m * (1 + rng.uniform(-jitter, jitter))) for p, m in medians.items()} for _ in range(n)]


def _numerics(**changes) -> Numerics:
    base = dict(dtype="float32", tf32=False, matmul_precision="highest", autotuned=False, autotune="none (CPU)",
                cuda_graphs=False, compile="eager", preallocate="none (CPU)", threads=4, layout="NCHW")
    return Numerics(**{**base, **changes})


def _pair(jax_factor: float = 1.7, jax_first: float = 12.0, torch_first: float = 0.5, jitter: float = 0.02,
          device: str = "cpu") -> list[CellRecord]:
    torch = record("pytorch", "resnet50", rounds=_rounds(TRAIN, jitter=jitter), device=device, first_run=torch_first)
    jax = record("jax", "resnet50", rounds=_rounds({p: v * jax_factor for p, v in TRAIN.items()}, jitter=jitter,
                                                     seed=2), device=device, first_run=jax_first)
    torch.numerics, jax.numerics = _numerics(), _numerics(compile="XLA jit", layout="NHWC")
    jax.parity = Parity(True, 3e-6, 1e-4)
    return [torch, jax]


def _render(records: list[CellRecord], width: int) -> str:
    console = Console(width=width, record=True)
    for item in compare_answer(records, width):
        console.print(item)
    return console.export_text()


def test_numbers_are_never_scientific():
    for exponent in range(-9, 9):
        for mantissa in (1.0, 1.234, 9.996):
            value = mantissa * 10**exponent
            assert not SCIENTIFIC.search(fixed(value)), value
            assert not SCIENTIFIC.search(fmt_duration(value, value / 3)), value
    assert fixed(21.93) == "21.9" and fixed(1234.5) == "1,230" and fixed(0.76) == "0.76"


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_answer_fits_without_a_wrapped_or_cut_cell(width):
    records = _pair() + [record("flux", "resnet50", error="Julia is not set up: pybench setup-julia", device="cpu")]
    text = _render(records, width)
    lines = text.splitlines()
    assert max(map(len, lines)) <= width
    tables = text.split("break-even")[-1]  # parity's tiny difference reads as '3e-6' by design
    assert "…" not in text and not SCIENTIFIC.search(tables)
    # every table row is one line: the phase, both times and the ratio on the same line
    for phase in ("Forward Pass", "Backward Pass", "Total Time", "Inference", "Training Step"):
        rows = [line for line in lines if line.strip().startswith(phase)]
        assert any(re.search(r"\d ms\b.* \d+(\.\d+)? ms\b.*× slower (±|\[)", line) for line in rows), (phase, rows)
    assert "resnet50: Flux failed: Julia is not set up" in text


def test_verdict_line_first_with_interval_and_decided_phases():
    text = _render(_pair(), 1000)  # the verdict wraps as prose in a narrow terminal
    first = text.splitlines()[0]
    assert re.match(r"resnet50: JAX 1\.\d\d× slower than PyTorch per training step \[1\.\d\d, 1\.\d\d\]; "
                    r"inference 1\.\d\d× slower", first), first
    assert "5 of 5 phases decided" in text
    assert "parity: outputs agree to 3e-6" in text


def test_a_faster_framework_reads_as_faster_with_the_interval_turned():
    a = answers(rows_of(_pair(jax_factor=0.5)))[0]
    phase, reading = a.training
    assert phase == "step" and reading.word == "faster" and 1.9 < reading.factor < 2.1
    assert reading.low < reading.factor < reading.high


def test_disagreeing_parity_and_speed_changing_numerics_are_flagged_in_the_verdict():
    records = _pair()
    records[1].parity = Parity(False, 0.41, 1e-4)
    records[1].numerics = _numerics(tf32=True, compile="XLA jit")
    sentence = answers(rows_of(records))[0].sentence()
    assert "OUTPUTS DISAGREE" in sentence and "TF32 on one side only" in sentence
    assert "outputs DIFFER by 0.41" in _render(records, 100)


def test_numerics_that_change_speed_are_told_from_those_that_do_not():
    a = _numerics()
    assert speed_differences(a, _numerics(layout="NHWC", compile="XLA jit"), cpu=True) == []
    mixed = _numerics(dtype="bfloat16 (autocast)")
    assert speed_differences(a, mixed, cpu=False) == ["compute dtype float32 vs bfloat16 (autocast)"]
    assert speed_differences(a, _numerics(threads=8), cpu=True) == ["threads 4 vs 8"]
    assert speed_differences(a, _numerics(threads=8), cpu=False) == []


def test_break_even_counts_the_steps_until_the_faster_side_pays_back_its_first_run():
    # JAX 2x faster per step but 12 s of first run against 0.5 s: ahead once 11.5 s are made up
    a = answers(rows_of(_pair(jax_factor=0.5)))[0]
    saving = a.break_even.phase and (0.35 - 0.175)
    assert a.break_even.faster == "JAX"
    assert abs(a.break_even.steps - (int(11.5 / saving) + 2)) <= 3  # the medians carry a 2% jitter
    assert f"break-even after {a.break_even.steps:,} steps" in a.break_even.text
    slower = answers(rows_of(_pair(jax_factor=1.7)))[0]
    assert slower.break_even.steps == 1 and "from the first step" in slower.break_even.text


def test_too_noisy_and_no_quiet_round_say_why_instead_of_an_interval():
    noisy = _pair(jitter=0.9)
    text = _render(noisy, 100)
    assert "too noisy" in text and "wider than ±100%" in text
    busy = _pair()
    for r in busy:
        for rnd in r.rounds:
            rnd.other_busy = 0.5
    text = _render(busy, 100)
    assert "no quiet round" in text and "in every round" in text
    assert "[" not in text.split("Training Step")[1].splitlines()[0]  # no interval from disturbed rounds


def test_numerics_and_parity_survive_the_file_and_are_checked():
    r = _pair()[1]
    back = CellRecord.from_json(json.loads(json.dumps(r.to_json())))
    assert back.numerics == r.numerics and back.parity == r.parity
    data = r.to_json()
    data["numerics"]["tf32"] = "yes"
    with pytest.raises(Malformed, match=r"numerics\.tf32"):
        CellRecord.from_json(data)


def test_parity_runs_once_per_versions_then_comes_from_the_cache(tmp_path):
    calls = []

    def check(framework, model, image_size, device):
        calls.append((framework.name, model, image_size, device))
        return Parity(True, 2e-6, 1e-4)

    cache = tmp_path / "parity.json"
    records = _pair()
    for r in records:
        r.parity = None
    parity.attach(records, check=check, path=cache)
    assert calls == [("jax", "resnet50", 224, "cpu")]
    assert records[1].parity.max_rel_diff == 2e-6 and records[0].parity is None  # PyTorch is the reference
    parity.attach(_pair(), check=check, path=cache)
    assert len(calls) == 1 and json.loads(cache.read_text())
    again = _pair()
    parity.attach(again, enabled=False, check=check, path=cache)
    assert again[1].parity.text() == "parity: not checked (--no-parity)" and len(calls) == 1


def test_a_check_that_could_not_run_is_not_cached(tmp_path):
    cache = tmp_path / "parity.json"
    records = _pair()
    parity.attach(records, check=lambda *a: Parity(False, None, 1e-4, "the check failed: boom"), path=cache)
    assert records[1].parity.text() == "parity: not checked (the check failed: boom)" and not cache.exists()


def test_a_cache_that_cannot_be_written_still_gives_the_answer(tmp_path):
    (tmp_path / "blocker").write_text("a file where the cache's folder would be")
    said, records = [], _pair()
    parity.attach(records, check=lambda *a: Parity(True, 2e-6, 1e-4), path=tmp_path / "blocker" / "parity.json",
                  say=said.append)
    assert records[1].parity.max_rel_diff == 2e-6
    assert "parity: not cached" in said[-1] and "the next compare checks again" in said[-1]


@pytest.mark.slow  # imports torch and builds resnet18: about 7 s on the 2-core machine
def test_pytorch_reads_its_numerics_from_torch():
    from pybench.backends.pytorch.backend import PyTorchBackend
    from pybench.records.spec import CellSpec

    backend = PyTorchBackend(CellSpec("pytorch", "resnet18", "cpu", 1, 32, threads=2, dtype="bf16"))
    backend.prepare()
    n = backend.numerics()
    assert n.dtype == "bfloat16 (autocast)" and n.threads == 2 and n.layout == "NCHW" and not n.tf32
    assert n.compile == "eager" and n.autotune == "none (CPU)"


def test_report_details_and_exports_carry_break_even(tmp_path):
    from factories import results_file
    from pybench.report.command import export_text
    from pybench.report.markdown import render_tables

    docs = [results_file(_pair(jax_factor=0.5))]
    md = render_tables(docs, details=True)
    assert re.search(r"JAX vs PyTorch: parity: outputs agree to 3e-6; .*break-even after [\d,]+ steps", md)
    lines = export_text(docs, "csv", raw=False, stat="median").splitlines()
    head = lines[0].split(",")
    steps = [line.split(",")[head.index("break_even_steps")] for line in lines[1:]]
    assert len([s for s in steps if s]) == len(STATS)  # the JAX row's step phase, once per statistic


def test_html_opens_with_the_verdict_and_a_forest_axis_that_fits():
    from factories import results_file
    from pybench.report.html import ratio_domain
    from pybench.report.command import html_page

    page = html_page([results_file(_pair())], "median", None)
    answer, seed = page.index('class="verdict'), page.index('class="seed"')
    forest = page.index('data-chart="forest"')
    assert answer < forest < seed
    assert "resnet50: JAX 1." in page[answer:forest] and "break-even" in page[answer:forest]
    low, high = ratio_domain([{"value": 1.7, "lo": 1.6, "hi": 1.8}, {"value": 1.2, "lo": None, "hi": None}])
    assert 0.85 < low < 1 and 1.8 < high < 2.0  # 1 and the data, not 0.1 to 100


@pytest.mark.slow
def test_compare_prints_the_answer_with_parity_numerics_and_break_even(tmp_path, monkeypatch):
    from processes import pybench
    from pybench.records import results

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    small = ["--model", "resnet18", "--framework", "pytorch", "jax", "--device", "cpu", "--batch-size", "2",
             "--image-size", "64", "--threads", "1", "--rounds", "2", "--max-time", "1", "--precision", "0.2"]
    p = pybench("compare", *small, "--results", tmp_path / "a", timeout=600)
    assert p.returncode == 0, p.stderr
    first = p.stdout.splitlines()[0]
    assert first.startswith("resnet18: JAX ") and "phases decided" in first, p.stdout
    assert re.search(r"parity: outputs agree to \de-\d", p.stdout), p.stdout
    assert "numerics" in p.stdout and "break-even" in p.stdout
    (path,) = (tmp_path / "a").glob("*.json")
    torch, jax = results.load(path).records
    assert torch.numerics.compile == "eager" and jax.numerics.compile == "XLA jit" and jax.parity.ok
    assert json.loads((tmp_path / "cache" / "pybench" / "parity.json").read_text())
    p = pybench("compare", *small, "--no-parity", "--results", tmp_path / "b", timeout=600)
    assert p.returncode == 0, p.stderr
    assert "parity: not checked (--no-parity)" in p.stdout


@pytest.mark.slow
def test_the_html_first_screen_shows_the_verdict_and_the_forest_plot(tmp_path):
    import shutil
    from pathlib import Path

    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if not executable:
        pytest.skip("no Chromium: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright
    from pybench.cli.main import main

    out = tmp_path / "report.html"
    assert main(["report", str(Path(__file__).parent / "data" / "html"), "--html", str(out)]) == 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(out.as_uri())
        page.wait_for_function("[...document.querySelectorAll('div.chart')].every(d => d.dataset.rendered)",
                               timeout=30_000)
        page.screenshot(path=str(tmp_path / "first-screen.png"))
        verdict = page.query_selector("p.verdict").bounding_box()
        forest = page.query_selector("div.chart[data-chart=forest] svg").bounding_box()
        browser.close()
    assert verdict["y"] + verdict["height"] <= 900 and forest["y"] + forest["height"] <= 900


def test_the_readme_sample_replaces_only_its_block():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "readme_sample.py"
    spec = importlib.util.spec_from_file_location("readme_sample", path)
    sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sample)
    text = f"a\n{sample.BEGIN}\nold\n{sample.END}\nz\n"
    assert sample.replace_block(text, "new") == f"a\n{sample.BEGIN}\nnew\n{sample.END}\nz\n"
    with pytest.raises(SystemExit):
        sample.replace_block(text + sample.BEGIN, "new")
    rendered = sample.render(_pair(), 100)
    assert rendered.startswith("resnet50: JAX") and max(map(len, rendered.splitlines())) <= 100


@pytest.mark.slow  # imports JAX and Flax: about 20 s on the 2-core machine
def test_jax_reads_its_numerics_from_jax_and_xla_flags(monkeypatch):
    from pybench.backends.jax.backend import JaxBackend, _xla_flag
    from pybench.records.spec import CellSpec

    backend = JaxBackend(CellSpec("jax", "resnet18", "cpu", 1, 32, threads=1, dtype="bf16"))
    backend.prepare()
    n = backend.numerics()
    assert n.dtype == "bfloat16" and n.matmul_precision == "highest" and not n.tf32 and n.layout == "NHWC"
    assert n.compile == "XLA jit" and not n.autotuned and not n.cuda_graphs
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_autotune_level=0 --xla_gpu_enable_command_buffer=")
    assert _xla_flag("xla_gpu_autotune_level", "4") == "0" and _xla_flag("xla_gpu_enable_command_buffer", "x") == ""
    assert _xla_flag("xla_other", "4") == "4"


def test_the_header_names_the_level_the_ratios_used():
    fixed_rounds = _pair()
    assert "[95% interval]" in _render(fixed_rounds, 1000)  # --rounds N: ratios at the stop's 95%
    auto = []
    for r in _pair():
        r.spec = dataclasses.replace(r.spec, stop=dataclasses.replace(r.spec.stop, sequential=True))
        auto.append(r)
    assert "[95% interval; ratios 97.5%]" in _render(auto, 1000)
