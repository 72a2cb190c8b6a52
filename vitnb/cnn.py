"""The CNN baseline: torchvision's ResNet-18, adapted to small grayscale images.

ImageNet's stem (7x7 conv stride 2, then a stride-2 max-pool) shrinks a 28x28 image to 7x7 before the
first residual block; for small images the usual change (as for CIFAR) is a 3x3 stride-1 stem and no
max-pool, so the four stages see 28 -> 28 -> 14 -> 7 -> 4 pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torchvision
from torch import nn


@dataclass(frozen=True)
class CNNConfig:
    in_chans: int = 1
    num_classes: int = 10
    img_size: int = 28  # informational: the network accepts any size (global average pooling)
    any_size: bool = True  # tells the trainer's shape check that only the channel count must match

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CNNConfig:
        return cls(**d)

    def replace(self, **changes) -> CNNConfig:
        return CNNConfig(**{**self.to_dict(), **changes})


class ResNet18(torchvision.models.ResNet):
    """torchvision's ResNet-18 with a 3x3 stride-1 stem, no max-pool, `in_chans` input channels."""

    channels_last = True  # the trainer feeds it NHWC (channels_last) tensors, which CPUs convolve faster

    def __init__(self, cfg: CNNConfig | None = None, **kwargs):
        cfg = cfg or CNNConfig(**kwargs)
        super().__init__(torchvision.models.resnet.BasicBlock, [2, 2, 2, 2], num_classes=cfg.num_classes)
        self.cfg = cfg
        self.conv1 = nn.Conv2d(cfg.in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        self.cfg = self.cfg.replace(num_classes=num_classes)
        self.fc = nn.Linear(self.fc.in_features, num_classes).to(self.conv1.weight.device)


def resnet18(in_chans: int = 1, num_classes: int = 10, img_size: int = 28) -> ResNet18:
    """A ResNet-18 for small images (e.g. 28x28 grayscale Fashion-MNIST): 11.2M parameters."""
    return ResNet18(CNNConfig(in_chans=in_chans, num_classes=num_classes, img_size=img_size))
