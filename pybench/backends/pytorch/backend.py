"""PyTorch backend: torchvision models, autograd, torch.optim, CUDA through torch.cuda."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torchvision

from pybench.backends.base import SGD_LR, SGD_MOMENTUM, Backend, make_input, make_labels
from pybench.protocol.sampling import Loop, PythonLoopSampler, Sampler
from pybench.records.numerics import Numerics
from pybench.records.round import WorkloadFacts
from pybench.protocol.workloads import NUM_CLASSES, get_workload


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


def count_params(model: str) -> int:
    """Parameter count without allocating weights (meta device)."""
    with torch.device("meta"):
        m = build_module(model)
    return sum(p.numel() for p in m.parameters())


def set_tf32(enabled: bool) -> dict[str, Any]:
    """TF32 for matmuls and cuDNN (convolutions and RNNs), set explicitly either way; returns what
    was set, as both APIs read it.

    Set through the `allow_tf32` flags, which torch (>= 2.9) mirrors into its `fp32_precision`
    settings.  Setting only the new settings leaves the legacy getters raising ("mix of the legacy and
    new APIs"), and Inductor's max-autotune and cache keys still call them, so `--compile --tf32`
    would fail there.
    """
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    out = {"tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
           "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        out["matmul_fp32_precision"] = torch.backends.cuda.matmul.fp32_precision
    return out


def reference_model(model: str) -> torch.nn.Module:
    """The seeded torch module (weights=None) parity compares against, TF32 off (imports torch).
    BatchNorm gets seeded non-trivial weight, bias and statistics: fresh ones (1, 0, 0, 1) would
    hide a wrong mapping of any of the four."""
    set_tf32(False)  # fp32 means fp32 on both sides
    torch.manual_seed(0)
    net = build_module(model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                mod.running_var.copy_(0.5 + torch.rand(c, generator=gen))
                mod.weight.copy_(1 + 0.1 * torch.randn(c, generator=gen))
                mod.bias.copy_(0.1 * torch.randn(c, generator=gen))
    return net


class PyTorchBackend(Backend):
    def prepare(self) -> WorkloadFacts:
        spec = self.spec
        torch.set_num_threads(spec.threads)
        # The runner pins the worker to its GPU, so the chosen GPU is this process's only device.
        self.device = torch.device("cuda:0" if spec.device_kind == "cuda" else "cpu")
        self.cuda = self.device.type == "cuda"
        self.precision: dict[str, Any] = {}
        if self.cuda:
            # Autotuned convolutions, as every serious PyTorch user runs them; the protocol's
            # warm-up absorbs the tuning.
            torch.backends.cudnn.benchmark = True
            self.precision = set_tf32(spec.tf32)
        torch.manual_seed(spec.seed)
        self.workload = get_workload(spec.model)
        model = build_module(spec.model).to(self.device)
        x = torch.from_numpy(make_input(spec)).to(self.device)
        if spec.channels_last and x.dim() == 4:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        if self.workload.is_layer:
            # Layout first, then mark it: the input must stay a leaf so its gradient is cleared.
            # Pooling has no parameters: the gradient w.r.t. the input is what backward computes.
            x.requires_grad_(True)
        self.x = x
        self.labels = torch.from_numpy(make_labels(spec)).to(self.device)
        self.module = model  # train()/eval() act on the module; calls may go through torch.compile
        self.model = torch.compile(model, mode=spec.compile_mode or None) if spec.compile else model
        self.grad_out: torch.Tensor | None = None  # all ones, shaped and typed by the first forward
        self.y: torch.Tensor | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.synchronize()
        return WorkloadFacts(params=sum(p.numel() for p in model.parameters()))

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.spec.dtype == "fp32":
            return contextlib.nullcontext()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[self.spec.dtype]
        return torch.autocast(self.device.type, dtype=dtype)

    def _mode(self, train: bool) -> None:
        if self.module.training != train:
            self.module.train(train)

    # train group: forward with autograd recording, then its backward
    def _zero_grad(self) -> None:
        self._mode(True)
        self.module.zero_grad(set_to_none=True)
        self.x.grad = None

    def _forward(self) -> None:
        with self._autocast():
            self.y = self.model(self.x)

    def _backward(self) -> None:
        if self.grad_out is None:  # first (excluded) iteration: its cost belongs to the first run
            self.grad_out = torch.ones_like(self.y)
        self.y.backward(self.grad_out)
        self.y = None

    def _free_training_state(self) -> None:
        """Gradients and optimizer buffers out of memory before the next group's window opens."""
        self._zero_grad()
        self.optimizer = None
        self.y = None
        self._release_cache()

    def _release_cache(self) -> None:
        """Hand cached blocks (cuDNN's autotuning workspaces among them) back to the driver, so the
        next group's max_memory_reserved counts what that group itself reserves."""
        if self.cuda:
            torch.cuda.empty_cache()

    # step group: one full training step as users write it
    def _step(self) -> None:
        if self.optimizer is None:  # first (excluded) iteration creates it
            self.optimizer = torch.optim.SGD(self.module.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = torch.nn.functional.cross_entropy(self.model(self.x), self.labels)
        loss.backward()
        self.optimizer.step()

    def _inference(self) -> None:
        with torch.inference_mode(), self._autocast():
            self.model(self.x)

    def sampler(self) -> Sampler:
        loops = {
            "train": Loop(phases=(("forward", self._forward), ("backward", self._backward)),
                          before=self._zero_grad, finish=self._free_training_state),
            "step": Loop(phases=(("step", self._step),), before=lambda: self._mode(True),
                         finish=self._free_training_state),
            "inference": Loop(phases=(("inference", self._inference),), before=lambda: self._mode(False),
                              finish=self._release_cache),
        }
        return PythonLoopSampler(loops, self.synchronize)

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def version(self) -> str:
        return torch.__version__

    def environment(self) -> dict[str, Any]:
        env: dict[str, Any] = {
            "torchvision": torchvision.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        }
        if self.cuda:
            props = torch.cuda.get_device_properties(self.device)
            env.update(gpu=props.name, gpu_uuid=str(getattr(props, "uuid", "")) or None,
                       cudnn_benchmark=torch.backends.cudnn.benchmark, **self.precision)
        return env

    def numerics(self) -> Numerics:
        kind = self.device.type
        with self._autocast():  # the dtype the timed calls compute in, as torch reports it inside them
            mixed = torch.is_autocast_enabled(kind)
            dtype = torch.get_autocast_dtype(kind) if mixed else self.x.dtype
        name = str(dtype).removeprefix("torch.") + (" (autocast)" if mixed else "")
        mode = self.spec.compile_mode or "default"
        tuning = [t for t, on in (("cudnn.benchmark", self.cuda and torch.backends.cudnn.benchmark),
                                  ("Inductor max-autotune", self.spec.compile and "max-autotune" in mode)) if on]
        # Inductor's reduce-overhead and max-autotune modes replay CUDA graphs; eager never does.
        graphs = self.cuda and self.spec.compile and mode in ("reduce-overhead", "max-autotune")
        four_d = self.x.dim() == 4
        layout = ("channels_last" if self.x.is_contiguous(memory_format=torch.channels_last) else "NCHW") \
            if four_d else "NC"
        return Numerics(
            dtype=name,
            tf32=self.cuda and (torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32),
            matmul_precision=torch.get_float32_matmul_precision(), autotuned=bool(tuning),
            autotune=", ".join(tuning) or ("none" if self.cuda else "none (CPU)"), cuda_graphs=graphs,
            compile=f"torch.compile ({mode})" if self.spec.compile else "eager",
            preallocate="caching allocator, grows on demand" if self.cuda else "none (CPU)",
            threads=torch.get_num_threads(), layout=layout)

    def reset_peak_memory(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory(self) -> dict[str, int]:
        """The caching allocator's high-water marks over the group's sampling.  reset_peak_memory_stats
        starts them at what is held when sampling starts, so `cuda_max_reserved` includes the blocks
        cached during the group's first run and warm-up, cuDNN's autotuning workspaces among them.
        The cache is not released there: the first timed sample would pay the cudaMalloc calls."""
        if not self.cuda:
            return {}
        return {
            "cuda_max_allocated": torch.cuda.max_memory_allocated(self.device),
            "cuda_max_reserved": torch.cuda.max_memory_reserved(self.device),
        }
