"""The workload registry: the seed's nine vision models, shared by every framework backend."""

from __future__ import annotations

from dataclasses import dataclass

from pybench.errors import UserError
from pybench.protocol.phases import LAYER_PHASES, MODEL_PHASES

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
    family: str  # "vgg", "resnet", or a layer kind: "conv", "maxpool", "meanpool", "batchnorm", "dense"
    depth: int = 0
    batchnorm: bool = False
    # Layers only: kernel, stride, channels in/out (dense: features in/out), as the seed's later
    # per-layer benchmarks defined them.
    kernel: int = 0
    stride: int = 1
    channels: tuple[int, int] = (3, 3)

    @property
    def is_layer(self) -> bool:
        return self.family not in ("vgg", "resnet")

    @property
    def phases(self) -> tuple[str, ...]:
        # A lone layer has no train/eval distinction worth a column and no loss to train on.
        return LAYER_PHASES if self.is_layer else MODEL_PHASES

    def default_batch(self, device: str) -> int:
        if self.is_layer:
            return 1
        if device.startswith("cuda") and self.family == "resnet" and self.depth >= 101:
            return GPU_SMALL_BATCH
        return DEFAULT_BATCH

    def input_shape(self, batch: int, image_size: int) -> tuple[int, ...]:
        """NCHW for images, (N, features) for a dense layer."""
        if self.family == "dense":
            return (batch, self.channels[0])
        return (batch, self.channels[0], image_size, image_size)

    @property
    def min_image_size(self) -> int:
        return 1 if self.is_layer else MIN_IMAGE_SIZE


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


LAYERS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("conv3x3_s1", "Conv3x3/1", "conv", kernel=3, stride=1, channels=(3, 64)),
        Workload("conv5x5_s1", "Conv5x5/1", "conv", kernel=5, stride=1, channels=(3, 64)),
        Workload("conv3x3_s2", "Conv3x3/2", "conv", kernel=3, stride=2, channels=(3, 64)),
        Workload("conv5x5_s2", "Conv5x5/2", "conv", kernel=5, stride=2, channels=(3, 64)),
        Workload("maxpool3x3_s2", "MaxPool3x3/2", "maxpool", kernel=3, stride=2),
        Workload("meanpool3x3_s2", "MeanPool3x3/2", "meanpool", kernel=3, stride=2),
        Workload("batchnorm2d", "BatchNorm2d(3)", "batchnorm"),
        Workload("dense1024_512", "Dense 1024->512", "dense", channels=(1024, 512)),
    )
}

ALL = {**WORKLOADS, **LAYERS}


def get_workload(name: str) -> Workload:
    try:
        return ALL[name]
    except KeyError:
        raise UserError(
            f"unknown model {name!r}; valid: all, layers, {', '.join(ALL)}"
        ) from None


def resolve_models(names: list[str] | None) -> list[Workload]:
    """Expand 'all' (the nine models) and 'layers' (the per-layer suite), keeping registry order."""
    out: list[Workload] = []
    for n in names or ["all"]:
        out.extend(
            WORKLOADS.values() if n == "all" else LAYERS.values() if n == "layers" else [get_workload(n)]
        )
    return list(dict.fromkeys(out))
