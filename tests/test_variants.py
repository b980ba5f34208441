"""Variants without running a worker: the syntax, presets, cell identity, tables and diff's note."""

import io
import subprocess
import sys
from dataclasses import replace

import pytest
from rich.console import Console

from factories import record, results_file, train
from pybench.report import diff
from pybench.cli.main import build_parser
from pybench.cli.request_args import request_of
from pybench.machine.environment import available_cores
from pybench.errors import UserError
from pybench.rounds.interpreter import staged_source, worker_command, worker_environ
from pybench.report.glance import compare_answer
from pybench.report.terminal import summary_table
from pybench.rounds.cells import variant_specs
from pybench.request.variants import PRESETS, Variant, parse_variant

ENV = {"cpu": "Test CPU", "label": "box"}


@pytest.mark.parametrize("text", [
    "eager=pytorch",
    "cl=pytorch,channels_last",
    "fast=pytorch,bf16,tf32,channels_last,compile=max-autotune,threads=1",
    "j=jax,fp16",
    "new=pytorch,threads=2@/opt/venv-new/bin/python",
])
def test_a_variant_reads_back_as_typed(text):
    v = parse_variant(text)
    assert str(v) == text
    assert parse_variant(str(v)) == v


def test_spellings_are_normalised_and_round_trip():
    v = parse_variant("x=pytorch,threads=1,channels-last,dtype=bf16,compile")
    assert v == Variant("x", "pytorch", dtype="bf16", channels_last=True, compile=True, threads=1)
    assert str(v) == "x=pytorch,bf16,channels_last,compile,threads=1"
    assert parse_variant(str(v)) == v


def test_a_relative_interpreter_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    v = parse_variant("n=pytorch@venv/bin/python")
    assert v.interpreter == str(tmp_path / "venv/bin/python")
    assert parse_variant(str(v)) == v


@pytest.mark.parametrize("text, message", [
    ("pytorch", "expected NAME=FRAMEWORK"),
    ("a=", "expected NAME=FRAMEWORK"),
    ("a=torch", "unknown framework 'torch'"),
    ("a=pytorch,fast", "unknown setting 'fast'"),
    ("a=pytorch,threads=two", "unknown setting 'threads=two'"),
    ("a=pytorch,threads=0", "threads must be positive"),
    ("a=pytorch,bf16,fp16", "dtype is set twice"),
    ("a=pytorch,compile,compile=max-autotune", "compile is set twice"),
    ("a=pytorch,compile=", "unknown setting 'compile='"),
    ("a=pytorch,dtype=fp8", "unknown dtype 'fp8'"),
    ("a=pytorch@", "must follow '@'"),
    ("-a=pytorch", "variant name '-a'"),
    ("a b=pytorch", "variant name 'a b'"),
])
def test_parse_errors_are_one_clear_line(text, message):
    with pytest.raises(UserError) as exc:
        parse_variant(text)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def specs(*argv):
    return variant_specs(request(["compare", "--model", "dense1024_512", "--device", "cpu", *argv]), ENV)


def request(argv):
    return request_of(build_parser().parse_args(argv), argv)


@pytest.mark.skipif(available_cores() < 2, reason="needs two cores")
def test_threads_one_against_two_are_two_specs_of_one_cell():
    a, b = specs("--variant", "a=pytorch,threads=1", "--variant", "b=pytorch,threads=2")
    assert (a.threads, b.threads, a.variant_name, b.variant_name) == (1, 2, "a", "b")
    assert a.key != b.key and a.key.cell == b.key.cell


