"""FLOP counts against hand-computed values; throughput arithmetic; peaks."""

import dataclasses

import pytest

from factories import record, train
from pybench.backends import efficiency
from pybench.backends.efficiency import forward_flops, gpu_peak_gflops, peak_precision, phase_flops


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


def test_phase_flops_come_from_the_phase_table():
    rec = record("pytorch", "resnet50", {**train(0.1, 0.2, 0.05), "step": 0.3}, device="cpu", params=1000)
    rec.workload.flops_forward = 8_000_000_000
    assert phase_flops(rec, "forward") == 8e9
    assert phase_flops(rec, "backward") == 16e9  # 2x forward
    assert phase_flops(rec, "total") == 24e9
    assert phase_flops(rec, "inference") == 8e9
    assert phase_flops(rec, "step") == 24e9 + 4 * 1000  # the SGD-with-momentum update counts too


def test_annotate_is_best_effort(monkeypatch):
    rec = record("pytorch", "resnet18", train(0.1, 0.2, 0.05), device="cpu")

    def broken(*args):
        raise RuntimeError("no torch here")

    monkeypatch.setattr(efficiency, "forward_flops", broken)
    efficiency.annotate(rec, peak_override=100.0)
    assert rec.ok and rec.workload.flops_forward is None
    assert rec.warnings == ["FLOPs not counted: RuntimeError: no torch here"]
    assert rec.peak.gflops == 100.0


def test_batch_norm_models_count_at_the_smallest_size():
    assert forward_flops("resnet50", 32) > 0  # train-mode BatchNorm would refuse a batch of one


def test_peaks():
    assert gpu_peak_gflops("NVIDIA H200", "fp32") == 67_000
    assert gpu_peak_gflops("NVIDIA H100 PCIe", "bf16") == 756_500
    assert gpu_peak_gflops("Some Future GPU", "fp32") is None
    tf32 = record("pytorch", "resnet18", train(0.1, 0.2))
    tf32.spec = dataclasses.replace(tf32.spec, tf32=True)
    assert peak_precision(tf32) == "tf32"
    assert peak_precision(record("pytorch", "resnet18", train(0.1, 0.2), dtype="bf16")) == "bf16"
