"""What dispatching cells through Slurm costs, and whether any record is lost on the way.

    scripts/slurm_local.sh start            # as root: the single-node cluster, partitions debug p2 p3 p4
    python scripts/bench_slurm_dispatch.py  # 9 tiny cells x 4 partitions = 36 jobs

Runs `pybench run --executor slurm` on a matrix of tiny cells (the eight layers and resnet18 at
32 x 32, PyTorch only, one thread, one short round), one job array per partition, then takes each
job apart with Slurm's own times (scontrol, 1 s resolution) and the files the job wrote:

- node overhead: the job's time on its node (Slurm's start to end) minus the time pybench's runner
  measured in it (from plan.json, written just before the runner starts, to the results file's last
  write): the batch script, the interpreter, submitit, imports and the environment capture;
- collection lag: from Slurm's end of a job to its results file in the results folder (polling);
- lost records: cells submitted minus ok records collected (must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["layers", "resnet18"]


def slurm_times(job_id: str) -> tuple[float, float, float]:
    """(submit, start, end) of a job as epoch seconds, from scontrol."""
    text = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True,
                          check=True).stdout
    fields = dict(f.split("=", 1) for f in text.split() if "=" in f)
    return tuple(datetime.strptime(fields[k], "%Y-%m-%dT%H:%M:%S").timestamp()
                 for k in ("SubmitTime", "StartTime", "EndTime"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partition", nargs="+", default=["debug", "p2", "p3", "p4"])
    args = parser.parse_args()
    results = Path(tempfile.mkdtemp(prefix="pybench-slurm-"))
    cmd = [sys.executable, "-m", "pybench", "run", "--executor", "slurm", "--framework", "pytorch",
           "--model", *MODELS, "--image-size", "32", "--threads", "1", "--rounds", "1", "--max-time", "0.3",
           "--min-samples", "5", "--max-samples", "30", "--results", str(results)]
    for p in args.partition:
        cmd += ["--partition", p]
    began = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.time() - began
    if done.returncode not in (0, 1):
        print(done.stderr[-3000:], file=sys.stderr)
        return done.returncode
    [folder] = (results / "slurm").iterdir()
    jobs = json.loads((folder / "submission.json").read_text())["jobs"]
    node, lag, queued = [], [], []
    for e in jobs:
        submit, start, end = slurm_times(e["job_id"])
        cell = folder / "cells" / str(e["job"]["index"])
        [staged] = (cell / "records").glob("*.json")
        runner = staged.stat().st_mtime - (cell / "plan.json").stat().st_mtime
        node.append(end - start - runner)
        dest = results / f"{folder.name}-cell{e['job']['index']:04d}.json"
        lag.append(dest.stat().st_mtime - end)
        queued.append(submit - began)
    records = [r for f in results.glob("*.json") for r in json.loads(f.read_text())["records"]]
    ok = sum(r["status"] == "ok" for r in records)
    print(f"jobs: {len(jobs)} on partitions {', '.join(args.partition)}; records ok {ok}, "
          f"lost {len(jobs) - ok}")
    print(f"last job queued {max(queued):.0f} s after the command's start (1 s resolution); "
          f"whole matrix {wall:.0f} s")
    print(f"node overhead per job: median {statistics.median(node):.1f} s, max {max(node):.1f} s "
          "(Slurm's start..end minus the runner's time; 1 s resolution)")
    print(f"collection lag per job: median {statistics.median(lag):.1f} s, max {max(lag):.1f} s")
    print(f"results kept in {results}")
    return 0 if ok == len(jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