def test_cell_identity_tells_every_setting_and_interpreter_apart():
    (base,) = specs("--variant", "a=pytorch")
    others = [replace(base, threads=base.threads + 1), replace(base, dtype="bf16"), replace(base, tf32=True),
              replace(base, channels_last=True), replace(base, compile=True),
              replace(base, compile=True, compile_mode="max-autotune"),
              replace(base, interpreter="/opt/venv/bin/python"), replace(base, variant_name="b")]
    keys = {base.key, *(o.key for o in others)}
    assert len(keys) == len(others) + 1  # never merged
    assert {k.cell for k in keys} == {base.key.cell}  # one group: measured side by side
    # Outside --variant (the A/A pair of `compare --framework pytorch pytorch` included) a cell keeps
    # its dtype and threads: those are different tables, never paired.
    for plain in (replace(base, variant_name="", named_variant=False),
                  replace(base, variant_name="pytorch#2", named_variant=False)):
        assert replace(plain, dtype="bf16").key.cell != plain.key.cell
        assert replace(plain, threads=plain.threads + 1).key.cell != plain.key.cell


def test_the_same_variant_twice_is_the_aa_control():
    a, b = specs("--variant", "a=pytorch", "--variant", "b=pytorch")
    assert a.key != b.key and a.key.cell == b.key.cell
    with pytest.raises(UserError, match="two variants are named 'a'"):
        specs("--variant", "a=pytorch", "--variant", "a=pytorch,bf16")


def test_command_line_settings_are_the_variants_defaults():
    a, b = specs("--dtype", "bf16", "--threads", "1", "--variant", "a=pytorch", "--variant", "b=pytorch,fp32")
    assert (a.dtype, a.threads, b.dtype, b.threads) == ("bf16", 1, "fp32", 1)


def test_settings_preset_on_the_cpu(capsys):
    got = specs("--variants", "settings")
    assert [(s.variant_name, s.dtype, s.channels_last, s.compile) for s in got] == [
        ("eager", "fp32", False, False), ("channels_last", "fp32", True, False),
        ("compile", "fp32", False, True), ("bf16", "bf16", False, False)]
    assert capsys.readouterr().err == ""
    assert [s.variant_name for s in specs("--variants", "aa")] == ["a", "b"]


def test_a_preset_refuses_what_the_framework_cannot_run(capsys):
    got = variant_specs(request(["run", "--framework", "jax", "--model", "dense1024_512", "--device", "cpu",
                                 "--variants", "settings"]), ENV)
    assert [s.variant_name for s in got] == ["eager", "bf16"]
    err = capsys.readouterr().err
    assert "channels_last left out: --channels-last is not a JAX option" in err
    assert "compile left out: --compile is not a JAX option" in err


def test_explicit_variants_that_cannot_run_are_refused():
    with pytest.raises(UserError, match="variant j: --channels-last is not a JAX option"):
        specs("--variant", "a=pytorch", "--variant", "j=jax,channels_last")
    with pytest.raises(UserError, match="no compile mode 'fastest'"):
        specs("--variant", "a=pytorch,compile=fastest")
    with pytest.raises(UserError, match="variant a: threads 999 is more than"):
        specs("--variant", "a=pytorch,threads=999")
    with pytest.raises(UserError, match="--framework and --variant both choose"):
        request(["run", "--framework", "jax", "--variant", "a=pytorch"])


def test_presets_are_documented():
    assert set(PRESETS) == {"settings", "aa"} and all(p.question for p in PRESETS.values())


def _render(table) -> str:
    console = Console(file=io.StringIO(), width=400, color_system=None)
    console.print(table)
    return console.file.getvalue()


def _variant(name, medians, **spec):
    rounds = [{p: [m * f] * 9 for p, m in medians.items()} for f in (1, 1.01, 0.99)]
    r = record("pytorch", "resnet18", rounds=rounds)
    r.spec = replace(r.spec, variant_name=name, named_variant=True, **spec)
    return r


def test_tables_name_the_variants_and_take_ratios_against_the_first():
    # Given in this order: "z" first, although it sorts after "a": it is the baseline.
    first = _variant("z", train(1.0, 2.0), threads=1)
    second = _variant("a", train(0.5, 1.0), threads=2)
    text = "\n".join(_render(item) for item in compare_answer([first, second], 300))
    assert "PyTorch 2.14.1 (a, 2 threads) vs PyTorch 2.14.1 (z, 1 thread)" in text  # a, vs z
    assert "PyTorch (a, 2 threads) 2.00× faster than PyTorch (z, 1 thread)" in text
    assert "(z, 1 thread)" in _render(summary_table([first, second]))


