"""PyTorch backend: torchvision models, autograd, CUDA through torch.cuda."""

from __future__ import annotations

import torch
import torchvision

from pybench.backends.base import Backend, make_input


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
        self.model = getattr(torchvision.models, spec.model)(weights=None, num_classes=1000)
        self.model.to(self.device)
        self.x = torch.from_numpy(make_input(spec)).to(self.device)
        self.grad_out = torch.ones(spec.batch_size, 1000, device=self.device)
        self.y = None
        self.synchronize()
        params = sum(p.numel() for p in self.model.parameters())
        return {"params": params}

    def _mode(self, train: bool) -> None:
        if self.model.training != train:
            self.model.train(train)

    def zero_grad(self) -> None:
        self._mode(True)
        self.model.zero_grad(set_to_none=True)

    def forward(self) -> None:
        self.y = self.model(self.x)

    def backward(self) -> None:
        self.y.backward(self.grad_out)
        self.y = None

    def inference(self) -> None:
        self._mode(False)
        with torch.inference_mode():
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
        m = getattr(torchvision.models, model)(weights=None, num_classes=1000)
    return sum(p.numel() for p in m.parameters())
