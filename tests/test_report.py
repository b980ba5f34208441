"""Markdown tables in the seed's format, README markers, and the terminal summary."""

import io

import pytest
from rich.console import Console

from factories import record, results_file, train
from pybench.errors import UserError
from pybench.records.round import Peak
from pybench.report import markdown as report
from pybench.report.markdown import BEGIN_MARKER, END_MARKER
from pybench.report.format import detail_texts
from pybench.report.glance import compare_answer
from pybench.report.terminal import summary_table
from pybench.report.view import details_of

OLDER = results_file([record("pytorch", "resnet18", train(0.5, 0.5, 0.5))],
                     created="2025-01-01T09:00:00+0000")
NEWER = results_file([
    record("pytorch", "vgg16", train(0.0259, 0.0554, 0.0245), params=138_357_544),
    record("flux", "vgg16", train(0.0479, 0.6293, 0.0231), params=138_357_544, noisy=("inference",)),
    record("pytorch", "vgg16_bn", train(0.0262, 0.0579, 0.0262), params=138_365_992),
    record("flux", "vgg16_bn", train(0.0560, 0.0500), params=138_357_544),
    record("flux", "resnet18", error="OutOfMemoryError: CUDA out of memory"),
    record("pytorch", "resnet18", train(0.0066, 0.0213, 0.0051), params=11_689_512),
    record("pytorch", "vgg16", train(0.0131, 0.0302, 0.0125), dtype="bf16"),
    record("pytorch", "resnet50", train(1.234, 2.5, 1.1), device="cpu", threads=4),
], created="2025-01-02T09:00:00+0000")

EXPECTED = """\
Seconds per batch, mean of the timed iterations (first run and warm-up excluded). Batch 8, image 3 x 224 x 224 (batch 4 for Resnet101/152 on GPUs) unless a section says otherwise; the faster framework is in bold when the ratio's verdict says faster: its interval excludes 1 and the pair's test over its phases calls it.

## GPU USED --- NVIDIA H200
|Model|Framework|Forward Pass|Backward Pass|Total Time|Inference|
|:---:|:---:|:---:|:---:|:---:|:---:|
|VGG16|PyTorch 2.14.1|0.0259 s|0.0554 s|0.0813 s|0.0245 s|
||Flux 0.16.3|0.0479 s|0.6293 s|0.6772 s|0.0231 s †|
|VGG16 BN §|PyTorch 2.14.1|0.0262 s|0.0579 s|0.0841 s|0.0262 s|
||Flux 0.16.3|0.056 s|0.05 s|0.106 s||
|Resnet18|PyTorch 2.14.1|0.0066 s|0.0213 s|0.0279 s|0.0051 s|
||Flux|failed ‡|failed ‡|failed ‡|failed ‡|

† noisy: the 95% interval (between rounds, where there are several) is wider than the target precision; treat as approximate.

‡ failed: Resnet18, Flux: OutOfMemoryError: CUDA out of memory

§ VGG16 BN: parameter counts differ: PyTorch 2.14.1 138,365,992; Flux 0.16.3 138,357,544.

## GPU USED --- NVIDIA H200
Non-default settings: dtype bf16.

|Model|Framework|Forward Pass|Backward Pass|Total Time|Inference|
|:---:|:---:|:---:|:---:|:---:|:---:|
|VGG16|PyTorch 2.14.1 (bf16)|0.0131 s|0.0302 s|0.0433 s|0.0125 s|

## CPU USED --- AMD EPYC 9654 96-Core Processor
Non-default settings: 4 threads.

|Model|Framework|Forward Pass|Backward Pass|Total Time|Inference|
|:---:|:---:|:---:|:---:|:---:|:---:|
|Resnet50|PyTorch 2.14.1|1.234 s|2.5 s|3.734 s|1.1 s|
"""


def test_tables_in_the_seed_format_newest_file_wins():
    # The older file comes last but its resnet18 row (0.5 s) is replaced by the newer one's.  Every
    # record has one round: one process pair says nothing about the next, so nothing is bold.
    assert report.render_tables([NEWER, OLDER]) == EXPECTED


def test_bold_needs_a_ratio_interval_between_rounds_that_excludes_one():
    def rounds(total, spread):
        return [{"total": [total * f] * 9} for f in spread]

    fast = record("pytorch", "vgg16", rounds=rounds(0.08, (1.0, 1.05, 0.95)))
    slow = record("flux", "vgg16", rounds=rounds(0.12, (1.0, 1.05, 0.95)))  # 1.5x in every round
    close = record("flux", "vgg16", rounds=rounds(0.08, (1.1, 0.95, 1.0)))  # drifts around 1x
    assert "|VGG16|PyTorch 2.14.1|||**0.07993 s** †||" in report.render_tables([results_file([fast, slow])])
    assert "**" not in report.render_tables([results_file([fast, close])])


