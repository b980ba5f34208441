"""scripts/device_check.sh, the first contact with a GPU machine, in its CPU dry run: every step runs
for real (identity, warm-up, --compile with and without --tf32, a PyTorch/JAX compare and its
detailed report) at tiny sizes, so a broken step shows here before a GPU machine is lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cpu_dry_run_passes_every_step(tmp_path):
    out = tmp_path / "first contact"  # a space: the script quotes its paths
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(["bash", str(ROOT / "scripts" / "device_check.sh"), str(out), "--device", "cpu"],
                       capture_output=True, text=True, env=env, timeout=1200)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "device check: every step passed" in p.stdout
    identity = json.loads((out / "identity.json").read_text())
    assert identity["device"]["kind"] == "cpu" and identity["jax"]["backend"] == "cpu"
    assert "GFLOP/s" in (out / "report.md").read_text()
    assert (out / "device_check.log").read_text().count("=== ") == 4
    for step in ("clocks", "compile", "compare"):
        assert any((out / step).glob("*.json")), step


def test_usage_is_one_line_and_exit_2():
    p = subprocess.run(["bash", str(ROOT / "scripts" / "device_check.sh")], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.startswith("usage: scripts/device_check.sh OUT")
