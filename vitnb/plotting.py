"""Every figure of the package: images and attention maps over them, patch grids, position-embedding
similarity, attention heatmaps, attention distance, and the attention explorer's pictures.

The tensor work (laying patches out with gaps, the similarity grid) lives in plain functions that the
tests check; the `show_`/`plot_` functions only draw. Every image goes through `display_image` and every
map through `upsampled_heat`, so all figures and the explorer display them the same way.
"""

from __future__ import annotations

import functools
import io
import textwrap
from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter
from PIL import Image

from .rollout import POOLED, ForwardCache, Query, attention_map, head_options


# --- images and maps ---------------------------------------------------------------------------------
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


def show_image(ax: Axes, image: torch.Tensor) -> None:
    """Draw a (C, H, W) image, C = 1 (grayscale) or 3 (RGB), scaled by `display_image`, without axes."""
    image = display_image(image)
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray")
    else:
        ax.imshow(image.permute(1, 2, 0).numpy())  # (H, W, 3)
    ax.set_axis_off()


def overlay(ax: Axes, image: torch.Tensor, heat: torch.Tensor, alpha: float = 0.5, cmap: str = "inferno") -> Figure:
    """Draw `heat` (h, w) over `image` (C, H, W) with C = 1 or 3; returns the figure.

    The image is scaled by `display_image`, the map by `upsampled_heat` (each on its own; nearest
    neighbour, so every token is one flat block), so raw attention maps display as they are.
    """
    show_image(ax, image)
    ax.imshow(upsampled_heat(heat, image.shape[-2:]).numpy(), cmap=cmap, alpha=alpha)
    return ax.figure


def draw_patch_grid(ax: Axes, grid_size: Sequence[int], size: Sequence[int], color: str = "white", alpha=0.35) -> None:
    """Thin lines between the patches of a `grid_size` (h, w) grid over an image of `size` (H, W) pixels."""
    (gh, gw), (height, width) = grid_size, size
    for r in range(1, gh):
        ax.axhline(r * height / gh - 0.5, color=color, alpha=alpha, linewidth=0.5)
    for c in range(1, gw):
        ax.axvline(c * width / gw - 0.5, color=color, alpha=alpha, linewidth=0.5)


def show_map(
    ax: Axes,
    image: torch.Tensor,
    heat: torch.Tensor,
    *,
    vmin: float = 0.0,
    vmax: float | None = None,
    cmap: str = "viridis",
    outline: float | None = 0.2,
    grid: bool = True,
):
    """Draw the map `heat` (h, w) over the area of `image` (C, H, W) on a fixed colour scale; returns the AxesImage.

    The map is drawn opaque, one flat block per token (nearest neighbour), with colours from `vmin` to
    `vmax` (None: the map's maximum), so a colour means the same value in every panel that shares the
    scale and a colorbar reads it off. The image shows as a white contour at brightness `outline`
    (of `display_image`'s [0, 1]; None: no contour), and `grid` draws the patch grid.
    """
    size = image.shape[-2:]
    values = upsampled_heat(heat, size, scale=False).numpy()  # (H, W), raw values
    vmax = float(heat.max()) if vmax is None else vmax
    shown = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    if outline is not None:
        gray = display_image(image).mean(dim=0).numpy()  # (H, W) in [0, 1]
        if gray.min() < outline < gray.max():
            ax.contour(gray, levels=[outline], colors="white", linewidths=0.8)
    if grid:
        draw_patch_grid(ax, heat.shape[-2:], size)
    ax.set_axis_off()
    return shown


