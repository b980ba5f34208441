"""The workload registry: the seed's nine vision models, shared by every framework backend."""

from __future__ import annotations

from dataclasses import dataclass

from pybench.errors import UserError

PHASES = ("forward", "backward", "total", "inference")
NUM_CLASSES = 1000
DEFAULT_IMAGE_SIZE = 224
DEFAULT_BATCH = 8
# The seed ran ResNet101/152 with batch 4 on GPUs (memory of 2018 cards); kept so rows stay comparable.
GPU_SMALL_BATCH = 4
# Five stride-2 stages: anything smaller than 32 pixels collapses to an empty feature map.
MIN_IMAGE_SIZE = 32


@dataclass(frozen=True)
class Workload:
    name: str
    title: str  # as the seed's tables spell it
    family: str  # "vgg" or "resnet"
    depth: int
    batchnorm: bool = False

    def default_batch(self, device: str) -> int:
        if device.startswith("cuda") and self.family == "resnet" and self.depth >= 101:
            return GPU_SMALL_BATCH
        return DEFAULT_BATCH


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("vgg16", "VGG16", "vgg", 16),
        Workload("vgg16_bn", "VGG16 BN", "vgg", 16, batchnorm=True),
        Workload("vgg19", "VGG19", "vgg", 19),
        Workload("vgg19_bn", "VGG19 BN", "vgg", 19, batchnorm=True),
        Workload("resnet18", "Resnet18", "resnet", 18),
        Workload("resnet34", "Resnet34", "resnet", 34),
        Workload("resnet50", "Resnet50", "resnet", 50),
        Workload("resnet101", "Resnet101", "resnet", 101),
        Workload("resnet152", "Resnet152", "resnet", 152),
    )
}


def get_workload(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; valid: {', '.join(WORKLOADS)}") from None


def resolve_models(names: list[str] | None) -> list[Workload]:
    """Expand 'all' and validate names, keeping the registry's order for 'all'."""
    if not names or "all" in names:
        return list(WORKLOADS.values())
    return [get_workload(n) for n in names]
