"""The CNN baselines: torchvision's ResNet, adapted to small grayscale images, in two sizes.

ImageNet's stem (7x7 conv stride 2, then a stride-2 max-pool) shrinks a 28x28 image to 7x7 before the
first residual block; for small images the usual change (as for CIFAR) is a 3x3 stride-1 stem and no
max-pool, so the four stages see 28 -> 28 -> 14 -> 7 -> 4 pixels.

- `resnet18()`: the standard widths (64, 128, 256, 512) and two basic blocks per stage, 11.2M parameters.
- `resnet_small()`: widths (16, 32, 64, 128) and one block per stage, 0.3M parameters, sized to match the
  series' ViT in parameters; its training step is a little cheaper than the ViT's.

`PixelClassifier` is the floor: logistic regression on the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from .config import DictConfig
from .errors import UsageError

__all__ = ["CNNConfig", "PixelClassifier", "PixelConfig", "ResNet", "resnet18", "resnet_small"]


@dataclass(frozen=True)
class CNNConfig(DictConfig):
    in_chans: int = 1
    num_classes: int = 10
    img_size: int = 28  # informational: the network accepts any size (global average pooling)
    widths: tuple[int, ...] = (64, 128, 256, 512)  # channels of the four stages (stages 2-4 halve the resolution)
    depths: tuple[int, ...] = (2, 2, 2, 2)  # basic blocks per stage: (2, 2, 2, 2) is ResNet-18
    any_size: bool = True  # recorded in checkpoints: any image size works (ResNet.any_size)

    def __post_init__(self) -> None:
        # a config read back from JSON or a checkpoint holds lists
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "depths", tuple(self.depths))
        if len(self.widths) != 4 or len(self.depths) != 4 or min(self.widths + self.depths) < 1:
            raise UsageError(
                f"CNNConfig needs four positive stage widths and depths, got widths={self.widths}, depths={self.depths}"
            )


class _LinearHead:
    """The classifier of the CNN baselines: one linear layer named `fc` (torchvision's name)."""

    @property
    def classifier(self) -> nn.Linear:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.cfg = self.cfg.replace(num_classes=num_classes)
        self.fc = nn.Linear(self.fc.in_features, num_classes).to(self.fc.weight.device)


class ResNet(_LinearHead, torchvision.models.ResNet):
    """torchvision's ResNet with basic blocks, the stage widths and depths of `cfg`, a 3x3 stride-1 stem,
    no max-pool and `in_chans` input channels. Parameter names are torchvision's (conv1, layer1.0.conv1, fc)."""

    kind = "resnet"
    config_class = CNNConfig
    any_size = True  # global average pooling: any image size works
    channels_last = True  # the trainer feeds it NHWC (channels_last) tensors, which CPUs convolve faster

    def __init__(self, cfg: CNNConfig | None = None, **kwargs):
        cfg = cfg or CNNConfig(**kwargs)
        super().__init__(BasicBlock, list(cfg.depths), num_classes=cfg.num_classes)
        self.cfg = cfg
        if cfg.widths != (64, 128, 256, 512):  # torchvision fixes the widths: rebuild the stages with ours
            self.inplanes = cfg.widths[0]
            self.bn1 = nn.BatchNorm2d(cfg.widths[0])
            self.layer1 = self._make_layer(BasicBlock, cfg.widths[0], cfg.depths[0])
            for i in (1, 2, 3):
                setattr(self, f"layer{i + 1}", self._make_layer(BasicBlock, cfg.widths[i], cfg.depths[i], stride=2))
            self.fc = nn.Linear(cfg.widths[3], cfg.num_classes)
            for m in self.modules():  # torchvision's init for the rebuilt layers
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
        self.conv1 = nn.Conv2d(cfg.in_chans, cfg.widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()

    def set_input_size(self, img_size: int) -> None:
        """Record a new image size (the network itself takes any size)."""
        self.cfg = self.cfg.replace(img_size=img_size)


def resnet18(in_chans: int = 1, num_classes: int = 10, img_size: int = 28) -> ResNet:
    """A ResNet-18 for small images (e.g. 28x28 grayscale Fashion-MNIST): 11.2M parameters."""
    return ResNet(CNNConfig(in_chans=in_chans, num_classes=num_classes, img_size=img_size))


def resnet_small(in_chans: int = 1, num_classes: int = 10, img_size: int = 28) -> ResNet:
    """A ResNet-10 of widths 16-128 for small images: 0.3M parameters, the series' ViT's size."""
    cfg = CNNConfig(in_chans, num_classes, img_size, widths=(16, 32, 64, 128), depths=(1, 1, 1, 1))
    return ResNet(cfg)


@dataclass(frozen=True)
class PixelConfig(DictConfig):
    in_chans: int = 1
    num_classes: int = 10
    img_size: int = 28


class PixelClassifier(_LinearHead, nn.Module):
    """A linear classifier on the raw pixels (multinomial logistic regression): the floor any image model must beat."""

    kind = "pixels"
    config_class = PixelConfig
    any_size = False  # one weight per pixel
    channels_last = False

    def __init__(self, cfg: PixelConfig | None = None, **kwargs):
        super().__init__()
        self.cfg = cfg or PixelConfig(**kwargs)
        self.fc = nn.Linear(self.cfg.in_chans * self.cfg.img_size**2, self.cfg.num_classes)

    def set_input_size(self, img_size: int) -> None:
        raise UsageError(
            f"a PixelClassifier has one weight per pixel of a {self.cfg.img_size}x{self.cfg.img_size} image and "
            f"cannot take {img_size}x{img_size} images; resize the data, or train a new one"
        )

    def forward(self, x):  # (B, C, H, W) -> (B, classes)
        return self.fc(x.flatten(1))
