"""The typed request: parsed once, checked across options, carried to a Slurm job as JSON."""

import json

import pytest

from pybench.cli.main import build_parser
from pybench.cli.request_args import request_of
from pybench.errors import UserError
from pybench.limits import CELL_BUDGET_S, RUN_ROUNDS
from pybench.request.request import Request
from pybench.rounds.matrix import Schedule


def request(*argv: str) -> Request:
    return request_of(build_parser().parse_args(list(argv)), list(argv))


def test_a_request_survives_json_whole():
    r = request("compare", "--model", "resnet18", "resnet50", "--framework", "pytorch", "pytorch", "--device",
                "cpu", "--dtype", "bf16", "--threads", "1", "--budget", "60", "--label", "box",
                "--variants", "aa")
    back = Request.from_json(json.loads(json.dumps(r.to_json())))
    assert back == r and back.argv == r.argv and back.cell.dtype == "bf16" and back.presets == ("aa",)
    v = request("run", "--model", "resnet18", "--variant", "n=pytorch,compile=max-autotune,threads=1")
    assert Request.from_json(json.loads(json.dumps(v.to_json()))) == v


def test_compare_is_auto_and_run_is_fixed_and_the_budget_is_per_cell_with_one_default():
    c, r = request("compare", "--model", "resnet18"), request("run", "--model", "resnet18")
    assert c.auto and c.stop.sequential and c.budget == CELL_BUDGET_S
    assert r.rounds == RUN_ROUNDS and not r.stop.sequential
    assert Schedule.of(request("compare", "--model", "resnet18", "--budget", "60")).budget == 60


def test_compare_keeps_a_repeated_framework_and_run_does_not():
    assert request("compare", "--model", "resnet18", "--framework", "jax", "jax").framework_names() == ["jax", "jax"]
    assert request("run", "--model", "resnet18", "--framework", "jax", "jax").framework_names() == ["jax"]


@pytest.mark.parametrize("argv, message", [
    (("run", "--model", "resnet18", "--min-samples", "9", "--max-samples", "5"), "is above --max-samples"),
    (("run", "--model", "resnet18", "--partition", "gpu"), "--partition needs --executor slurm"),
    (("run", "--model", "resnet18", "--detach"), "--detach needs --executor slurm"),
    (("compare", "--model", "resnet18", "--executor", "slurm", "--variants", "aa"), "not with --executor slurm"),
    (("run", "--model", "resnet18", "--framework", "jax", "--variant", "a=pytorch"), "both choose frameworks"),
    (("run", "--model", "resnet18", "--framework", "tensorflow"), "tensorflow"),
])
def test_options_that_contradict_each_other_are_one_line(argv, message):
    with pytest.raises(UserError, match=message) as exc:
        request(*argv)
    assert "\n" not in str(exc.value)
