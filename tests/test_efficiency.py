"""FLOP counts against hand-computed values; throughput arithmetic; peaks."""

import pytest

from pybench.efficiency import forward_flops, gpu_peak_gflops, peak_precision, throughput


def test_single_layers_hand_computed():
    # Conv3x3/1, 3->64 at 224x224 with pad 1: every output pixel of every channel costs 3*3*3 MACs.
    assert forward_flops("conv3x3_s1", 224) == 2 * 224 * 224 * 64 * 27
    # Stride 2 halves each side of the output.
    assert forward_flops("conv5x5_s2", 224) == 2 * 112 * 112 * 64 * 75
    assert forward_flops("dense1024_512", 224) == 2 * 1024 * 512
    assert forward_flops("maxpool3x3_s2", 224) == 0  # comparisons are not FLOPs here


def test_resnet18_at_64px_hand_computed():
    stem = 32 * 32 * 64 * 3 * 49  # 7x7/2 conv to 32x32, then max-pool to 16x16
    layer1 = 4 * 16 * 16 * 64 * 64 * 9
    stage = lambda hw, cin, cout: (hw * hw * cout * cin * 9 + 3 * hw * hw * cout * cout * 9
                                   + hw * hw * cout * cin)  # first conv, three more, 1x1 shortcut
    macs = stem + layer1 + stage(8, 64, 128) + stage(4, 128, 256) + stage(2, 256, 512) + 512 * 1000
    assert macs == 148_557_824
    assert forward_flops("resnet18", 64) == 2 * macs


def test_resnet50_matches_the_published_figure():
    assert forward_flops("resnet50", 224) / 2e9 == pytest.approx(4.09, abs=0.01)  # GMAC per image


def test_throughput_and_percent_of_peak():
    rec = {"spec": {"batch_size": 8}, "workload": {"flops_forward": 8e9}, "peak": {"gflops": 400.0},
           "phases": {"forward": {"stats": {"median": 0.1, "min": 0.08}},
                      "backward": {"stats": {"median": 0.2, "min": 0.2}}}}
    f = throughput(rec, "forward")
    assert f == pytest.approx({"images_per_s": 80.0, "gflops": 80.0, "pct_peak": 20.0})
    assert throughput(rec, "forward", "min")["gflops"] == pytest.approx(100.0)
    assert throughput(rec, "backward")["gflops"] == pytest.approx(80.0)  # 2x forward FLOPs
    assert throughput(rec, "inference") is None


def test_peaks():
    assert gpu_peak_gflops("NVIDIA H200", "fp32") == 67_000
    assert gpu_peak_gflops("NVIDIA H100 PCIe", "bf16") == 756_000
    assert gpu_peak_gflops("Some Future GPU", "fp32") is None
    assert peak_precision({"dtype": "fp32", "tf32": True}) == "tf32"
    assert peak_precision({"dtype": "bf16", "tf32": False}) == "bf16"