def test_stat_min_uses_the_fastest_sample():
    text = report.render_tables([NEWER], stat="min")
    assert "minimum of the timed iterations" in text
    # factories.spread puts the minimum 1% under the median: 0.0259 * 0.99 = 0.025641.  The minimum
    # of one round has no interval, so no ratio can exclude 1: nothing is bold, and every cell is
    # marked as having too few samples for an interval of the minimum.
    assert "|VGG16|PyTorch 2.14.1|0.02564 s °|0.05485 s °|0.08049 s °|0.02426 s °|" in text
    with pytest.raises(UserError, match="unknown statistic 'mode'"):
        report.render_tables([NEWER], stat="mode")


def test_reference_rows_get_their_own_labelled_sections():
    ref = [{"device": "Tesla V100 16 GB", "device_kind": "cuda", "model": "vgg16", "year": 2018,
            "framework": fw, "forward": f, "backward": None, "total": None, "inference": None,
            "text": {"forward": t, "backward": "", "total": "", "inference": ""}}
           for fw, f, t in (("PyTorch 0.4", 0.0259, "0.0259 s"), ("Flux 0.6", 0.097551, "0.097551"))]
    text = report.render_tables([NEWER], reference=ref)
    measured, published = text.split("## Published 2018 reference --- Tesla V100 16 GB "
                                      "(not measured on this machine)\n")
    assert "published" not in measured.lower()
    assert published.splitlines()[2:] == [
        "|VGG16|PyTorch 0.4 (published 2018)|**0.0259 s**||||",
        "||Flux 0.6 (published 2018)|0.097551||||",  # the published text, verbatim
    ]


def test_summary_table_has_ratio_first_run_and_marks():
    steady = [0.010 + 0.0001 * i for i in range(21)]  # median 0.011; CI over 21 samples: ranks 6..16
    records = [
        record("pytorch", "vgg16", rounds=[{"total": steady}, {"total": steady[::-1]}]),
        record("flux", "vgg16", rounds=[{"total": [3 * x for x in steady]}, {"total": [3.3 * x for x in steady]}]),
        record("flux", "resnet18", error="OutOfMemoryError: CUDA out of memory"),
    ]
    console = Console(file=io.StringIO(), width=250, color_system=None)
    console.print(summary_table(records))
    lines = console.file.getvalue().splitlines()
    pytorch = next(line for line in lines if "PyTorch 2.14.1" in line)
    flux = next(line for line in lines if "Flux 0.16.3" in line)
    assert "11 ms [11 ms, 11 ms]" in pytorch and "2 x 21 |" in pytorch.replace("│", "|")
    assert "34.6 ms [" in flux and "] †" in flux  # two rounds 10% apart: noisy
    assert "3.15× [" in flux and "slower" in flux  # flux/pytorch ratio of totals, on the flux row only
    assert "×" not in pytorch
    assert "360 ms" in flux  # first run (compile time): factories puts it at 10x the slowest, 36 ms
    assert any("failed ‡" in line and "Resnet18" in line for line in lines)
    assert any("OutOfMemoryError" in line for line in lines)


TEXT = "intro\r\n" + BEGIN_MARKER + "\r\nold table\r\n" + END_MARKER + "\r\ntrailing text, no newline"


def test_marker_replacement_keeps_every_byte_outside_the_markers():
    new = report.replace_between_markers(TEXT, "## GPU USED --- X\n|a|b|\n")
    before, after = TEXT.split(BEGIN_MARKER)[0], TEXT.split(END_MARKER)[1]
    assert new.startswith(before + BEGIN_MARKER) and new.endswith(END_MARKER + after)
    assert new == "intro\r\n" + BEGIN_MARKER + "\r\n## GPU USED --- X\r\n|a|b|\r\n" + END_MARKER + after
    assert report.replace_between_markers(new, "old table") == TEXT  # round trip