def plot_maps_with_colorbars(
    images: torch.Tensor | Sequence[torch.Tensor],
    maps_by_title: dict[str, torch.Tensor],
    *,
    label: str = "",
    cmap: str = "viridis",
    row_titles: Sequence[str] | None = None,
    cell_size: float = 1.6,
    dpi: int = 80,
    outline: float | None = 0.2,
    from_zero: bool = False,
) -> Figure:
    """One row per image (C, H, W): the image, then each (B, h, w) map drawn by `show_map`.

    Every column has one colour scale, from the column's smallest value (0 if `from_zero`) to its largest,
    and a colorbar under it labelled `label` (state the unit there): the images of one column compare
    directly, and the bar's ticks tell how far the maps depart from flat, even when that is little.
    Maps are drawn raw: no scaling per map.
    """
    rows, cols = len(images), 1 + len(maps_by_title)
    fig, axes = plt.subplots(
        rows, cols, figsize=(cell_size * cols, cell_size * rows + 0.9), dpi=dpi, squeeze=False, layout="constrained"
    )
    for i, image in enumerate(images):
        show_image(axes[i, 0], image)
        if row_titles is not None:  # wrapped to the column's width, so a long title never runs into the next one
            axes[i, 0].set_title(textwrap.fill(row_titles[i], width=int(13 * cell_size)), fontsize="small")
    for j, (title, maps) in enumerate(maps_by_title.items(), start=1):
        vmin, vmax = 0.0 if from_zero else float(maps[:rows].min()), float(maps[:rows].max())
        for i, image in enumerate(images):
            shown = show_map(axes[i, j], image, maps[i], vmin=vmin, vmax=vmax, cmap=cmap, outline=outline)
        axes[0, j].set_title(title, fontsize="small")
        bar = fig.colorbar(shown, ax=axes[:, j], location="bottom", shrink=0.9, aspect=12, pad=0.02)
        bar.ax.tick_params(labelsize="x-small")
        bar.locator = MaxNLocator(3)
        bar.formatter = ScalarFormatter(useOffset=False)
        bar.update_ticks()
        if label:
            bar.set_label(label, fontsize="x-small")
    return fig


# --- patches and position embeddings ---------------------------------------------------------------
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
    """Draw `image` (C, H, W; uint8, or float, min-max scaled) cut into its P x P patches, with gaps between them.

    Gaps are white for colour images and blue for grayscale ones (where white would look like the object).
    With `numbers=True` each patch is labelled with its position in the token sequence (row-major).
    """
    image = display_image(image)
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


def pos_embed_similarity(
    pos_embed: torch.Tensor, *, num_prefix_tokens: int, grid_size: tuple[int, int]
) -> torch.Tensor:
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
    *,
    num_prefix_tokens: int,
    grid_size: tuple[int, int],
    ax: Axes | None = None,
    title: str = "Position embedding similarity",
    vmin: float | None = None,
) -> Figure:
    """ViT paper Fig. 7 (centre): tile (i, j) shows how similar patch (i, j)'s embedding is to every other.

    One image of gh x gw tiles separated by blank lines, with a colour bar for the cosine similarity.
    The colour scale runs from `vmin` (default: the smallest similarity) to 1.
    """
    gh, gw = grid_size
    sim = pos_embed_similarity(pos_embed, num_prefix_tokens=num_prefix_tokens, grid_size=grid_size)
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


