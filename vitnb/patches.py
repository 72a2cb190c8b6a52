"""Image -> patches -> tokens: patchify/unpatchify and the patch-embedding stems."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torchvision.models.resnet import BasicBlock

from .errors import UsageError

__all__ = [
    "STEM_CLASSES",
    "ConvStemEmbed",
    "DeepConvStemEmbed",
    "PatchEmbed",
    "ResNetStemEmbed",
    "ShiftedPatchEmbed",
    "patchify",
    "place_on_canvas",
    "shift_image",
    "unpatchify",
]

if TYPE_CHECKING:
    from .config import ViTConfig


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Split images (B, C, H, W) into flattened patches (B, N, P*P*C), row-major over the grid.

    Each patch vector is ordered (p1, p2, c), channels last, as in the ViT paper.
    """
    _, _, h, w = images.shape
    if h % patch_size or w % patch_size:
        raise UsageError(f"image size {h}x{w} is not divisible by patch_size={patch_size}")
    return rearrange(images, "b c (gh p1) (gw p2) -> b (gh gw) (p1 p2 c)", p1=patch_size, p2=patch_size)


def unpatchify(patches: torch.Tensor, patch_size: int, grid_size: tuple[int, int], channels: int):
    """Inverse of `patchify`: (B, N, P*P*C) -> (B, C, H, W)."""
    gh, gw = grid_size
    if patches.shape[1] != gh * gw or patches.shape[2] != patch_size * patch_size * channels:
        raise UsageError(
            f"expected patches of shape (B, {gh * gw}, {patch_size * patch_size * channels}), "
            f"got {tuple(patches.shape)}"
        )
    return rearrange(
        patches, "b (gh gw) (p1 p2 c) -> b c (gh p1) (gw p2)", gh=gh, gw=gw, p1=patch_size, p2=patch_size, c=channels
    )


