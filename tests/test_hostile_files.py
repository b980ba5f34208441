"""Property test: a real results file mutated field by field (types, ranges, markers, mathtext) never
makes a report (markdown, details, plot, README update, csv, json lines, HTML) or a diff exit 3, and
a README update never touches the bytes outside its markers."""

import json
from pathlib import Path

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybench.cli import main as cli
from pybench.report.markdown import BEGIN_MARKER, END_MARKER

REAL = Path(__file__).parents[1] / "results" / "epyc-2core-20261129-161603.json"
RAW = "@@raw@@"  # stands for JSON text that json.dumps cannot write (5000 digits, NaN, 1e400)
DELETE = object()


def _real_doc() -> dict:
    """The real file, cut to one cell (PyTorch and JAX on Resnet18) so that an example is quick."""
    doc = json.loads(REAL.read_text())
    doc["records"] = [r for r in doc["records"] if r["spec"]["model"] == "resnet18"]
    assert len(doc["records"]) == 2
    return doc


BASE = _real_doc()


def _paths(node, prefix=()):
    yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        if key != "summary":  # written for human readers, never read back
            yield from _paths(child, (*prefix, key))


PATHS = [p for p in _paths(BASE) if p and p[0] == "records"]
HOSTILE_TEXT = [
    END_MARKER, BEGIN_MARKER, "<!-- x", "-->", "$\\frac{1}{0}$", "$x^{2$", "a|b", "*_`[", "\n\n# h", "",
    "nosuch", "cuda:x", "forward", "\x1b[2J", "&lt;!--",
]
RAW_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "9" * 5000, "5e-324", "1e308", str(10**400)]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10), st.integers(), st.floats(),
    st.sampled_from(HOSTILE_TEXT), st.text(max_size=12),
    st.sampled_from([RAW + r for r in RAW_NUMBERS]),
    st.lists(st.one_of(st.integers(-3, 3), st.sampled_from(HOSTILE_TEXT)), max_size=3),
    st.just({}), st.just({"x": 1}), st.just(DELETE),
)


def _mutated(path, value) -> str:
    doc = json.loads(json.dumps(BASE))
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
        return json.dumps(doc)
    raw = value[len(RAW):] if isinstance(value, str) and value.startswith(RAW) else None
    node[path[-1]] = RAW if raw is not None else value
    text = json.dumps(doc)
    return text.replace(json.dumps(RAW), raw) if raw is not None else text


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), value=VALUES)
def test_no_mutated_file_makes_exit_3(tmp_path, restore_signals, path, value):
    original = tmp_path / "original.json"
    original.write_text(json.dumps(BASE))
    bad = tmp_path / "mutated.json"
    bad.write_text(_mutated(path, value))
    before, after = "# Title\n\nkept $x$ <b>\n\n", "\n\n## After\n\nalso kept\n"
    readme = tmp_path / "README.md"
    readme.write_text(f"{before}{BEGIN_MARKER}\nold\n{END_MARKER}{after}")
    codes = {
        "report": cli.main(["report", str(bad)]),
        "plot": cli.main(["report", str(bad), "--details", "--plot", str(tmp_path / "p.png")]),
        "readme": cli.main(["report", str(bad), "--readme", str(readme)]),
        "readme again": cli.main(["report", str(bad), "--readme", str(readme)]),
        "exports": cli.main(["report", str(bad), "--format", "csv", "--html", str(tmp_path / "r.html")]),
        "raw": cli.main(["report", str(bad), "--format", "jsonl", "--raw"]),
        "diff": cli.main(["diff", str(original), str(bad)]),
    }
    assert all(code in (0, 2) for name, code in codes.items() if name != "diff"), (path, codes)
    assert codes["diff"] in (0, 1, 2), (path, codes)
    text = readme.read_text()
    assert text.startswith(before + BEGIN_MARKER) and text.endswith(END_MARKER + after), (path, text)
    assert text.count(BEGIN_MARKER) == text.count(END_MARKER) == 1
