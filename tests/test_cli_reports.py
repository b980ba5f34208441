"""report, diff and the README through the command line, on real runs."""

import json

import pytest

from pybench.report.markdown import BEGIN_MARKER, END_MARKER
from processes import pybench

pytestmark = pytest.mark.slow  # every test reads runs of real workers

ROUNDS = ["--device", "cpu", "--batch-size", "2", "--image-size", "64", "--threads", "1", "--rounds", "3",
          "--max-time", "4"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """One real run of resnet18 on small shapes, three rounds."""
    folder = tmp_path_factory.mktemp("run")
    p = pybench("run", "--framework", "pytorch", "--model", "resnet18", *ROUNDS, "--min-samples", "20",
                "--precision", "0.001", "--results", folder)
    assert p.returncode == 0, p.stderr
    return folder


def _rewrite(path, tmp_path, name, change):
    """A copy of a real results file with every phase's samples of every round changed."""
    data = json.loads(path.read_text())
    for rnd in data["records"][0]["rounds"]:
        for phase in rnd["phases"].values():
            phase["samples"] = change(phase["samples"])
    out = tmp_path / name
    out.write_text(json.dumps(data))
    return out


def test_diff_of_identical_code_is_not_a_regression(run_folder, tmp_path):
    # Even and odd samples of every round of one real run: identical code, rounds as the unit.
    (path,) = run_folder.glob("*.json")
    even = _rewrite(path, tmp_path, "even.json", lambda s: s[0::2])
    odd = _rewrite(path, tmp_path, "odd.json", lambda s: s[1::2])
    p = pybench("diff", even, odd)
    assert p.returncode == 0, p.stdout + p.stderr
    verdicts = [line.rstrip(" │").rsplit("│", 1)[-1].strip() for line in p.stdout.splitlines()
                if "Resnet18" in line]
    # forward, backward, total, inference, step: never a change; halves of short rounds may differ by
    # more than the threshold without the rounds confirming it ("inconclusive", exit 0).
    assert len(verdicts) == 5 and set(verdicts) <= {"same", "inconclusive"}


def test_diff_flags_a_real_slowdown(run_folder, tmp_path):
    (path,) = run_folder.glob("*.json")
    slow = _rewrite(path, tmp_path, "slow.json", lambda s: [x * 2 for x in s])
    p = pybench("diff", path, slow)
    assert p.returncode == 1
    assert "│ slower" in p.stdout


def test_report_with_reference_plot_and_readme(run_folder, tmp_path):
    old = run_folder
    readme = tmp_path / "README.md"
    before, after = "# Title\r\nintro ✓\r\n", "\r\ntail text, no newline at end"
    readme.write_bytes(f"{before}{BEGIN_MARKER}\r\nold table\r\n{END_MARKER}{after}".encode())
    png = tmp_path / "plot.png"
    p = pybench("report", old, "--reference", "seed-2018", "--plot", png, "--readme", readme)
    assert p.returncode == 0, p.stderr
    text = readme.read_bytes().decode()
    assert text.startswith(before + BEGIN_MARKER) and text.endswith(END_MARKER + after)
    assert "old table" not in text
    assert "## CPU USED ---" in text
    assert "Published 2018 reference --- Tesla V100 16 GB (not measured on this machine)" in text
    assert "|VGG16|PyTorch 0.4 (published 2018)|**0.0259 s**|**0.0554 s**|**0.0814 s**|0.0245 s|" in text
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_unknown_reference_is_a_user_error(run_folder):
    p = pybench("report", run_folder, "--reference", "seed-1999")
    assert p.returncode == 2 and p.stderr.count("\n") == 1