# --- attention -------------------------------------------------------------------------------------
def plot_attention_heatmap(
    weights: torch.Tensor, *, num_prefix_tokens: int = 1, cell_size: float = 3.0, title: str | None = None
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
    fig, axes = plt.subplots(1, heads, figsize=(cell_size * heads + 1, cell_size), squeeze=False, layout="constrained")
    vmax = float(weights.max())
    for h, ax in enumerate(axes[0]):
        im = ax.imshow(weights[h].numpy(), cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        if num_prefix_tokens:
            for line in (ax.axhline, ax.axvline):
                line(num_prefix_tokens - 0.5, color="cyan", linewidth=0.8)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(integer=True))  # token indices: whole numbers only
        ax.set(xlabel="key token", ylabel="query token" if h == 0 else None)
        ax.set_title(f"head {h}" if heads > 1 else "attention")
    fig.colorbar(im, ax=list(axes[0]), fraction=0.046 / heads**0.5, pad=0.02, label="weight")
    if title:
        fig.suptitle(title)
    return fig


def plot_attention_grid(
    images: torch.Tensor | Sequence[torch.Tensor],
    maps_by_title: dict[str, torch.Tensor],
    alpha: float = 0.5,
    cmap: str = "inferno",
    cell_size: float = 2.5,
) -> Figure:
    """Grid with one row per image (C, H, W): the image, then each (B, h, w) map overlaid on it."""
    rows, cols = len(images), 1 + len(maps_by_title)
    fig, axes = plt.subplots(rows, cols, figsize=(cell_size * cols, cell_size * rows), squeeze=False)
    for i, image in enumerate(images):
        show_image(axes[i, 0], image)
        for j, maps in enumerate(maps_by_title.values(), start=1):
            overlay(axes[i, j], image, maps[i], alpha, cmap)
    for j, title in enumerate(["image", *maps_by_title]):
        axes[0, j].set_title(title)
    fig.tight_layout()
    return fig


def plot_mean_attention_distance(
    distance: torch.Tensor, ax: Axes | None = None, title: str = "Mean attention distance"
) -> Figure:
    """Scatter of `rollout.mean_attention_distance` output (L, H): one dot per head at each block (0 = first)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    distance = distance.detach().cpu().numpy()
    blocks = range(distance.shape[0])
    for head in range(distance.shape[1]):
        ax.scatter(blocks, distance[:, head], s=15, label=f"head {head}")
    ax.set(xlabel="block (0 = first)", ylabel="mean attention distance (pixels)", title=title)
    ax.set_xticks(blocks)
    ax.legend(fontsize="x-small", ncol=2)
    return ax.figure


def plot_attention_distance_by_depth(
    distances: dict[str, torch.Tensor], uniform: float | None = None, title: str = "Mean attention distance"
) -> Figure:
    """Several models' `mean_attention_distance` (L, H) on one axes: per model one colour, a dot per head
    (slightly offset so models do not hide each other) and a line through the mean over heads; `uniform`,
    the distance of attention spread evenly over the grid, as a dashed reference line."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=80)
    offsets = np.linspace(-0.1, 0.1, len(distances)) if len(distances) > 1 else [0.0]
    for (name, distance), offset in zip(distances.items(), offsets, strict=True):
        d = distance.detach().cpu().double().numpy()  # (L, H)
        blocks = np.arange(d.shape[0])
        line = ax.plot(blocks, d.mean(axis=1), marker="o", label=f"{name} (mean of heads)")[0]
        ax.scatter(np.repeat(blocks + offset, d.shape[1]), d.reshape(-1), s=12, color=line.get_color(), alpha=0.5)
    if uniform is not None:
        ax.axhline(uniform, color="gray", linestyle="--", linewidth=1, label="uniform attention")
    ax.set(xlabel="block (0 = first)", ylabel="mean attention distance (pixels)", title=title)
    ax.set_xticks(blocks)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_attention_maps(
    cache: ForwardCache,
    image: torch.Tensor,
    *,
    query: Query = POOLED,
    target: int | None = None,
    alpha: float = 0.6,
    cmap: str = "inferno",
    title: str | None = None,
    dpi: int = 80,
    cell_size: float = 1.3,
) -> Figure:
    """Every map `rollout.attention_map` offers for one image and `query` (POOLED: the token the head
    reads), as one figure; each map min-max scaled on its own, one flat block per token.

    `image` (C, H, W) is the picture to draw under the maps (e.g. the denormalised model input).
    One row per layer; columns: each head, 'mean', 'max', 'rollout' (layers 0..row). The first
    column holds the input (top) and the gradient rollout for class `target` (below it; None: the
    predicted class).
    """
    options = head_options(cache.num_heads)
    heads = [h for h in options if h != "gradient rollout"]
    rows, cols = cache.num_layers, 1 + len(heads)
    height = cell_size * rows + 0.5  # + the title
    fig, axes = plt.subplots(rows, cols, figsize=(cell_size * cols, height), dpi=dpi, squeeze=False)
    rgb = display_image(image).expand(3, -1, -1)  # (3, H, W) in [0, 1]
    for ax in axes.flat:
        ax.set_axis_off()
    show_image(axes[0, 0], rgb)
    axes[0, 0].set_title("input", fontsize="small")
    if "gradient rollout" in options and rows > 1:
        overlay(axes[1, 0], rgb, cache.gradient_rollout(target), alpha, cmap)
        axes[1, 0].set_title("gradient\nrollout", fontsize="small")
    for layer in range(rows):
        for j, head in enumerate(heads, start=1):
            overlay(axes[layer, j], rgb, attention_map(cache, layer, head, query), alpha, cmap)
            if layer == 0:
                axes[0, j].set_title(f"head {head}" if isinstance(head, int) else head, fontsize="small")
        axes[layer, 1].text(-0.15, 0.5, f"block {layer}", transform=axes[layer, 1].transAxes, rotation=90,
                            va="center", ha="right", fontsize="small")  # fmt: skip
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.75 / height, wspace=0.25, hspace=0.4)
    return fig


