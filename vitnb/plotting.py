"""Figures for the first notebooks: patch grids, position-embedding similarity, attention heatmaps.

The tensor work (laying patches out with gaps, the similarity grid) lives in plain functions that the
tests check; the `show_`/`plot_` functions only draw. Images are drawn by `viz.show_image`, the
package's one image drawer, so every figure displays images the same way.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from einops import rearrange
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .viz import show_image


def _as_float_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 images become floats in [0, 1]; float images pass through (detached, on the CPU)."""
    image = image.detach().cpu()
    return image.float() / 255.0 if image.dtype == torch.uint8 else image.float()


def patch_mosaic(
    image: torch.Tensor, patch_size: int | tuple[int, int], gap: int = 1, fill: float | tuple[float, ...] = 1.0
) -> torch.Tensor:
    """Lay the patches of `image` (C, H, W) out with `gap` pixels of `fill` between neighbours.

    Returns (C, H + (gh - 1) * gap, W + (gw - 1) * gap); `fill` is one value or one per channel.
    `patch_size` may be (ph, pw) for rectangular tiles (used for the similarity grid).
    """
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    c, h, w = image.shape
    if h % ph or w % pw:
        raise ValueError(f"image size {h}x{w} is not divisible by patch size {ph}x{pw}")
    tiles = rearrange(image, "c (gh ph) (gw pw) -> gh gw c ph pw", ph=ph, pw=pw)
    canvas = torch.empty(*tiles.shape[:3], ph + gap, pw + gap, dtype=tiles.dtype)
    canvas[:] = torch.as_tensor(fill, dtype=tiles.dtype).reshape(-1, 1, 1)  # gap colour, per channel
    canvas[..., :ph, :pw] = tiles
    mosaic = rearrange(canvas, "gh gw c ph pw -> c (gh ph) (gw pw)")
    return mosaic[:, : mosaic.shape[1] - gap, : mosaic.shape[2] - gap]  # no gap after the last row/column


def show_patches(
    image: torch.Tensor,
    patch_size: int,
    gap: int | None = None,
    numbers: bool = False,
    ax: Axes | None = None,
    title: str | None = None,
    gap_color: tuple[float, float, float] | None = None,
) -> Figure:
    """Draw `image` (C, H, W; uint8 or float in [0, 1]) cut into its P x P patches, with gaps between them.

    Gaps are white for colour images and blue for grayscale ones (where white would look like the object).
    With `numbers=True` each patch is labelled with its position in the token sequence (row-major).
    """
    image = _as_float_image(image)
    gap = max(1, patch_size // 8) if gap is None else gap
    if gap_color is None:
        gap_color = (1.0, 1.0, 1.0) if image.shape[0] == 3 else (0.35, 0.55, 0.85)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    mosaic = patch_mosaic(image.expand(3, -1, -1), patch_size, gap, fill=gap_color)  # RGB, for coloured gaps
    show_image(ax, mosaic)
    if numbers:
        gh, gw = image.shape[1] // patch_size, image.shape[2] // patch_size
        step = patch_size + gap
        for i in range(gh):
            for j in range(gw):
                ax.text(j * step + patch_size / 2, i * step + patch_size / 2, str(i * gw + j), color="yellow",
                        ha="center", va="center", fontsize="x-small", fontweight="bold")  # fmt: skip
    if title:
        ax.set_title(title)
    return ax.figure


def pos_embed_similarity(pos_embed: torch.Tensor, grid_size: tuple[int, int], num_prefix_tokens: int) -> torch.Tensor:
    """Cosine similarity between the position embeddings of every pair of patches, (gh, gw, gh, gw).

    `pos_embed` is (1, prefix + gh*gw, D) or (prefix + gh*gw, D); prefix (cls) rows are ignored.
    Entry [i, j, k, l] compares the patch at row i, column j with the patch at row k, column l.
    """
    gh, gw = grid_size
    pe = pos_embed.detach().cpu().float().reshape(-1, pos_embed.shape[-1])[num_prefix_tokens:]  # (N, D)
    if pe.shape[0] != gh * gw:
        raise ValueError(f"{pe.shape[0]} patch position embeddings do not fill a {gh}x{gw} grid")
    unit = F.normalize(pe, dim=-1)
    return (unit @ unit.T).reshape(gh, gw, gh, gw)


def plot_pos_embed_similarity(
    pos_embed: torch.Tensor,
    grid_size: tuple[int, int],
    num_prefix_tokens: int,
    ax: Axes | None = None,
    title: str = "Position embedding similarity",
    vmin: float | None = None,
) -> Figure:
    """ViT paper Fig. 7 (centre): tile (i, j) shows how similar patch (i, j)'s embedding is to every other.

    One image of gh x gw tiles separated by blank lines, with a colour bar for the cosine similarity.
    The colour scale runs from `vmin` (default: the smallest similarity) to 1.
    """
    gh, gw = grid_size
    sim = pos_embed_similarity(pos_embed, grid_size, num_prefix_tokens)
    tiled = rearrange(sim, "i j k l -> 1 (i k) (j l)")  # tile (i, j) holds sim[i, j]
    mosaic = patch_mosaic(tiled, (gh, gw), gap=1, fill=float("nan"))[0]  # NaN gaps draw as background
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(mosaic.numpy(), cmap="viridis", vmin=vmin, vmax=1.0)
    ax.set_xticks([j * (gw + 1) + (gw - 1) / 2 for j in range(gw)], [str(j + 1) for j in range(gw)])
    ax.set_yticks([i * (gh + 1) + (gh - 1) / 2 for i in range(gh)], [str(i + 1) for i in range(gh)])
    ax.tick_params(length=0, labelsize="x-small")
    ax.set(xlabel="input patch column", ylabel="input patch row", title=title)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
    return ax.figure


def plot_attention_heatmap(
    weights: torch.Tensor, num_prefix_tokens: int = 1, cell_size: float = 3.0, title: str | None = None
) -> Figure:
    """Heatmaps of post-softmax attention weights, (N, N) or one per head (H, N, N), with one colour bar.

    Row = query token, column = key token; the prefix (cls) tokens come first and are marked by lines.
    All heads share one colour scale, from 0 to the largest weight.
    """
    weights = weights.detach().cpu().float()
    weights = weights[None] if weights.ndim == 2 else weights  # (H, N, N)
    if weights.ndim != 3 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"expected attention weights (N, N) or (H, N, N), got {tuple(weights.shape)}")
    heads = weights.shape[0]
    fig, axes = plt.subplots(1, heads, figsize=(cell_size * heads + 1, cell_size), squeeze=False)
    vmax = float(weights.max())
    for h, ax in enumerate(axes[0]):
        im = ax.imshow(weights[h].numpy(), cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        if num_prefix_tokens:
            for line in (ax.axhline, ax.axvline):
                line(num_prefix_tokens - 0.5, color="cyan", linewidth=0.8)
        ax.set(xlabel="key token", ylabel="query token" if h == 0 else None)
        ax.set_title(f"head {h}" if heads > 1 else "attention", fontsize="small")
    fig.colorbar(im, ax=list(axes[0]), fraction=0.046 / heads**0.5, pad=0.02, label="weight")
    if title:
        fig.suptitle(title)
    return fig
