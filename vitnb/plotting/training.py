"""Figures of training: a run's history, samples of a data set's classes, and images beside their reconstructions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..errors import UsageError

__all__ = ["plot_class_samples", "plot_history", "plot_reconstructions"]


def plot_history(history: Sequence[Mapping], title: str | None = None) -> Figure:
    """Loss, accuracy and learning rate per epoch, side by side.

    `history`: one dict per epoch with epoch, train_loss, train_acc, val_acc (None when not validated) and lr,
    as `vitnb.train.fit` returns it (a `History`).
    """

    def column(key: str) -> list:
        return [r.get(key) for r in history]

    fig, axes = plt.subplots(1, 3, figsize=(11, 3), dpi=80)
    epochs = column("epoch")
    axes[0].plot(epochs, column("train_loss"), "o-", label="train")
    axes[0].set(xlabel="epoch", ylabel="loss", title="training loss")
    axes[1].plot(epochs, column("train_acc"), "o-", label="train")
    if any(v is not None for v in column("val_acc")):
        axes[1].plot(epochs, column("val_acc"), "s-", label="validation")
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    axes[1].legend()
    axes[2].plot(epochs, column("lr"), "o-")
    axes[2].set(xlabel="epoch", ylabel="learning rate (end of epoch)", title="schedule")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_class_samples(dataset, num_classes: int = 8, per_class: int = 6, title: str = "") -> Figure:
    """A grid: one row per class (the first `num_classes`), `per_class` examples in each.

    `dataset` has uint8 `images` (n, C, H, W), `labels` (n,) and class names `classes` (an `ImageTensorDataset`).
    """
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


def plot_reconstructions(
    rows: dict[str, torch.Tensor],
    patch_size: int | None = None,
    hidden: torch.Tensor | None = None,
    hidden_rows: Sequence[str] = (),
    hidden_color: str = "tab:orange",
) -> Figure:
    """A grid with one row per entry of `rows` ({label: images (B, C, H, W)}, e.g. the images, the masked input
    and the reconstructions of `vitnb.mae.MaskedAutoencoder.reconstruct`) and one column per image.

    Every image is drawn on one grey scale, shared by all rows, so that a reconstruction is not stretched to look
    sharper than it is; `patch_size` draws faint patch borders. `hidden` (B, N), 1 where a patch is hidden (the
    mask `MaskedAutoencoder` returns; needs `patch_size`), covers those patches with a hatched tint of
    `hidden_color` in the rows named in `hidden_rows`, and a legend names the colour."""
    batches = list(rows.values())
    if len({b.shape for b in batches}) != 1:
        raise UsageError(f"every row needs images of one shape, got {[tuple(b.shape) for b in batches]}")
    unknown = [label for label in hidden_rows if label not in rows]
    if unknown or (hidden_rows and hidden is None):
        raise UsageError(f"hidden_rows names rows of `rows` and needs `hidden`; got {list(hidden_rows)}")
    n, size = batches[0].shape[0], batches[0].shape[-1]
    if hidden is not None:
        grid = size // patch_size if patch_size else 0
        if not patch_size or tuple(hidden.shape) != (n, grid * grid):
            raise UsageError(
                f"hidden needs patch_size and one flag per patch of each image, shape ({n}, N); "
                f"got {tuple(hidden.shape)} with patch_size={patch_size}"
            )
    low, high = min(b.min() for b in batches).item(), max(b.max() for b in batches).item()
    fig, axes = plt.subplots(len(rows), n, figsize=(1.2 * n + 1.6, 1.25 * len(rows)), dpi=80, squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c, 0].detach().cpu().float().numpy(), cmap="gray", vmin=low, vmax=high)
            if patch_size:
                for t in range(patch_size, size, patch_size):
                    ax.axhline(t - 0.5, color="tab:blue", lw=0.3, alpha=0.5)
                    ax.axvline(t - 0.5, color="tab:blue", lw=0.3, alpha=0.5)
            if label in hidden_rows:
                for k in hidden[c].nonzero().flatten().tolist():  # row-major patch index -> (row, column)
                    corner = ((k % grid) * patch_size - 0.5, (k // grid) * patch_size - 0.5)
                    ax.add_patch(_hidden_patch(corner, patch_size, hidden_color))
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize="small")
    top = 0.99
    if hidden_rows:
        top = 1 - 0.35 / (1.25 * len(rows))  # room for the legend above the grid
        key = _hidden_patch((0, 0), 1, hidden_color, label="hidden patch: the encoder never sees it")
        fig.legend(handles=[key], loc="upper center", fontsize="small", frameon=False)
    fig.subplots_adjust(left=1.5 / (1.2 * n + 1.6), right=0.99, bottom=0.01, top=top, wspace=0.05, hspace=0.05)
    return fig


def _hidden_patch(corner: tuple[float, float], size: float, color: str, label: str | None = None) -> Rectangle:
    """A square that marks a hidden patch: a tint of `color`, hatched, opaque enough to hide the grey under it."""
    return Rectangle(
        corner, size, size, facecolor=to_rgba(color, 0.75), edgecolor=color, hatch="////", lw=0, label=label
    )