# One colour per importance method (`vitnb.faithfulness.METHODS`), the same in every figure.
METHOD_COLORS = {
    "raw attention": "tab:blue",
    "rollout": "tab:orange",
    "gradient rollout": "tab:green",
    "gradient x (input - canvas)": "tab:red",
    "integrated gradients": "tab:purple",
    "random": "tab:gray",
}


def plot_deletion_insertion(
    curves_by_method: dict[str, dict[str, torch.Tensor]], x: torch.Tensor, title: str | None = None
) -> Figure:
    """Deletion (left) and insertion (right) curves: per method, the mean over images with a +-1 sem band.

    `curves_by_method` and `x` as `vitnb.faithfulness.faithfulness_curves` returns them:
    {method: {"deletion": (n, S), "insertion": (n, S)}} and the fraction of patches (S,). Each method
    keeps its colour from `METHOD_COLORS` (others take the next unused colours); the legend sits
    to the right of both panels.
    """
    taken = {matplotlib.colors.to_hex(c) for c in METHOD_COLORS.values()}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    spare = iter(c for c in cycle if matplotlib.colors.to_hex(c) not in taken)  # for methods without a colour
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=80, sharey=True)
    xs = x.detach().cpu().numpy()
    for method, curves in curves_by_method.items():
        color = METHOD_COLORS.get(method) or next(spare, "black")
        for ax, kind in zip(axes, ("deletion", "insertion"), strict=True):
            c = curves[kind].detach().cpu().double()  # (n, S)
            mean, sem = c.mean(dim=0).numpy(), (c.std(dim=0) / len(c) ** 0.5).nan_to_num().numpy()
            ax.plot(xs, mean, color=color, label=method if kind == "deletion" else None)
            ax.fill_between(xs, mean - sem, mean + sem, color=color, alpha=0.2, linewidth=0)
    axes[0].set(title="deletion (lower area = more faithful)", xlabel="fraction of patches deleted")
    axes[1].set(title="insertion (higher area = more faithful)", xlabel="fraction of patches inserted")
    axes[0].set_ylabel("probability of the true class")
    for ax in axes:
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
    fig.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- pictures without a figure: the explorer's fast path -------------------------------------------
@functools.cache
def _colour_table(cmap: str) -> np.ndarray:
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
    """`overlay` as a uint8 RGB array (H * scale, W * scale, 3), composed without a matplotlib figure.

    `image` (C, H, W), C = 1 or 3, is scaled by `display_image`; `heat` (h, w), if given, by
    `upsampled_heat` (one flat block per token), then coloured with `cmap` and mixed in with opacity
    `alpha`. Pixels are repeated `scale` times (crisp, no smoothing). `grid` = (h, w) darkens the
    first display pixel row and column of every patch but the first (the patch grid); `box` = (top,
    left, height, width) in image pixels draws a cyan outline (the explorer's query patch). The pixel
    work is numpy's: on small arrays it does not wait for torch's intra-op threads, which a busy
    notebook kernel keeps occupied.
    """
    rgb = display_image(image).expand(3, -1, -1).permute(1, 2, 0).numpy()  # (H, W, 3) in [0, 1]
    if heat is not None and alpha > 0:
        heat = upsampled_heat(heat, rgb.shape[:2]).numpy()  # (H, W) in [0, 1]
        rgb = (1 - alpha) * rgb + alpha * _colour_table(cmap)[(heat * 255 + 0.5).astype(np.intp)]  # (H, W, 3)
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
    rgb = _colour_table(cmap)[(levels * 255 + 0.5).astype(np.intp)]  # (height, 3)
    return np.repeat((rgb[:, None] * 255 + 0.5).astype(np.uint8), width, axis=1)


