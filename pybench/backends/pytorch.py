"""PyTorch backend: torchvision models, autograd, CUDA through torch.cuda."""

from __future__ import annotations

import contextlib

import torch
import torchvision

from pybench.backends.base import Backend, make_input
from pybench.workloads import NUM_CLASSES, get_workload


def build_module(name: str) -> torch.nn.Module:
    """The torch module of a workload: a torchvision model or one layer of the per-layer suite."""
    w = get_workload(name)
    if not w.is_layer:
        return getattr(torchvision.models, name)(weights=None, num_classes=NUM_CLASSES)
    cin, cout = w.channels
    pad = w.kernel // 2
    return {
        "conv": lambda: torch.nn.Conv2d(cin, cout, w.kernel, stride=w.stride, padding=pad),
        "maxpool": lambda: torch.nn.MaxPool2d(w.kernel, stride=w.stride, padding=pad),
        # Flux's MeanPool divides by the full window, padding included: count_include_pad=True.
        "meanpool": lambda: torch.nn.AvgPool2d(w.kernel, stride=w.stride, padding=pad),
        "batchnorm": lambda: torch.nn.BatchNorm2d(cin),
        "dense": lambda: torch.nn.Linear(cin, cout),
    }[w.family]()


class PyTorchBackend(Backend):
    name = "pytorch"

    def prepare(self) -> dict:
        spec = self.spec
        torch.set_num_threads(spec.threads)
        self.device = torch.device(spec.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            # Autotuned convolutions, as every serious PyTorch user runs them; the protocol's
            # warm-up absorbs the tuning.  TF32 is set explicitly either way and recorded.
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = spec.tf32
            torch.backends.cudnn.allow_tf32 = spec.tf32
        torch.manual_seed(spec.seed)
        model = build_module(spec.model).to(self.device)
        self.x = torch.from_numpy(make_input(spec)).to(self.device)
        if get_workload(spec.model).is_layer:
            # Pooling has no parameters: the gradient w.r.t. the input is what backward computes.
            self.x.requires_grad_(True)
        if spec.channels_last and self.x.dim() == 4:
            model = model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        params = sum(p.numel() for p in model.parameters())
        self.module = model  # train()/eval() act on the module; calls may go through torch.compile
        self.model = torch.compile(model) if spec.compile else model
        self.grad_out = None  # all ones, in the output's dtype (which autocast decides)
        self.y = None
        self.synchronize()
        return {"params": params}

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.spec.dtype == "fp32":
            return contextlib.nullcontext()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[self.spec.dtype]
        return torch.autocast(self.device.type, dtype=dtype)

    def _mode(self, train: bool) -> None:
        if self.module.training != train:
            self.module.train(train)

    def zero_grad(self) -> None:
        self._mode(True)
        self.module.zero_grad(set_to_none=True)
        self.x.grad = None
        if self.grad_out is None:  # only before the first (excluded) iteration
            with torch.no_grad(), self._autocast():
                y = self.model(self.x)
            self.grad_out = torch.ones_like(y)

    def forward(self) -> None:
        with self._autocast():
            self.y = self.model(self.x)

    def backward(self) -> None:
        self.y.backward(self.grad_out)
        self.y = None

    def inference(self) -> None:
        self._mode(False)
        with torch.inference_mode(), self._autocast():
            self.model(self.x)

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def environment(self) -> dict:
        env = {
            "framework": "PyTorch",
            "version": torch.__version__,
            "torchvision": torchvision.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        }
        if self.cuda:
            env.update(
                gpu=torch.cuda.get_device_name(self.device),
                cudnn_benchmark=torch.backends.cudnn.benchmark,
                tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                tf32_cudnn=torch.backends.cudnn.allow_tf32,
            )
        return env

    def reset_peak_memory(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory(self) -> dict:
        if not self.cuda:
            return {}
        return {
            "cuda_max_allocated": torch.cuda.max_memory_allocated(self.device),
            "cuda_max_reserved": torch.cuda.max_memory_reserved(self.device),
        }


def count_params(model: str) -> int:
    """Parameter count without allocating weights (meta device)."""
    with torch.device("meta"):
        m = build_module(model)
    return sum(p.numel() for p in m.parameters())
