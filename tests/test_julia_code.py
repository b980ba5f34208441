"""The Julia half, checked without Julia: it parses, defines what Python calls with that arity, samples
the protocol's groups and phases, and trains with the optimiser settings every side shares."""

from __future__ import annotations

import ast
import math
from collections import defaultdict
from pathlib import Path

import pytest

from pybench.backends.base import SGD_LR, SGD_MOMENTUM
from pybench.backends.flux.backend import JULIA_API
from pybench.backends.flux.julia_env import JULIA_COMPAT
from pybench.protocol.phases import GC_SUFFIX, PHASES, measured_phases

ts = pytest.importorskip("tree_sitter")
tsj = pytest.importorskip("tree_sitter_julia")

ROOT = Path(__file__).resolve().parent.parent
JULIA_FILES = sorted((ROOT / "julia").glob("*.jl"))
PYBENCH_JL = ROOT / "julia" / "PyBench.jl"
# Python modules that call PyBench.jl, through a JuliaAPI held as `api` or `self.api`.
CALLERS = [ROOT / "pybench" / "backends" / "flux" / "backend.py", ROOT / "pybench" / "backends" / "flux" / "parity.py"]


def parse(path: Path):
    return ts.Parser(ts.Language(tsj.language())).parse(path.read_bytes())


def bad_nodes(node) -> list[str]:
    found = []
    if node.type == "ERROR" or node.is_missing:
        found.append(f"line {node.start_point[0] + 1}: {node.text.decode(errors='replace')[:60]!r}")
    for child in node.children:
        found += bad_nodes(child)
    return found


def call_signature(node):
    """The call_expression of a method signature (unwrapping `where`), or None."""
    while node is not None and node.type == "where_expression":
        node = node.children[0]
    return node if node is not None and node.type == "call_expression" else None


def arity(call) -> tuple[str, int, float] | None:
    """(name, fewest, most) positional arguments of a method definition's signature."""
    callee, args = call.children[0], call.children[-1]
    if callee.type != "identifier" or args.type != "argument_list":
        return None  # e.g. Flux.testmode!(...): extends another module's function
    required, optional = 0, 0.0
    for child in args.children:
        if child.type == ";":
            break  # keyword arguments follow
        if child.type in ("(", ")", ","):
            continue
        if child.type == "named_argument":
            optional += 1
        elif child.type == "splat_expression":
            optional = math.inf
        else:
            required += 1
    return callee.text.decode(), required, required + optional


def nodes(node, kind: str):
    """Every node of this type under `node`, depth first."""
    if node.type == kind:
        yield node
    for child in node.children:
        yield from nodes(child, kind)


def string_value(node) -> str | None:
    """The text of a plain string literal (no interpolation), else None."""
    if node.type != "string_literal" or any(c.type == "string_interpolation" for c in node.children):
        return None
    return node.text.decode()[1:-1]


def julia_function(name: str, path: Path = PYBENCH_JL):
    """The `function NAME(...) ... end` definition in a Julia file."""
    for node in nodes(parse(path).root_node, "function_definition"):
        sig = next((c for c in node.children if c.type == "signature"), None)
        call = call_signature(sig.children[0]) if sig is not None and sig.children else None
        if call is not None and call.children[0].text.decode() == name:
            return node
    raise AssertionError(f"no `function {name}` in {path.name}")


def julia_methods() -> dict[str, list[tuple[int, float]]]:
    methods: dict[str, list[tuple[int, float]]] = defaultdict(list)

    def visit(node) -> None:
        sig = None
        if node.type == "function_definition":
            sig = next((c for c in node.children if c.type == "signature"), None)
            sig = call_signature(sig.children[0]) if sig is not None and sig.children else None
        elif node.type == "assignment":
            sig = call_signature(node.children[0])
        if sig is not None and (found := arity(sig)):
            name, lo, hi = found
            methods[name].append((lo, hi))
        for child in node.children:
            visit(child)

    for path in JULIA_FILES:
        visit(parse(path).root_node)
    return methods


def python_calls() -> list[tuple[str, int, str]]:
    """Every `api.NAME(...)` / `self.api.NAME(...)` call: (name, number of arguments, where)."""
    calls = []
    for path in CALLERS:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            is_api = (isinstance(owner, ast.Name) and owner.id == "api") or (
                isinstance(owner, ast.Attribute) and owner.attr == "api"
            )
            if is_api:
                calls.append((node.func.attr, len(node.args), f"{path.name}:{node.lineno}"))
    return calls


def test_there_is_julia_code():
    assert JULIA_FILES, "no .jl files under julia/"


@pytest.mark.parametrize("path", JULIA_FILES, ids=lambda p: p.name)
def test_julia_files_parse_without_errors(path):
    tree = parse(path)
    assert not tree.root_node.has_error, bad_nodes(tree.root_node)


def test_every_julia_api_function_is_defined_with_its_arity():
    methods = julia_methods()
    for name, n in JULIA_API.items():
        assert name in methods, f"{name} is called from Python but not defined in julia/"
        assert any(lo <= n <= hi for lo, hi in methods[name]), (
            f"{name} is called with {n} arguments; Julia defines {methods[name]}"
        )


