"""A round's timeline and anatomy, the priming worker, and the JAX weights each round loads."""

import pytest
from rich.console import Console

from pybench.backends import get_framework
from pybench.protocol.group import PhaseSamples
from pybench.records.record import CellRecord
from pybench.records.results import ResultsFile, load
from pybench.records.round import Round, WorkloadFacts
from pybench.records.shape import Malformed
from pybench.records.spec import CellSpec
from pybench.report.anatomy import anatomy_rows, anatomy_tables
from pybench.rounds import runner
from pybench.rounds.matrix import Schedule, run_matrix

TIMELINE = {"started": 0.1, "imported": 3.1, "prepared": 4.0,
            "train.first_run": 6.0, "train.warmup": 7.0, "train.sampling": 17.0,
            "inference.first_run": 17.5, "inference.warmup": 18.0, "inference.sampling": 21.0,
            "finished": 21.1, "exited": 21.6}


def timed_round(timeline=TIMELINE):
    samples = {"forward": [1.0] * 4, "backward": [1.5] * 4, "total": [2.5] * 4, "inference": [0.5] * 5}
    return Round(phases={p: PhaseSamples(1.0, [], s, "planned") for p, s in samples.items()},
                 timeline=dict(timeline))


def test_the_anatomy_splits_the_wall_time_and_counts_derived_phases_once():
    a = timed_round().anatomy()
    assert (a.start, a.imports, a.model) == pytest.approx((0.1, 3.0, 0.9))
    assert a.first_runs == pytest.approx(2.0 + 0.5) and a.warmup == pytest.approx(1.0 + 0.5)
    assert a.sampling == pytest.approx(10.0 + 3.0) and a.teardown == pytest.approx(0.6)
    assert a.total == pytest.approx(21.6)
    assert a.samples == pytest.approx(4 * 1.0 + 4 * 1.5 + 5 * 0.5)  # total is derived: not counted
    assert a.outside_samples == pytest.approx(21.6 - 12.5)


def test_a_timeline_survives_json_and_bad_marks_are_named():
    r = timed_round()
    assert Round.from_json(r.to_json(), "r").timeline == r.timeline
    for bad, message in (({"rm -rf": 1.0}, "unknown mark"), ({"started": -1.0}, "out of range"),
                         ({"started": "soon"}, "expected a number")):
        with pytest.raises(Malformed, match=message):
            Round.from_json({**r.to_json(), "timeline": bad}, "r")
    assert Round.from_json({k: v for k, v in r.to_json().items() if k != "timeline"}, "r").anatomy() is None


def test_compare_shows_each_frameworks_median_round_within_80_columns():
    spec = CellSpec("pytorch", "resnet50", "cpu", 8, 224, threads=1)
    late = {k: v * 2 for k, v in TIMELINE.items()}
    rec = CellRecord(spec=spec, status="ok", title="PyTorch 2.14.1", workload=WorkloadFacts(params=1),
                     rounds=[timed_round(), timed_round(late), timed_round()])
    (row,) = anatomy_rows([rec])
    assert row.rounds == 3 and row.median.imports == pytest.approx(3.0)
    console = Console(width=80, record=True)
    for table in anatomy_tables([row]):
        console.print(table)
    text = console.export_text()
    assert "outside samples" in text and "9.1" in text and max(map(len, text.splitlines())) <= 80


class Scripted:
    def __init__(self):
        self.calls = []

    def __call__(self, spec, timeout, cache_dir, plan=None, initial=None):
        self.calls.append(("round", spec.variant_name or spec.framework))
        return CellRecord(spec=spec, status="ok", title="X 1", workload=WorkloadFacts(params=1),
                          rounds=[timed_round()])


def test_one_priming_worker_per_setup_runs_before_round_1(tmp_path):
    script = Scripted()

    def prime(spec, timeout, cache_dir):
        assert cache_dir.is_dir() and timeout > 0
        script.calls.append(("prime", spec.framework))

    specs = [CellSpec("pytorch", "resnet18", "cpu", 2, 64, threads=1, phases=("inference",)),
             CellSpec("pytorch", "resnet18", "cpu", 2, 64, threads=1, phases=("inference",), variant_name="pytorch#2")]
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    run_matrix(specs, store, Schedule(rounds=2), run_one=script, prime=prime)
    assert script.calls[:2] == [("prime", "pytorch"), ("round", "pytorch")]  # the A/A twins share one
    assert script.calls.count(("prime", "pytorch")) == 1 and len(script.calls) == 5
    assert load(store.path).environment["time"]["priming_s"] >= 0


