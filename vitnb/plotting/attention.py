"""Figures of attention: the weights as token-by-token heatmaps, every map the explorer offers for one image,
mean attention distance per block and head, and the deletion and insertion curves that test the maps.

The maps come from `vitnb.maps` (over a `ForwardCache`) and the curves from `vitnb.faithfulness`; each
map is drawn by `images.show_map`, one flat block per token.
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..errors import UsageError
from ..maps import ForwardCache, attention_map, head_options
from ..rollout import POOLED, Query
from .images import show_image, show_map
from .render import display_image

__all__ = [
    "METHOD_COLORS",
    "plot_attention_distance_by_depth",
    "plot_attention_heatmap",
    "plot_attention_maps",
    "plot_deletion_insertion",
    "plot_mean_attention_distance",
]


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
        raise UsageError(f"expected attention weights (N, N) or (H, N, N), got {tuple(weights.shape)}")
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
    """Every map `maps.attention_map` offers for one image and `query` (POOLED: the token the head
    reads), as one figure; each map min-max scaled on its own, one flat block per token.

    `image` (C, H, W) is the picture to draw under the maps (e.g. the denormalised model input).
    One row per block; columns: each head, 'mean', 'max', 'rollout' (blocks 0..row). The first
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
        show_map(axes[1, 0], rgb, cache.gradient_rollout(target), alpha=alpha, cmap=cmap)
        axes[1, 0].set_title("gradient\nrollout", fontsize="small")
    for block in range(rows):
        for j, head in enumerate(heads, start=1):
            show_map(axes[block, j], rgb, attention_map(cache, block, head, query), alpha=alpha, cmap=cmap)
            if block == 0:
                axes[0, j].set_title(f"head {head}" if isinstance(head, int) else head, fontsize="small")
        axes[block, 1].text(-0.15, 0.5, f"block {block}", transform=axes[block, 1].transAxes, rotation=90,
                            va="center", ha="right", fontsize="small")  # fmt: skip
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.75 / height, wspace=0.25, hspace=0.4)
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


# One colour per importance method (`vitnb.importance.METHODS`), the same in every figure.
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
        for ax, curve in zip(axes, ("deletion", "insertion"), strict=True):
            c = curves[curve].detach().cpu().double()  # (n, S)
            mean, sem = c.mean(dim=0).numpy(), (c.std(dim=0) / len(c) ** 0.5).nan_to_num().numpy()
            ax.plot(xs, mean, color=color, label=method if curve == "deletion" else None)
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
