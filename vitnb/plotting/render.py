"""Pictures as arrays, without a matplotlib figure: how an image and a map become display pixels.

`display_image` and `upsampled_heat` are the one rule for turning an image and a map into pixels; the
figures (`vitnb.plotting.images`) and the explorer's pictures (`render_overlay`, `to_png`) both use them,
so they show a map the same way. `render_overlay` composes the picture in numpy, with no figure and no
pyplot: the attention explorer redraws it on every control change. The explorer page (`vitnb.explorer`) draws
in its script by the same rules, from `colour_table` and the pixels `render_overlay` gives.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["colorbar_strip", "colour_table", "display_image", "min_max", "render_overlay", "to_png", "upsampled_heat"]


def min_max(t: torch.Tensor) -> torch.Tensor:
    """Scale to [0, 1] for display; a constant tensor becomes all zeros."""
    low, span = t.min(), t.max() - t.min()
    return (t - low) / span if span > 0 else torch.zeros_like(t)


def display_image(image: torch.Tensor) -> torch.Tensor:
    """An image (C, H, W) as floats in [0, 1] on the CPU, ready to draw.

    uint8 images are divided by 255; float images are min-max scaled, so normalised model inputs and
    denormalised ones display alike.
    """
    image = image.detach().cpu()
    return image.float() / 255.0 if image.dtype == torch.uint8 else min_max(image.float())


def upsampled_heat(heat: torch.Tensor, size: Sequence[int], scale: bool = True) -> torch.Tensor:
    """A map (h, w) -> (H, W): every patch's value repeated over its pixels (nearest neighbour, no smoothing,
    so each block is one token), then min-max scaled to [0, 1] unless `scale` is False."""
    heat = heat.detach().cpu().float()[None, None]  # (1, 1, h, w)
    heat = F.interpolate(heat, size=tuple(size), mode="nearest-exact")[0, 0]  # (H, W)
    return min_max(heat) if scale else heat


@functools.cache
def colour_table(cmap: str) -> np.ndarray:
    """(256, 3) float32 RGB lookup table of a matplotlib colormap (building one per update is slow)."""
    return matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3].astype(np.float32)


def render_overlay(
    image: torch.Tensor,
    heat: torch.Tensor | None = None,
    alpha: float = 0.5,
    cmap: str = "inferno",
    scale: int = 1,
    box: tuple[int, int, int, int] | None = None,
    grid: tuple[int, int] | None = None,
) -> np.ndarray:
    """The map `heat` (h, w) over `image` (C, H, W) as a uint8 RGB array (H * scale, W * scale, 3).

    `image`, C = 1 or 3, is scaled by `display_image`; `heat`, if given, by `upsampled_heat` (one flat
    block per token, min-max scaled), then coloured with `cmap` and mixed in with opacity `alpha`: the
    picture `plotting.show_map(ax, image, heat, alpha=alpha, cmap=cmap)` draws. Pixels are repeated
    `scale` times (crisp, no smoothing). `grid` = (h, w) darkens the first display pixel row and column
    of every patch but the first (the patch grid); `box` = (top, left, height, width) in image pixels
    draws a cyan outline (the explorer's query patch). The pixel work is numpy's: on small arrays it does
    not wait for torch's intra-op threads, which a busy notebook kernel keeps occupied.
    """
    rgb = display_image(image).expand(3, -1, -1).permute(1, 2, 0).numpy()  # (H, W, 3) in [0, 1]
    if heat is not None and alpha > 0:
        heat = upsampled_heat(heat, rgb.shape[:2]).numpy()  # (H, W) in [0, 1]
        rgb = (1 - alpha) * rgb + alpha * colour_table(cmap)[(heat * 255 + 0.5).astype(np.intp)]  # (H, W, 3)
    out = np.repeat(np.repeat((rgb * 255 + 0.5).astype(np.uint8), scale, axis=0), scale, axis=1)
    if grid is not None:
        (height, width), (gh, gw) = out.shape[:2], grid
        rows = [r * height // gh for r in range(1, gh)]
        cols = [c * width // gw for c in range(1, gw)]
        out[rows] = out[rows] // 2  # half as bright: visible on any colour, never hiding the map
        out[:, cols] = out[:, cols] // 2
    if box is not None:
        top, left, height, width = (v * scale for v in box)
        t = max(1, scale // 4)  # line thickness in display pixels
        frame = np.zeros(out.shape[:2], dtype=bool)
        frame[top : top + height, left : left + width] = True
        frame[top + t : top + height - t, left + t : left + width - t] = False
        out[frame] = (0, 255, 255)
    return out


def colorbar_strip(cmap: str = "inferno", height: int = 128, width: int = 12) -> np.ndarray:
    """A vertical colour scale as a uint8 RGB array (height, width, 3): the top row is `cmap` at 1, the
    bottom row at 0 (the explorer's colorbar beside its min-max scaled picture)."""
    levels = np.linspace(1, 0, height)  # top = the map's maximum
    rgb = colour_table(cmap)[(levels * 255 + 0.5).astype(np.intp)]  # (height, 3)
    return np.repeat((rgb[:, None] * 255 + 0.5).astype(np.uint8), width, axis=1)


def to_png(array: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes (fast, light compression)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()
