"""FLOPs, peak FLOP/s and the derived throughput figures: how far a number is from the hardware.

Forward FLOPs are counted once per (model, image size) by torch.utils.flop_counter on the meta device
(no weights allocated).  It counts matrix multiplications and convolutions only (2 FLOPs per
multiply-add); batch norm, activations and pooling are a few percent on these models and are left out,
as in the published GMAC figures (resnet50: 4.09 GMAC per 224x224 image).  Each phase's multiple of
the forward FLOPs comes from the protocol's phase table; the training step adds the optimizer's
arithmetic per parameter.  Everything here is derived after a cell is saved: a failure is a warning
in the record, never a lost measurement.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache

from pybench.protocol.phases import PHASES
from pybench.records.record import CellRecord
from pybench.records.round import CALIBRATED, Peak

# Dense (not "with sparsity") peak TFLOP/s of whole GPUs, by model and form factor, from NVIDIA's
# data sheets: H100 Tensor Core GPU (SXM5, PCIe, NVL), H200 Tensor Core GPU (SXM, NVL), A100 Tensor
# Core GPU (SXM4 and PCIe alike), A10, L4, L40, L40S, V100 (SXM2, PCIe), Tesla P100 (SXM2, PCIe),
# Tesla T4; the RTX 4090 from the Ada Lovelace architecture whitepaper (FP16/BF16 with FP32
# accumulate, as frameworks use); the GTX 1080 Ti from its boost clock (3584 cores x 2 x 1.582 GHz).
# Data sheets print tensor figures with sparsity: the dense figure is half.  A precision a GPU has
# no fast path for (TF32 and BF16 before Ampere, FP16 on GeForce Pascal) falls back to its FP32
# rate, which is what frameworks then run at.  Forms: "SXM", "PCIE", "NVL", or "" where the name
# states none (NVML calls the H100 SXM5 "NVIDIA H100 80GB HBM3" and the H200 SXM "NVIDIA H200").
GPU_PEAK_TFLOPS: list[tuple[str, tuple[str, ...], dict[str, float]]] = [
    ("H100", ("", "SXM"), {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    ("H100", ("PCIE",), {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5}),
    ("H100", ("NVL",), {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    ("H200", ("", "SXM"), {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    ("H200", ("NVL",), {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    ("A100", ("", "SXM", "PCIE"), {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    ("A10", ("",), {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}),
    ("L4", ("",), {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    ("L40", ("",), {"fp32": 90.5, "tf32": 90.5, "bf16": 181.05, "fp16": 181.05}),
    ("L40S", ("",), {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05}),
    ("RTX 4090", ("",), {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2}),
    ("V100", ("SXM",), {"fp32": 15.7, "fp16": 125.0}),
    ("V100", ("PCIE",), {"fp32": 14.0, "fp16": 112.0}),
    ("T4", ("",), {"fp32": 8.1, "fp16": 65.0}),
    ("P100", ("SXM",), {"fp32": 10.6, "fp16": 21.2}),
    ("P100", ("PCIE",), {"fp32": 9.3, "fp16": 18.7}),
    ("GTX 1080 TI", ("",), {"fp32": 11.3}),
]


@lru_cache(maxsize=None)
def forward_flops(model: str, image_size: int) -> int:
    """Forward FLOPs of one image (2 per multiply-add)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pybench.backends.pytorch.backend import build_module
    from pybench.protocol.workloads import get_workload

    with torch.device("meta"):
        net = build_module(model).eval()  # eval: BatchNorm in train mode refuses a batch of one
        x = torch.empty(get_workload(model).input_shape(1, image_size))
    counter = FlopCounterMode(display=False)
    with counter:
        net(x)
    return int(counter.get_total_flops())


def _gpu_model(name: str) -> tuple[str, str] | None:
    """(model, form factor) of a GPU name as NVML or a framework spells it, e.g. "NVIDIA
    A100-SXM4-80GB" -> ("A100", "SXM"), "NVIDIA GeForce GTX 1080 Ti" -> ("GTX 1080 TI", "");
    None for a MIG slice."""
    tokens = [t for t in re.split(r"[\s_-]+", name.upper()) if t]
    if "MIG" in tokens:
        return None
    model, form = [], ""
    for t in tokens:
        if t in ("NVIDIA", "TESLA", "GEFORCE", "QUADRO") or re.fullmatch(r"\d+GB|HBM\d*E?", t):
            continue
        if t in ("PCIE", "NVL"):
            form = t
        elif re.fullmatch(r"SXM\d*", t):
            form = "SXM"
        else:
            model.append(t)
    return " ".join(model), form


def gpu_peak_gflops(gpu_name: str, precision: str) -> float | None:
    """Data-sheet dense peak of a whole GPU, matched on the whole model name and form factor (an
    "L4" is no L40, an "H100 NVL" no H100 SXM).  None for an unknown GPU, and for a MIG slice: its
    share of the SMs is not the slice fraction (an A100's seven 1g slices hold 98 of its 108 SMs)."""
    key = _gpu_model(gpu_name)
    if key is None:
        return None
    for model, forms, peaks in GPU_PEAK_TFLOPS:
        if key[0] == model and key[1] in forms:
            return peaks.get(precision, peaks["fp32"]) * 1e3
    return None


def calibrate_cpu_gflops(threads: int, seconds: float = 1.0) -> float:
    """Best fp32 GFLOP/s of a large matrix multiply: a practical CPU peak, measured not guessed."""
    import torch

    torch.set_num_threads(threads)
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # first call pays for thread-pool start-up
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


@lru_cache(maxsize=None)
def cpu_peak_gflops(threads: int) -> float:
    """Calibrated once per invocation (every record of a run asks): a figure kept across runs would
    keep whatever load the machine had when it was taken."""
    return calibrate_cpu_gflops(threads)


def device_peak(record: CellRecord, override: float | None = None) -> Peak:
    """The peak this record's phases are measured against; gflops None for an unknown GPU."""
    if override:
        return Peak(override, "--peak-gflops")
    spec = record.spec
    precision = peak_precision(record)
    if spec.device_kind == "cuda":
        return Peak(gpu_peak_gflops(spec.device_name, precision),
                    f"data sheet ({spec.device_name}, {precision})")
    return Peak(cpu_peak_gflops(spec.threads), f"{CALIBRATED}, {spec.threads} threads")


def phase_flops(record: CellRecord, phase: str) -> float | None:
    """FLOPs of one iteration of a phase for the record's batch."""
    w = record.workload
    if w is None or not w.flops_forward:
        return None
    p = PHASES[phase]
    return w.flops_forward * p.flop_factor + p.update_flops_per_param * w.params


def peak_precision(record: CellRecord) -> str:
    """Which peak applies: reduced-precision rows against their own, TF32 when the user allowed it."""
    spec = record.spec
    if spec.dtype != "fp32":
        return spec.dtype
    return "tf32" if spec.tf32 else "fp32"


def annotate(record: CellRecord, peak_override: float | None = None) -> None:
    """Attach the forward FLOPs of the record's batch and the device peak, best effort."""
    spec = record.spec
    if not record.ok or record.workload is None:
        return
    try:
        record.workload.flops_forward = forward_flops(spec.model, spec.image_size) * spec.batch_size
    except Exception as exc:  # noqa: BLE001 - derived after the fact: a warning, never a lost cell
        record.warnings.append(f"FLOPs not counted: {type(exc).__name__}: {exc}".splitlines()[0])
    try:
        record.peak = device_peak(record, peak_override)
    except Exception as exc:  # noqa: BLE001
        record.warnings.append(f"device peak unknown: {type(exc).__name__}: {exc}".splitlines()[0])