def test_a_setup_that_could_not_prime_says_so_on_its_records(tmp_path):
    """Round 1 then compiled what later rounds load: its records carry the reason, the others none."""
    script = Scripted()
    specs = [CellSpec(fw, "resnet18", "cpu", 2, 64, threads=1, phases=("inference",)) for fw in ("pytorch", "jax")]
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    failing = {"jax": "timed out after 300 s"}
    records = run_matrix(specs, store, Schedule(rounds=2), run_one=script,
                         prime=lambda spec, timeout, cache: failing.get(spec.framework))
    notes = {r.spec.framework: [w for w in r.warnings if "primed" in w] for r in records}
    assert notes == {"pytorch": [], "jax": ["not primed (timed out after 300 s): round 1 compiled what later "
                                            "rounds loaded, so it is unlike them"]}
    assert [w for r in load(store.path).records for w in r.warnings if "primed" in w] == notes["jax"]


def test_without_priming_nothing_is_primed(tmp_path):
    script = Scripted()
    store = ResultsFile.create(tmp_path, {"label": "t"}, [])
    run_matrix([CellSpec("pytorch", "resnet18", "cpu", 2, 64, threads=1, phases=("inference",))], store,
               Schedule(rounds=1), run_one=script)
    assert script.calls == [("round", "pytorch")]


@pytest.mark.slow
def test_a_real_round_records_its_timeline_in_order_and_a_real_worker_primes(tmp_path):
    pytest.importorskip("jax")
    assert runner.prime_cell(CellSpec("jax", "dense1024_512", "cpu", 2, 224, threads=1), 300, tmp_path) is None
    assert any(tmp_path.iterdir())  # the worker wrote its compiled code and weights
    spec = CellSpec("pytorch", "dense1024_512", "cpu", 2, 224, threads=1)
    record = runner.run_cell(spec, 300, cache_dir=tmp_path, plan={"train": 3})
    assert record.ok, record.error
    times = list(record.rounds[0].timeline.values())
    assert list(record.rounds[0].timeline) == ["started", "imported", "prepared", "train.first_run",
                                               "train.warmup", "train.sampling", "finished", "exited"]
    assert times == sorted(times) and record.rounds[0].anatomy().outside_samples > 0


@pytest.mark.slow
def test_xla_code_outlives_the_run_in_the_user_cache(tmp_path, monkeypatch):
    """A second run's priming worker finds what the first compiled: the XLA cache is the user's, not the
    matrix's (whose folder goes with its run), and the second adds no entry of its own."""
    pytest.importorskip("jax")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    spec = CellSpec("jax", "dense1024_512", "cpu", 2, 224, threads=1)
    xla = tmp_path / "home" / "pybench" / "xla"
    assert get_framework("jax").cache_env(tmp_path / "run1")["PYBENCH_XLA_CACHE_DIR"] == str(xla)
    for run in ("run1", "run2"):
        (tmp_path / run).mkdir()
        assert runner.prime_cell(spec, 300, tmp_path / run) is None
        entries = sorted(p.name for p in xla.glob("*-cache"))
        assert not list((tmp_path / run).glob("*-cache"))  # compiled code never lands in the run's folder
        if run == "run1":
            first = entries
    assert any(n.startswith("jit_forward") for n in first) and entries == first


def test_eager_pytorch_starts_no_priming_worker(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_bounded", lambda *a, **k: pytest.fail("a worker started"))
    assert runner.prime_cell(CellSpec("pytorch", "dense1024_512", "cpu", 2, 224, threads=1), 300, tmp_path) is None
    compiled = CellSpec("pytorch", "dense1024_512", "cpu", 2, 224, threads=1, compile=True)
    assert get_framework("pytorch").primes(compiled) and get_framework("jax").primes(compiled)


@pytest.mark.slow
def test_a_failing_priming_worker_says_why(tmp_path):
    spec = CellSpec("flux", "resnet18", "cpu", 2, 64, threads=1)  # no Julia here: the worker fails
    reason = runner.prime_cell(spec, 300, tmp_path)
    assert reason and "\n" not in reason


@pytest.mark.slow
def test_jax_weights_are_written_once_and_loaded_identical(tmp_path, monkeypatch):
    jax = pytest.importorskip("jax")
    from pybench.backends.jax.backend import JaxBackend

    monkeypatch.setenv("PYBENCH_CACHE_DIR", str(tmp_path))
    spec = CellSpec("jax", "resnet18", "cpu", 2, 64, threads=1)
    first = JaxBackend(spec)
    first.prepare()
    (saved,) = tmp_path.glob("jax-weights-resnet18-*.npz")
    second = JaxBackend(spec)
    second.prepare()
    same = jax.tree.map(lambda a, b: bool((a == b).all()), first.params, second.params)
    assert all(jax.tree.leaves(same)) and jax.tree.structure(first.stats) == jax.tree.structure(second.stats)
    assert list(tmp_path.glob("jax-weights-*")) == [saved]
