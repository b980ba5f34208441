"""The allocator setting: what a worker's environment gets, that glibc then keeps freed memory (no
page faults on reuse), and that the setting is part of the cell's identity."""

import json
import platform
import subprocess
import sys

import pytest

from pybench.cli.main import build_parser
from pybench.cli.request_args import request_of
from pybench.errors import UserError
from pybench.machine.malloc import DEFAULT_MALLOC, KEEP, MALLOC, TUNABLES, malloc_env
from pybench.records.spec import CellKey, CellSpec
from pybench.request.variants import parse_variant
from pybench.rounds.cells import build_specs, variant_specs
from pybench.rounds.runner import worker_environment

ENV = {"cpu": "Test CPU", "label": "box"}
OTHER = next(m for m in MALLOC if m != DEFAULT_MALLOC)

# Frees and takes back a 64 MiB block, from the main thread and from another one (whose arena
# cannot hold it), and prints the page faults of the last few takes.
REUSE = """
import ctypes, json, resource, threading
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 64 << 20
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def takes(out):
    for i in range(6):
        before = faults()
        p = libc.malloc(SIZE)
        ctypes.memset(p, 1, SIZE)
        libc.free(p)
        if i >= 3:
            out.append(faults() - before)
main, other = [], []
takes(main)
t = threading.Thread(target=takes, args=(other,)); t.start(); t.join()
print(json.dumps({"main": main, "thread": other}))
"""


def specs(*argv):
    args = ["compare", "--model", "dense1024_512", "--device", "cpu", *argv]
    return build_specs(request_of(build_parser().parse_args(args), args), ["pytorch", "jax"], ENV)


def test_keep_puts_its_tunables_before_the_users_own():
    assert malloc_env("keep", {}) == {TUNABLES: KEEP}
    assert malloc_env("keep", {TUNABLES: "glibc.malloc.arena_max=4"}) == {
        TUNABLES: f"{KEEP}:glibc.malloc.arena_max=4"}  # glibc reads in order: the user's still wins
    assert malloc_env("system", {TUNABLES: "x"}) == {}
    with pytest.raises(UserError, match="unknown allocator setting 'fast'; valid: keep, system"):
        malloc_env("fast", {})


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_with_keep_a_freed_block_is_taken_back_without_page_faults():
    def run(env):
        done = subprocess.run([sys.executable, "-c", REUSE], capture_output=True, text=True, timeout=60,
                              env={**env, "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    pages = (64 << 20) // 4096
    system, keep = run({}), run(malloc_env("keep", {}))
    # glibc's defaults give the block back to the kernel at every free: every page faults again.
    assert all(f >= pages // 2 for f in system["main"] + system["thread"]), system
    assert all(f < pages // 50 for f in keep["main"] + keep["thread"]), keep


def test_a_request_sets_every_cell_and_the_worker_environment_follows(monkeypatch):
    monkeypatch.delenv(TUNABLES, raising=False)
    keep, system = specs("--malloc", "keep"), specs("--malloc", "system")
    assert {s.malloc for s in specs()} == {DEFAULT_MALLOC}
    assert {s.malloc for s in keep} == {"keep"} and {s.malloc for s in system} == {"system"}
    assert worker_environment(keep[0], None)[TUNABLES] == KEEP
    assert TUNABLES not in worker_environment(system[0], None)
    # Another allocator setting is another cell: never merged with, paired with or compared to it.
    assert keep[0].key != system[0].key and keep[0].key.cell != system[0].key.cell
    assert {system[0].key.variant, keep[0].key.variant} == {"", f"malloc={OTHER}"}


def test_records_from_before_the_setting_read_as_glibcs_defaults():
    (spec,) = specs("--malloc", "keep")[:1]
    data = spec.to_json()
    assert CellSpec.from_json(data) == spec
    del data["malloc"]
    old = CellSpec.from_json(data)
    assert old.malloc == "system" and old.key != spec.key
    key = spec.key.to_json()
    del key["malloc"]
    assert CellKey.from_json(key).malloc == "system"
    with pytest.raises(UserError, match="unknown allocator setting"):
        CellSpec.from_json({**spec.to_json(), "malloc": "\x1b[31mred"})


def test_a_variant_measures_the_allocator_side_by_side():
    v = parse_variant("faults=jax,malloc=system")
    assert v.malloc == "system" and parse_variant(str(v)) == v and str(v) == "faults=jax,malloc=system"
    with pytest.raises(UserError, match="variant x: unknown allocator setting 'big'"):
        parse_variant("x=jax,malloc=big")
    args = ["compare", "--model", "dense1024_512", "--device", "cpu", "--malloc", "keep",
            "--variant", "keep=pytorch", "--variant", "faults=pytorch,malloc=system"]
    keep, faults = variant_specs(request_of(build_parser().parse_args(args), args), ENV)
    assert (keep.malloc, faults.malloc) == ("keep", "system")
    assert keep.key.cell == faults.key.cell  # variants: one table, their ratio paired
    assert keep.key != faults.key