class PatchEmbed(nn.Module):
    """Linear patch embedding, written as a conv with kernel = stride = patch size (timm's layout).

    Identical to `patchify` followed by a Linear layer whose weight is the conv kernel reshaped;
    the conv is simply the faster way to compute it.
    """

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.set_img_size(img_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    @classmethod
    def from_config(cls, cfg: ViTConfig) -> PatchEmbed:
        """The stem a ViTConfig asks for; stems with options of their own read them here."""
        return cls(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.embed_dim)

    def set_img_size(self, img_size: int) -> None:
        if img_size % self.patch_size:
            raise UsageError(f"img_size={img_size} is not divisible by patch_size={self.patch_size}")
        self.img_size = (img_size, img_size)
        self.grid_size = (img_size // self.patch_size, img_size // self.patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a UsageError naming the expected and received shape when x does not fit."""
        expected = (self.in_chans, *self.img_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise UsageError(
                f"expected images of shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}; "
                f"resize/convert the input, or call model.set_input_size(...) for another image size"
            )

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, D, gh, gw)
        return self.proj(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return rearrange(self.embed(x), "b d gh gw -> b (gh gw) d")  # (B, N, D)


class ConvStemEmbed(PatchEmbed):
    """Convolutional stem (Xiao et al. 2021, "Early convolutions help transformers see better").

    log2(P) stride-2 3x3 conv + BatchNorm + ReLU layers, doubling the channels each time, then a
    1x1 conv (`proj`) to embed_dim: the same grid of tokens as the patchify conv, seen through
    overlapping receptive fields instead of disjoint patches.
    """

    convs_per_stage = 1  # 3x3 convs per halving of the resolution: one stride-2 conv, then stride-1 ones

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, width: int = 24):
        super().__init__(img_size, patch_size, in_chans, embed_dim)
        layers, channels = self.stem_layers(in_chans, width, stages=patch_size.bit_length() - 1)  # log2(P) halvings
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Conv2d(channels, embed_dim, kernel_size=1)

    def stem_layers(self, in_chans: int, width: int, stages: int) -> tuple[list[nn.Module], int]:
        """The layers under the 1x1 projection, `stages` halvings of the resolution with `width * 2**i` channels,
        and the channels they output."""
        layers, c_in = [], in_chans
        for i in range(stages):
            c_out = width * 2**i
            for j in range(self.convs_per_stage):
                conv = nn.Conv2d(c_in, c_out, 3, stride=2 if j == 0 else 1, padding=1, bias=False)
                layers += [conv, nn.BatchNorm2d(c_out), nn.ReLU()]
                c_in = c_out
        return layers, c_in

    @classmethod
    def from_config(cls, cfg: ViTConfig) -> ConvStemEmbed:
        return cls(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.embed_dim, width=cfg.stem_width)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.stem(x))


class DeepConvStemEmbed(ConvStemEmbed):
    """The conv stem with a stride-1 3x3 conv + BatchNorm + ReLU after each stride-2 one (two per stage).

    Twice the stem's convolutions and receptive field, a step toward the ViT paper's hybrid, whose tokens
    come from a CNN's feature map. On Fashion-MNIST it learns much faster per image than `ConvStemEmbed`
    (benchmarks/RESULTS.md, time to accuracy).
    """

    convs_per_stage = 2


class ResNetStemEmbed(ConvStemEmbed):
    """The ViT paper's hybrid in miniature: tokens read off a small ResNet's feature map (stride P).

    A 3x3 stride-1 conv + BatchNorm + ReLU and one basic block (torchvision's `BasicBlock`) at full
    resolution, then log2(P) basic blocks of stride 2, each doubling the channels, then the 1x1 projection to
    embed_dim. Unlike `ConvStemEmbed` it looks at the image at full resolution before downsampling, and its
    residual blocks keep the deeper stem easy to train.
    """

    def stem_layers(self, in_chans: int, width: int, stages: int) -> tuple[list[nn.Module], int]:
        layers = [nn.Conv2d(in_chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        layers.append(BasicBlock(width, width))
        c_in = width
        for _ in range(stages):
            down = nn.Sequential(nn.Conv2d(c_in, 2 * c_in, 1, stride=2, bias=False), nn.BatchNorm2d(2 * c_in))
            layers.append(BasicBlock(c_in, 2 * c_in, stride=2, downsample=down))
            c_in *= 2
        return layers, c_in


class ShiftedPatchEmbed(PatchEmbed):
    """Shifted Patch Tokenization (Lee et al. 2021, "Vision Transformer for Small-Size Datasets").

    The image and four copies shifted by half a patch diagonally are stacked on the channel axis,
    so each token also sees its neighbours' borders; then patchify, LayerNorm, Linear.
    """

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__(img_size, patch_size, in_chans, embed_dim)
        patch_dim = 5 * in_chans * patch_size**2
        self.norm = nn.LayerNorm(patch_dim, eps=1e-6)
        self.proj = nn.Linear(patch_dim, embed_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        s = self.patch_size // 2
        shifted = [x] + [shift_image(x, dx, dy) for dx, dy in ((-s, -s), (s, -s), (-s, s), (s, s))]
        tokens = self.proj(self.norm(patchify(torch.cat(shifted, dim=1), self.patch_size)))  # (B, N, D)
        return rearrange(tokens, "b (gh gw) d -> b d gh gw", gh=self.grid_size[0])


def shift_image(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate images (B, C, H, W) by (dx, dy) pixels (positive = right/down), filling with zeros."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top : top + h, left : left + w]


def place_on_canvas(x: torch.Tensor, pad: int, dx: int, dy: int) -> torch.Tensor:
    """Images (B, C, H, W) on a zero canvas (B, C, H + pad, W + pad), their top-left corner at (dx, dy)."""
    if not (0 <= dx <= pad and 0 <= dy <= pad):
        raise UsageError(f"the offset ({dx}, {dy}) must lie in 0..pad={pad}, or the canvas would crop the image")
    return F.pad(x, (dx, pad - dx, dy, pad - dy))


STEM_CLASSES = {
    "patch": PatchEmbed,
    "conv": ConvStemEmbed,
    "conv_deep": DeepConvStemEmbed,
    "resnet": ResNetStemEmbed,
    "spt": ShiftedPatchEmbed,
}