def to_png(array: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes (fast, light compression)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


# --- experiment figures ------------------------------------------------------------------------------
# Figures of the notebooks' experiments; they draw the rows and summaries that vitnb.experiments returns.
def plot_class_samples(dataset, num_classes: int = 8, per_class: int = 6, title: str = "") -> Figure:
    """A grid: one row per class (the first `num_classes`), `per_class` examples in each."""
    fig, axes = plt.subplots(
        num_classes, per_class, figsize=(per_class * 0.9, num_classes * 0.95), dpi=80, squeeze=False
    )
    for c in range(num_classes):
        idx = (dataset.labels == c).nonzero().flatten()[:per_class]
        for j, ax in enumerate(axes[c]):
            ax.axis("off")
            if j < len(idx):
                ax.imshow(dataset.images[idx[j]].permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=255)
        axes[c, 0].set_title(dataset.classes[c], fontsize=8, loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_reconstructions(rows: dict[str, torch.Tensor], patch_size: int | None = None) -> Figure:
    """A grid with one row per entry of `rows` ({label: images (B, C, H, W)}, e.g. the images, the masked input
    and the reconstructions of `vitnb.mae.MaskedAutoencoder.reconstruct`) and one column per image.

    Every image is drawn on one grey scale, shared by all rows, so that a reconstruction is not stretched to look
    sharper than it is; `patch_size` draws faint patch borders."""
    batches = list(rows.values())
    if len({b.shape for b in batches}) != 1:
        raise ValueError(f"every row needs images of one shape, got {[tuple(b.shape) for b in batches]}")
    low, high = min(b.min() for b in batches).item(), max(b.max() for b in batches).item()
    n = batches[0].shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.2 * n + 1.6, 1.25 * len(rows)), dpi=80, squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c, 0].detach().cpu().float().numpy(), cmap="gray", vmin=low, vmax=high)
            if patch_size:
                size = images.shape[-1]
                for t in range(patch_size, size, patch_size):
                    ax.axhline(t - 0.5, color="tab:blue", lw=0.3, alpha=0.5)
                    ax.axvline(t - 0.5, color="tab:blue", lw=0.3, alpha=0.5)
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize="small")
    fig.subplots_adjust(left=1.5 / (1.2 * n + 1.6), right=0.99, bottom=0.01, top=0.99, wspace=0.05, hspace=0.05)
    return fig


def plot_data_efficiency(
    summary: Sequence[dict],
    colors: dict[str, str] | None = None,
    title: str = "Fashion-MNIST test accuracy vs labelled examples",
    rising: Sequence[tuple[str, int]] = (),
    ax: Axes | None = None,
) -> Figure:
    """Mean test accuracy per method against the % of labels used; bars span the seeds' min to max.

    `summary`: `vitnb.experiments.data_efficiency.summary(rows)` (keys method, labels_per_class, fraction, n,
    mean, min, max). `colors`: {method: colour}, so that a method keeps its colour in every figure.
    `rising`: (method, labels per class) cells still climbing when their budget ended, drawn as open markers.
    `ax`: draw into these axes (e.g. beside `plot_learning_curves`); else a new figure, legend outside.
    """
    colors, rising = colors or {}, set(rising)
    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=80) if ax is None else (ax.figure, ax)
    for name in dict.fromkeys(s["method"] for s in summary):
        mine = sorted((s for s in summary if s["method"] == name), key=lambda s: s["fraction"])
        mean = [100 * s["mean"] for s in mine]
        spread = [[100 * (s["mean"] - s["min"]) for s in mine], [100 * (s["max"] - s["mean"]) for s in mine]]
        x = [100 * s["fraction"] for s in mine]
        bars = ax.errorbar(x, mean, yerr=spread, fmt="-", capsize=3, label=name, color=colors.get(name))
        colour = bars.lines[0].get_color()
        for xi, yi, s in zip(x, mean, mine, strict=True):
            open_marker = (name, s["labels_per_class"]) in rising
            ax.plot(xi, yi, "o", color=colour, mfc="white" if open_marker else colour, zorder=3)
    images = {100 * s["fraction"]: s.get("images") for s in summary}  # training images per run, per budget
    fractions = sorted(images)
    ax.set(xscale="log", xlabel="% of labels (training images per run)", ylabel="test accuracy (%)", title=title)
    ax.set_xticks(fractions, [f"{f:g}%" + (f"\n({images[f]:,})" if images[f] else "") for f in fractions])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    note = "bars: min-max over the seeds" + ("; open marker: still rising" if rising else "")
    ax.text(0.99, 0.02, note, transform=ax.transAxes, ha="right", va="bottom", fontsize="small", color="0.3")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    fig.tight_layout()
    return fig