def test_update_readme_rewrites_the_file_bytes_exactly(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_bytes(TEXT.encode())
    report.update_readme(readme, "x\ny")
    assert readme.read_bytes() == TEXT.replace("old table", "x\r\ny").encode()
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


@pytest.mark.parametrize("text, message", [
    ("no markers here", "no '<!-- pybench:tables:begin -->' marker"),
    (BEGIN_MARKER + " only", "no '<!-- pybench:tables:end -->' marker"),
    (BEGIN_MARKER + BEGIN_MARKER + END_MARKER, "more than one '<!-- pybench:tables:begin -->'"),
    (END_MARKER + " " + BEGIN_MARKER, "comes before"),
])
def test_bad_markers_are_a_one_line_user_error(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        report.replace_between_markers(text, "x")
    readme = tmp_path / "README.md"
    readme.write_text(text)
    with pytest.raises(UserError) as exc:
        report.update_readme(readme, "x")
    assert str(exc.value).startswith(f"{readme}: ") and "\n" not in str(exc.value)
    assert readme.read_text() == text


def test_layers_get_their_own_table_in_milliseconds():
    layers = results_file([
        record("pytorch", "conv3x3_s1", train(0.000498, 0.00264), batch=1),
        record("flux", "conv3x3_s1", train(0.000612, 0.00198), batch=1),
        record("pytorch", "dense1024_512", train(0.0000762, 0.000226), batch=1),
    ])
    text = report.render_tables([layers])
    assert text.endswith("""\
## Per-layer benchmarks --- GPU USED --- NVIDIA H200
Milliseconds per call; input 1 x 3 x 224 x 224 (Dense: 1 x 1024).

|Layer|Framework|Forward Pass|Backward Pass|Total Time|
|:---:|:---:|:---:|:---:|:---:|
|Conv3x3/1|PyTorch 2.14.1|0.498 ms|2.64 ms|3.138 ms|
||Flux 0.16.3|0.612 ms|1.98 ms|2.592 ms|
|Dense 1024->512|PyTorch 2.14.1|0.0762 ms|0.226 ms|0.3022 ms|
""")


def test_details_show_throughput_peak_memory_and_first_run():
    rec = record("pytorch", "resnet50", train(0.1, 0.2, 0.05), device="cpu")
    rec.workload.flops_forward = int(8 * 8.178e9)
    rec.peak = Peak(2000.0, "calibrated sgemm, 16 threads")
    rec.rounds[0].memory["train"] = {"cpu_peak_rss": 3 * 2**30}
    rec.rounds[0].phases["total"].first_run = 1.5
    rec.rounds[0].energy["train"] = {"cpu_ns": 9 * 2 * 10**9, "window_ns": 3 * 10**9}  # 9 samples
    rec.rounds[0].energy["inference"] = {"cpu_ns": 9 * 10**8, "window_ns": 10**8, "rapl_uj": 9 * 10**6}
    train_d, inference_d = details_of(rec, "median")
    assert train_d.images_per_s == pytest.approx(26.67, abs=0.01)  # 8 images / 0.3 s
    assert train_d.gflops == pytest.approx(654.24) and train_d.peak_percent == pytest.approx(32.71, abs=0.01)
    assert train_d.cpu_seconds == pytest.approx(2.0) and train_d.energy_j is None
    assert train_d.energy_missing == "no RAPL"
    assert inference_d.energy_missing.startswith("window 0.1 s too short")  # the counter's resolution
    train_t, inference_t = detail_texts(train_d), detail_texts(inference_d)
    assert (train_t["group"], train_t["ips"], inference_t["ips"]) == ("train (total)", "26.67", "160")
    assert train_t["gflops"] == "654.2 (32.7% of sgemm)" and inference_t["gflops"] == "1308 (65.4% of sgemm)"
    assert train_t["peak_memory"] == "rss 3,072 MiB" and inference_t["peak_memory"] == "-"  # per group
    assert train_t["first_run"] == "1.5 s"
    assert train_t["energy"] == "unavailable (no RAPL), 2 CPU-s"
    assert inference_t["energy"].startswith("unavailable (window 0.1 s too short")
    text = report.render_tables([results_file([rec])], details=True)
    assert "### Throughput, memory, first run and energy --- AMD EPYC 9654 96-Core Processor" in text
    assert "unavailable (no RAPL), 2 CPU-s" in text
    assert "Peak FLOP/s from: calibrated sgemm, 16 threads." in text
    assert Peak(2000.0, "data sheet: H100 SXM, fp32").kind == "peak"  # a GPU's is a peak; a CPU's, sgemm's


def test_energy_per_batch_from_the_window_counters():
    rec = record("pytorch", "resnet18", train(0.1, 0.2), device="cuda:0")
    rec.rounds[0].energy["train"] = {"gpu_mj": 9 * 45_000, "cpu_ns": 9 * 10**8, "window_ns": 3 * 10**9}
    (d,) = details_of(rec, "median")
    assert d.energy_j == pytest.approx(45.0) and d.energy_source == "NVML"  # 405 J over 9 iterations
    assert detail_texts(d)["energy"] == "45 J (NVML), 0.1 CPU-s"


def test_compare_details_show_energy_or_why_not():
    rec = record("pytorch", "resnet18", train(0.1, 0.2), device="cpu")
    rec.rounds[0].energy["train"] = {"cpu_ns": 9 * 10**9, "window_ns": 3 * 10**9}
    console = Console(file=io.StringIO(), width=300, color_system=None)
    for item in compare_answer([rec], 300):
        console.print(item)
    text = console.file.getvalue()
    assert "train: energy" in text and "unavailable (no RAPL), 1 CPU-s" in text
