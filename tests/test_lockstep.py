"""Lockstep rounds with real workers: two PyTorch workers (the A/A control) side by side."""

import pytest

from pybench.rounds.lockstep import lockstep_round
from pybench.protocol.group import StopRule
from pybench.rounds.runner import failed_record
from pybench.records.spec import CellSpec

STOP = StopRule(precision=0.5, max_time=4)
pytestmark = pytest.mark.slow  # real workers


def spec(name="", **kw):
    return CellSpec("pytorch", "resnet18", "cpu", 2, 64, threads=1, stop=STOP, variant_name=name,
                    phases=("forward", "backward", "total", "inference"), **kw)


def test_two_workers_take_turns_in_paired_blocks(tmp_path):
    a, b = lockstep_round([spec(), spec("pytorch#2")], {"train": 4, "inference": 6}, 300, tmp_path,
                          failed_record)
    assert a.ok and b.ok, (a.error, b.error)
    for rec in (a, b):
        total, inference = rec.rounds[0].phases["total"], rec.rounds[0].phases["inference"]
        assert len(total.samples) >= 4 and len(inference.samples) >= 6
        assert total.blocks and sum(total.blocks) == len(total.samples)
        assert total.stop_reason == "planned"
    assert len(a.rounds[0].phases["total"].blocks) == len(b.rounds[0].phases["total"].blocks)


def test_a_failing_member_drops_out_and_the_other_finishes(tmp_path):
    bad = CellSpec("pytorch", "resnet18", "cuda:0", 2, 64, threads=1, stop=STOP, variant_name="broken",
                   phases=("forward", "backward", "total", "inference"))  # no GPU here: it fails preparing
    good, failed = lockstep_round([spec(), bad], None, 300, tmp_path, failed_record)
    assert good.ok, good.error
    assert failed.status == "failed" and failed.error
