"""Figures of images: an image, a map over it, a grid of maps over several images, the image cut into patches,
and the similarity of the position embeddings of a patch grid.

Every image is scaled by `render.display_image` and every map upsampled by `render.upsampled_heat` (one flat
block per token), so these figures and the explorer's pictures show an image and a map the same way. The tensor
work (laying patches out with gaps, the similarity grid) lives in plain functions that the tests check.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from einops import rearrange
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from ..errors import UsageError
from .render import display_image, upsampled_heat

__all__ = [
    "patch_mosaic",
    "plot_map_grid",
    "plot_pos_embed_similarity",
    "pos_embed_similarity",
    "show_image",
    "show_map",
    "show_patches",
]


# --- an image and a map over it ------------------------------------------------------------------
def show_image(ax: Axes, image: torch.Tensor) -> None:
    """Draw a (C, H, W) image, C = 1 (grayscale) or 3 (RGB), scaled by `display_image`, without axes."""
    image = display_image(image)
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray")
    else:
        ax.imshow(image.permute(1, 2, 0).numpy())  # (H, W, 3)
    ax.set_axis_off()


def _draw_patch_grid(ax: Axes, grid_size: Sequence[int], size: Sequence[int], color="white", alpha=0.35) -> None:
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
    alpha: float = 0.5,
    cmap: str = "inferno",
    vmin: float | None = None,
    vmax: float | None = None,
    outline: float | None = None,
    grid: bool = False,
) -> AxesImage:
    """Draw the map `heat` (h, w) over `image` (C, H, W), one flat block per token; returns the map's AxesImage.

    The map is drawn raw on the colour scale `vmin` to `vmax` (None: the map's own smallest / largest value,
    so each map fills the scale; give both to share one scale between panels and read it off a colorbar).
    Below opacity `alpha` = 1 the image shows through the map. An opaque map hides the image; `outline`
    then draws it as a white contour at that brightness (of `display_image`'s [0, 1]; None: no contour).
    `grid` draws the patch grid. The pictures of `render.render_overlay` are this figure's, without axes.
    """
    size = image.shape[-2:]
    if alpha < 1:
        show_image(ax, image)
    values = upsampled_heat(heat, size, scale=False).numpy()  # (H, W), raw values
    vmin = float(heat.min()) if vmin is None else vmin
    vmax = float(heat.max()) if vmax is None else vmax
    # opaque: nearest, so a block's colour is its value on the colorbar; translucent: resampled like the image under it
    interpolation = "nearest" if alpha >= 1 else None
    shown = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha, interpolation=interpolation)
    if outline is not None:
        gray = display_image(image).mean(dim=0).numpy()  # (H, W) in [0, 1]
        if gray.min() < outline < gray.max():
            ax.contour(gray, levels=[outline], colors="white", linewidths=0.8)
    if grid:
        _draw_patch_grid(ax, heat.shape[-2:], size)
    ax.set_axis_off()
    return shown


def plot_map_grid(
    images: torch.Tensor | Sequence[torch.Tensor],
    maps_by_title: dict[str, torch.Tensor],
    *,
    colorbar: bool = True,
    label: str = "",
    from_zero: bool = False,
    alpha: float = 1.0,
    cmap: str = "viridis",
    outline: float | None = 0.2,
    grid: bool = True,
    row_titles: Sequence[str] | None = None,
    cell_size: float = 1.6,
    dpi: int = 80,
) -> Figure:
    """One row per image (C, H, W): the image, then each (B, h, w) map of `maps_by_title` over it (`show_map`).

    `colorbar=True`: every column has one colour scale, from the column's smallest value (0 if `from_zero`) to
    its largest, and a colorbar under it labelled `label` (state the unit there), added after the panels: the
    images of one column compare directly, and the bar's ticks tell how far the maps depart from flat, even
    when that is little. `colorbar=False`: each map fills the colour scale on its own (where it peaks, not how
    high). Maps are drawn raw. `alpha`, `cmap`, `outline` and `grid` are `show_map`'s. The first column's
    title is 'image', or each row's entry of `row_titles` (wrapped to the column's width).
    """
    rows, cols = len(images), 1 + len(maps_by_title)
    height = cell_size * rows + (0.9 if colorbar else 0.3)
    fig, axes = plt.subplots(
        rows, cols, figsize=(cell_size * cols, height), dpi=dpi, squeeze=False, layout="constrained"
    )
    for i, image in enumerate(images):
        show_image(axes[i, 0], image)
        if row_titles is not None:  # wrapped to the column's width, so a long title never runs into the next one
            axes[i, 0].set_title(textwrap.fill(row_titles[i], width=int(13 * cell_size)), fontsize="small")
    if row_titles is None:
        axes[0, 0].set_title("image", fontsize="small")
    look = dict(alpha=alpha, cmap=cmap, outline=outline, grid=grid)
    for j, (title, maps) in enumerate(maps_by_title.items(), start=1):
        if colorbar:  # the column's scale
            look.update(vmin=0.0 if from_zero else float(maps[:rows].min()), vmax=float(maps[:rows].max()))
        for i, image in enumerate(images):
            shown = show_map(axes[i, j], image, maps[i], **look)
        axes[0, j].set_title(title, fontsize="small")
        if colorbar:
            _add_colorbar(fig, shown, axes[:, j], label)
    return fig


def _add_colorbar(fig: Figure, shown: AxesImage, column, label: str) -> None:
    """A colorbar under the axes of `column` with three ticks, no offset, and `label` under it."""
    bar = fig.colorbar(shown, ax=column, location="bottom", shrink=0.9, aspect=12, pad=0.02)
    bar.ax.tick_params(labelsize="x-small")
    bar.locator = MaxNLocator(3)
    bar.formatter = ScalarFormatter(useOffset=False)
    bar.update_ticks()
    if label:
        bar.set_label(label, fontsize="x-small")


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
        raise UsageError(f"image size {h}x{w} is not divisible by patch size {ph}x{pw}: choose a patch size that is")
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
                        ha="center", va="center", fontsize="x-small", fontweight="bold",
                        path_effects=[patheffects.withStroke(linewidth=1.2, foreground="black")])  # fmt: skip
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
        raise UsageError(
            f"{pe.shape[0]} patch position embeddings do not fill a {gh}x{gw} grid: "
            "check grid_size and num_prefix_tokens"
        )
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
    ax.set_xticks([j * (gw + 1) + (gw - 1) / 2 for j in range(gw)], [str(j) for j in range(gw)])  # 0-based, as
    ax.set_yticks([i * (gh + 1) + (gh - 1) / 2 for i in range(gh)], [str(i) for i in range(gh)])  # the grid (r, c)
    ax.tick_params(length=0, labelsize="x-small")
    ax.set(xlabel="input patch column", ylabel="input patch row", title=title)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
    return ax.figure