def plot_learning_curves(
    rows: Sequence[dict], colors: dict[str, str] | None = None, rising: Sequence[tuple[str, int]] = ()
) -> Figure:
    """Test accuracy against training images seen (log axis), one panel per label budget, one line per method.

    `rows`: runs of `vitnb.experiments.data_efficiency.run` with a learning curve ("curve": [(images, accuracy)]);
    the line is the mean over a method's seeds, the band their min to max. Cells in `rising` (method, labels
    per class) are dashed and marked "still rising" in the legend.
    """
    colors, rising = colors or {}, set(rising)
    budgets = sorted({(r["labels_per_class"], r["fraction"]) for r in rows})
    fig, axes = plt.subplots(1, len(budgets), figsize=(3.3 * len(budgets) + 2.2, 3.4), dpi=80, squeeze=False)
    for ax, (k, fraction) in zip(axes[0], budgets, strict=True):
        for name in dict.fromkeys(r["method"] for r in rows):
            runs = [r["curve"] for r in rows if r["method"] == name and r["labels_per_class"] == k]
            if not runs:
                continue
            if len({len(c) for c in runs}) != 1:
                raise ValueError(f"{name} at {k}/class: the seeds' curves have different lengths")
            images = [seen for seen, _ in runs[0]]
            acc = 100 * np.array([[a for _, a in c] for c in runs])  # (seeds, points)
            dashed = (name, k) in rising
            label = f"{name} (still rising)" if dashed else name
            line = ax.plot(
                images, acc.mean(0), "o-" if not dashed else "o--", ms=3, label=label, color=colors.get(name)
            )[0]
            if len(runs) > 1:
                ax.fill_between(images, acc.min(0), acc.max(0), color=line.get_color(), alpha=0.2, lw=0)
        ax.set(xscale="log", title=f"{100 * fraction:.3g}% of the labels ({k}/class)", xlabel="training images seen")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    handles = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
        fontsize="small",
        title="band: min-max over the seeds",
        title_fontsize="small",
    )
    fig.tight_layout()
    return fig


def plot_translation(
    results: dict[str, Sequence[float]], patch_size: int | None = None, colors: dict[str, str] | None = None
) -> Figure:
    """Test accuracy per model against the shift of the test images on a padded canvas
    ({name: [accuracy at shift 0, 1, ...]}); a dotted line marks the shift of one patch, if given."""
    colors = colors or {}
    lengths = {len(accs) for accs in results.values()}
    if len(lengths) != 1:
        raise ValueError(f"every model needs one accuracy per shift, got lengths {sorted(lengths)}")
    shifts = range(lengths.pop())
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=80)
    for name, accs in results.items():
        ax.plot(shifts, [100 * a for a in accs], "o-", label=name, color=colors.get(name))
    ax.set(xlabel="shift of the image on the canvas (pixels right and down)", ylabel="test accuracy (%)")
    ax.set(title="translation robustness", xticks=list(shifts))
    if patch_size is not None:  # labelled under the axis, where no data point can hide the label
        ax.axvline(patch_size, color="grey", ls=":", lw=1)
        ax.set_xticklabels([f"{s}\n(one patch)" if s == patch_size else str(s) for s in shifts])
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    fig.tight_layout()
    return fig


# ablation figures: the baseline in black, the other variants in tab10's colours (grey left out), with markers
_ABLATION_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"]
_ABLATION_COLOURS += ["tab:olive", "tab:cyan"]
_ABLATION_MARKERS = ["s", "^", "D", "v", "P", "X", "<", ">", "*", "h"]
_VERDICT_COLOURS = {"better": "tab:green", "worse": "tab:red", "within": "tab:gray", "baseline": "black"}


def ablation_styles(variants: Sequence[str], baseline: str = "baseline") -> dict[str, dict]:
    """{variant: matplotlib style}: the baseline black with circles, the others a distinct colour and marker each."""
    styles, k = {}, 0
    for v in variants:
        if v == baseline:
            styles[v] = {"color": "black", "marker": "o", "lw": 2.2}
        else:
            n = len(_ABLATION_COLOURS)
            styles[v] = {"color": _ABLATION_COLOURS[k % n], "marker": _ABLATION_MARKERS[k % len(_ABLATION_MARKERS)]}
            styles[v]["ls"] = "-" if k < n else "--"  # beyond nine variants the colours repeat, dashed
            k += 1
    return styles