def test_diff_says_it_is_unpaired_and_points_to_compare():
    rows = diff.compare_runs([results_file([record("pytorch", "vgg16", {"total": 1.0})])],
                             [results_file([record("pytorch", "vgg16", {"total": 1.0})])])
    text = " ".join(_render(diff.diff_table(rows)).split())
    assert "cannot be told from a change" in text and "pybench compare --variant" in text


def test_another_interpreter_gets_staged_pybench_and_none_of_this_environment():
    (plain,) = specs("--variant", "a=pytorch")
    other = replace(plain, interpreter="/opt/venv/bin/python")
    base = {"PYTHONPATH": "/work/checkout", "PYTHONHOME": "/usr", "PATH": "/bin", "OMP_NUM_THREADS": "1"}
    assert worker_environ(plain, base) == base
    env = worker_environ(other, base)
    assert env == {"PATH": "/bin", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(staged_source())}
    cmd = worker_command(other)
    assert cmd[0] == "/opt/venv/bin/python" and str(staged_source()) in cmd[2]
    staged = staged_source()
    assert [p.name for p in staged.iterdir()] == ["pybench"]  # nothing beside it on the path
    assert (staged / "pybench" / "rounds" / "worker.py").is_file() and not list(staged.rglob("__pycache__"))


def test_markdown_keeps_the_variants_of_a_model_in_one_table():
    from pybench.report.markdown import render_tables

    first = _variant("z", train(1.0, 2.0), threads=1, dtype="bf16")
    second = _variant("a", train(0.5, 1.0), threads=2)
    text = render_tables([results_file([first, second])])
    assert text.count("|Model|") == 1 and "thread" not in text.split("|Model|")[0].split("##")[-1]
    assert text.index("(z, bf16, 1 thread)") < text.index("(a, 2 threads)")


def test_a_flux_worker_under_another_interpreter_finds_the_julia_code(tmp_path):
    # Its staged pybench lies away from the repository: the orchestrator names the repository.
    from pybench.backends.flux.julia_env import JULIA_DIR, ROOT_ENV, juliacall_env

    assert (JULIA_DIR / "PyBench.jl").is_file()
    env = juliacall_env(1)
    code = "from pybench.backends.flux.julia_env import JULIA_DIR; print(JULIA_DIR)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(staged_source()),
                            ROOT_ENV: env[ROOT_ENV]})
    assert p.stdout.strip() == str(JULIA_DIR), p.stderr


def test_exports_carry_the_variant_identity():
    from pybench.report import export
    from pybench.report.selection import measured_sections

    other = _variant("new", train(0.5, 1.0), interpreter="/opt/venv/bin/python")
    sections = measured_sections([results_file([_variant("old", train(1.0, 2.0)), other])])
    rows = list(export.stat_rows({"median": sections}))
    assert {(r["variant_name"], r["interpreter"]) for r in rows} == {("old", ""),
                                                                    ("new", "/opt/venv/bin/python")}
    raw = next(iter(export.raw_rows(sections)))
    assert set(raw) == set(export.RAW_COLUMNS) and raw["variant_name"] == "old"


def test_a_variant_spec_survives_json():
    (spec,) = specs("--variant", "n=pytorch,compile=max-autotune")
    spec = replace(spec, interpreter="/opt/venv/bin/python")  # no probe: this path need not exist
    back = type(spec).from_json(spec.to_json())
    assert back == spec and back.key == spec.key and back.named_variant and back.interpreter


def test_variants_are_refused_on_slurm():
    with pytest.raises(UserError, match="not with --executor slurm"):
        request(["compare", "--model", "resnet18", "--executor", "slurm", "--variants", "aa"])
    assert request(["compare", "--model", "resnet18", "--variants", "aa"]).presets == ("aa",)