def test_python_calls_only_listed_functions_with_listed_arity():
    calls = python_calls()
    assert len(calls) >= len(JULIA_API) - 1  # the scan itself works
    for name, n, where in calls:
        assert name in JULIA_API, f"{where}: {name} is not in JULIA_API"
        assert JULIA_API[name] == n, f"{where}: {name} called with {n} args, JULIA_API says {JULIA_API[name]}"


def test_arity_reader_understands_defaults_varargs_and_where():
    src = b"f(a, b=1; k=2) = 1\nfunction g(xs...) end\nh(x::T) where {T} = x\nBase.show(io, x) = 1\n"
    tmp = ts.Parser(ts.Language(tsj.language())).parse(src)
    found = {}
    for node in tmp.root_node.children:
        sig = node.children[0] if node.type == "assignment" else node.children[1].children[0]
        got = arity(call_signature(sig)) if call_signature(sig) else None
        if got:
            found[got[0]] = got[1:]
    assert found == {"f": (1, 2), "g": (0, math.inf), "h": (1, 1)}


def test_sample_runs_each_protocol_group_and_returns_its_measured_phases():
    """`sample` picks its steps with `group == "..." ? ("phase" => f!, ...) : ...`; every protocol
    group has one branch, naming exactly its measured phases."""
    found: dict[str, set[str]] = {}
    steps = next(a for a in nodes(julia_function("sample"), "assignment") if a.children[0].text == b"steps")
    for tern in nodes(steps, "ternary_expression"):
        cond, branch = tern.children[0], tern.children[2]
        if cond.type != "binary_expression" or cond.children[0].text != b"group":
            continue
        assert cond.children[1].text == b"=="
        found[string_value(cond.children[2])] = {
            string_value(pair.children[0]) for pair in nodes(branch, "binary_expression")
            if pair.children[1].text == b"=>"}
    groups = {p.group for p in PHASES.values()}
    assert found == {g: set(measured_phases(g)) for g in groups}


def julia_const(name: str) -> str:
    """The literal text of `const NAME = ...` at the top of PyBench.jl."""
    for node in nodes(parse(PYBENCH_JL).root_node, "const_statement"):
        assign = node.children[1]
        if assign.children[0].text.decode() == name:
            return assign.children[-1].text.decode()
    raise AssertionError(f"no const {name} in PyBench.jl")


def test_samples_carry_their_gc_time_under_the_protocols_key():
    """Every sample brackets Base.gc_num's GC total like its clock, and `sample` returns it keyed
    phase * GC_SUFFIX, the suffix the protocol reads."""
    assert julia_const("GC_SUFFIX") == f'"{GC_SUFFIX}"'
    timed = julia_function("timed").text.decode()
    assert timed.count("Base.gc_num().total_time") == 2
    assert timed.index("gc_num") < timed.index("t0 = time_ns()") < timed.index("t1 = time_ns()") \
        < timed.rindex("gc_num"), "the GC window must enclose the timed region"
    body = julia_function("sample").text.decode()
    assert "ns, gc = timed(f, b)" in body and "out[phase * GC_SUFFIX]" in body


def test_groups_hand_cuda_memory_back_between_them():
    calls = {c.children[0].text.decode() for c in nodes(julia_function("finish"), "call_expression")}
    assert {"GC.gc", "CUDA.reclaim"} <= calls


def test_cudnn_version_is_decoded_for_cudnn_9():
    """cuDNN 9 encodes major*10000 + minor*100 + patch (91000 = 9.10.0), cuDNN 8 major*1000 + ...;
    the environment reads the raw integer through PyBench's decoder, not cuDNN.jl's."""
    text = julia_function("cudnn_version").text.decode()
    assert "raw >= 90000 ? divrem(raw, 10000) : divrem(raw, 1000)" in text
    assert "divrem(rest, 100)" in text
    env = julia_function("environment").text.decode()
    assert "cudnn_version(cuDNN.cudnnGetVersion())" in env and "cuDNN.version()" not in env


def test_fast_math_note_names_only_what_fast_math_changes():
    note = julia_const("FAST_MATH_NOTE")
    assert "SOFTMAX" not in note  # logitcrossentropy's logsoftmax is CUDNN_SOFTMAX_LOG in every mode
    assert "ALLOW_CONVERSION" in note and "TF32" in note


def test_project_bounds_openssl_as_juliacall_does():
    """juliapkg's "<=python" rule for a Python on OpenSSL 3.0 is OpenSSL_jll "3 - 3.0", and Julia
    1.12 (OpenSSL 3.5) is then excluded; the installer asks for the same Julia range."""
    text = (ROOT / "Project.toml").read_text()
    assert 'OpenSSL_jll = "458c3c95-2e84-50aa-8efc-19380b2a3a95"' in text
    assert 'OpenSSL_jll = "3 - 3.0"' in text
    assert f'julia = "{JULIA_COMPAT}"' in text and JULIA_COMPAT.endswith("- 1.11")


def test_step_uses_the_shared_sgd_settings():
    calls = [c for c in nodes(julia_function("step!"), "call_expression")
             if c.children[0].text.decode().split(".")[-1] == "Momentum"]
    assert len(calls) == 1, "step! creates one Optimisers.Momentum"
    args = [c for c in calls[0].children[-1].children if c.type not in ("(", ")", ",")]
    assert [float(a.text) for a in args] == [SGD_LR, SGD_MOMENTUM]