def plot_ablation(summary: Sequence[dict], title: str | None = None) -> Figure:
    """A dot plot of test accuracy per variant in each regime, and training speed relative to the baseline.

    Accuracy: dot = mean over seeds, bar = min..max over seeds; black = the baseline, whose mean is the dashed
    line and whose seed range is the grey band; green / red = better / worse than the baseline by more than
    both seed ranges, grey = within them. Speed: bars from 0, in multiples of the baseline's images/s.
    `summary`: `vitnb.experiments.ablation.compare(rows, throughput)`.
    """
    regimes = list(dict.fromkeys(s["regime"] for s in summary))
    variants = list(dict.fromkeys(s["variant"] for s in summary))
    by = {(s["variant"], s["regime"]): s for s in summary}
    fig, axes = plt.subplots(
        1,
        len(regimes) + 1,
        figsize=(4.2 * len(regimes) + 3.2, 0.38 * len(variants) + 1.9),
        dpi=80,
        sharey=True,
        width_ratios=[4.2] * len(regimes) + [3.2],
        layout="constrained",
    )
    y = np.arange(len(variants))

    def kind(s: dict) -> str:
        if s["variant"] == "baseline":
            return "baseline"
        return ("better" if s["delta"] > 0 else "worse") if s["beyond_spread"] else "within"

    for ax, regime in zip(axes, regimes, strict=False):
        if (base := by.get(("baseline", regime))) is not None:
            ax.axvspan(100 * base["min"], 100 * base["max"], color="0.9", zorder=0)
            ax.axvline(100 * base["mean"], color="black", ls="--", lw=0.8, zorder=1)
        for i, v in enumerate(variants):
            if (s := by.get((v, regime))) is None:
                continue
            colour = _VERDICT_COLOURS[kind(s)]
            ax.plot([100 * s["min"], 100 * s["max"]], [i, i], color=colour, lw=2, solid_capstyle="butt", zorder=2)
            ax.plot(100 * s["mean"], i, "o", color=colour, ms=7, zorder=3)
        ax.grid(axis="x", color="0.85", lw=0.6)
        ax.set(title=f"test accuracy, {regime}", xlabel="test accuracy (%)")
    handles = [
        matplotlib.lines.Line2D([], [], color=c, marker="o", lw=2, label=label)
        for c, label in [
            ("black", "baseline (band: its seed range)"),
            ("tab:green", "better, beyond both seed ranges"),
            ("tab:gray", "within the seed ranges"),
            ("tab:red", "worse, beyond both seed ranges"),
        ]
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize="small", frameon=False)
    speed = np.array([by[(v, regimes[0])]["speed_rel"] for v in variants], dtype=float)
    axes[-1].barh(y, speed, color=["black" if v == "baseline" else "tab:blue" for v in variants], height=0.6)
    axes[-1].axvline(1.0, color="black", ls="--", lw=0.8)
    axes[-1].set_xlim(0, 1.1 * max(1.0, float(np.nanmax(speed)) if np.isfinite(speed).any() else 1.0))
    axes[-1].set(title="training speed", xlabel="x the baseline's images/s")
    axes[0].set_yticks(y, variants)
    axes[0].invert_yaxis()
    if title:
        fig.suptitle(title)
    return fig


def plot_ablation_curves(
    rows: Sequence[dict], regime: str | None = None, variants: Sequence[str] | None = None
) -> Figure:
    """Learning curves of the ablation's runs: mean test accuracy (curve subset) after every epoch, per variant.

    Each variant has its own colour and marker (`ablation_styles`), the baseline is black; the legend lists the
    variants from the best final accuracy down. `regime`: which regime's runs (default: the first in `rows`).
    """
    regime = regime or next(r["regime"] for r in rows)
    variants = list(variants or dict.fromkeys(r["variant"] for r in rows))
    styles = ablation_styles(variants)
    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=80, layout="constrained")
    final = {}
    for v in variants:
        rs = [r for r in rows if r["variant"] == v and r["regime"] == regime]
        if not rs:
            continue
        acc = [100 * float(np.mean(a)) for a in zip(*(r["curve_acc"] for r in rs), strict=True)]
        ax.plot(rs[0]["curve_steps"], acc, label=v, ms=6, **{"lw": 1.4, **styles[v]})
        final[v] = acc[-1]
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: -final[labels[i]])
    ax.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        fontsize="small",
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        frameon=False,
        title="final accuracy, best first",
        title_fontsize="small",
    )
    ax.grid(color="0.9", lw=0.6)
    ax.set(xlabel="optimiser steps", ylabel="test accuracy % (curve subset)", title=f"learning curves, {regime}")
    return fig
