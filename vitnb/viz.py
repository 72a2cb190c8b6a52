"""Looking inside a ViT: attention rollout, gradient rollout, raw attention maps, attention distance.

Everything except `gradient_rollout` and the figures works on plain tensors: a list of L post-softmax
attention tensors, one per block in forward order, each (B, H, N, N), where N = P prefix tokens
(cls, ...) + h * w patch tokens in row-major order. Maps are returned raw; min-max scaling for display
happens only in `overlay`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

HeadFusion = Literal["mean", "max", "min"]


# --- heads and rollout -------------------------------------------------------------------------------
def fuse_heads(attn: torch.Tensor, how: HeadFusion = "mean") -> torch.Tensor:
    """(B, H, N, N) -> (B, N, N): combine the heads entry-wise by their mean, max or min."""
    if how == "mean":
        return attn.mean(dim=1)
    if how == "max":
        return attn.amax(dim=1)
    if how == "min":
        return attn.amin(dim=1)
    raise ValueError(f"head fusion must be 'mean', 'max' or 'min', got {how!r}")


def discard_smallest(fused: torch.Tensor, ratio: float, num_prefix_tokens: int) -> torch.Tensor:
    """Zero the floor(ratio * N^2) smallest entries of each sample's (N, N) matrix; returns a new tensor.

    Row 0 (the cls token's attention) is never zeroed when there is a prefix token, so that the
    rollout keeps the cls row it reads from; the count is capped at the N^2 - N other entries.
    With num_prefix_tokens == 0 there is no cls row and every entry is a candidate.
    Ties are broken arbitrarily.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"discard ratio must be in [0, 1], got {ratio}")
    b, n, _ = fused.shape  # (B, N, N)
    protect_cls = num_prefix_tokens >= 1
    # The epsilon stops float error turning e.g. 0.57 * 10 * 10 = 56.99999999999999 into 56.
    k = min(math.floor(ratio * n * n + 1e-9), n * n - n if protect_cls else n * n)
    ranking = fused.clone()
    if protect_cls:
        ranking[:, 0, :] = float("inf")  # never among the smallest
    smallest = ranking.reshape(b, n * n).topk(k, dim=-1, largest=False).indices  # (B, k)
    return fused.reshape(b, n * n).scatter(1, smallest, 0.0).reshape(b, n, n)


def _add_identity_and_normalise(fused: torch.Tensor) -> torch.Tensor:
    """A -> (A + I) / row sums: the residual connection carries half (or more) of each token forward."""
    a = fused + torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)  # (B, N, N)
    return a / a.sum(dim=-1, keepdim=True)


def _accumulate(fused_layers: Sequence[torch.Tensor]) -> torch.Tensor:
    """R = A_L_hat @ ... @ A_1_hat: each later layer multiplies on the LEFT.  (B, N, N)"""
    rollout = None
    for fused in fused_layers:
        a_hat = _add_identity_and_normalise(fused)
        rollout = a_hat if rollout is None else a_hat @ rollout
    if rollout is None:
        raise ValueError("need at least one attention tensor")
    return rollout


def rollout_matrix(
    attentions: Sequence[torch.Tensor],
    num_prefix_tokens: int,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """Full attention-rollout matrix R (B, N, N) of Abnar & Zuidema (2020); every row sums to 1.

    Per layer: fuse heads, optionally `discard_smallest`, add the identity, normalise rows; then
    R = A_L_hat @ ... @ A_1_hat. R[b, i, j] is how much of input token j reaches output token i.
    """
    fused = [fuse_heads(attn, head_fusion) for attn in attentions]  # L x (B, N, N)
    if discard_ratio > 0:
        fused = [discard_smallest(a, discard_ratio, num_prefix_tokens) for a in fused]
    return _accumulate(fused)


def _require_cls_token(num_prefix_tokens: int) -> None:
    if num_prefix_tokens < 1:
        raise ValueError(
            "rollout reads the cls token's row, but this model has no prefix token (num_prefix_tokens=0); "
            "use rollout_matrix and choose how to combine the patch rows yourself, e.g. their mean"
        )


def _patch_row_to_grid(row: torch.Tensor, num_prefix_tokens: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """(B, N) weights over all tokens -> (B, h, w) weights over the patch tokens."""
    h, w = grid_size
    patches = row[:, num_prefix_tokens:]  # (B, N - P)
    if patches.shape[1] != h * w:
        raise ValueError(f"{patches.shape[1]} patch tokens do not fill a {h}x{w} grid")
    return patches.reshape(-1, h, w)


def attention_rollout(
    attentions: Sequence[torch.Tensor],
    num_prefix_tokens: int,
    grid_size: tuple[int, int],
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """Attention rollout map (B, h, w): row 0 of `rollout_matrix`, patch columns only, not rescaled.

    Needs a cls token (num_prefix_tokens >= 1), otherwise raises ValueError.
    """
    _require_cls_token(num_prefix_tokens)
    rollout = rollout_matrix(attentions, num_prefix_tokens, head_fusion, discard_ratio)  # (B, N, N)
    return _patch_row_to_grid(rollout[:, 0], num_prefix_tokens, grid_size)


def gradient_rollout(
    model: nn.Module,
    x: torch.Tensor,
    target_class: int | torch.Tensor | None = None,
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """Class-specific rollout map (B, h, w): each layer's attention weighted by ITS OWN gradient.

    The chosen logit (default: the predicted class; or an int, or a (B,) tensor of classes) is
    differentiated w.r.t. the attention tensors only, via `torch.autograd.grad`, so no parameter gets
    a `.grad`. Per layer: relu(A * dlogit/dA), mean over heads, then the same rollout as
    `rollout_matrix`. The model runs in eval mode (no dropout) and every submodule gets its mode back.
    """
    _require_cls_token(model.num_prefix_tokens)
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.enable_grad():
            # Differentiating w.r.t. a fresh input keeps the attentions in the graph even if
            # every parameter is frozen; x itself is left untouched.
            logits, attentions = model(x.detach().requires_grad_(), return_attention=True)  # (B, classes)
            if target_class is None:
                target_class = logits.argmax(dim=-1)
            target = torch.as_tensor(target_class, device=logits.device).expand(logits.shape[0])  # (B,)
            score = logits.gather(1, target[:, None]).sum()  # samples are independent: sum = per-sample
            grads = torch.autograd.grad(score, attentions)  # L x (B, H, N, N), grads[i] belongs to layer i
    finally:
        for module, training in modes.items():
            module.train(training)
    # layer i's attention times layer i's gradient, negatives dropped, heads averaged: L x (B, N, N)
    fused = [(a * g).clamp(min=0).mean(dim=1).detach() for a, g in zip(attentions, grads, strict=True)]
    if discard_ratio > 0:
        fused = [discard_smallest(a, discard_ratio, model.num_prefix_tokens) for a in fused]
    rollout = _accumulate(fused)  # (B, N, N)
    return _patch_row_to_grid(rollout[:, 0], model.num_prefix_tokens, tuple(model.patch_embed.grid_size))


# --- raw attention -----------------------------------------------------------------------------------
def cls_attention(
    attentions: Sequence[torch.Tensor],
    layer: int,
    head: int | HeadFusion,
    num_prefix_tokens: int,
    grid_size: tuple[int, int],
    query: int = 0,
) -> torch.Tensor:
    """(B, h, w): attention from token `query` (default 0, the cls token) to the patch tokens.

    `layer` indexes `attentions` (negative counts from the end); `head` is a head index or a fusion.
    """
    attn = attentions[layer]  # (B, H, N, N)
    weights = attn[:, head] if isinstance(head, int) else fuse_heads(attn, head)  # (B, N, N)
    return _patch_row_to_grid(weights[:, query], num_prefix_tokens, grid_size)


def mean_attention_distance(
    attentions: Sequence[torch.Tensor],
    grid_size: tuple[int, int],
    num_prefix_tokens: int,
    patch_size: int = 1,
) -> torch.Tensor:
    """(L, H): attention-weighted mean query-key distance in pixels, per layer and head (ViT Fig. 7).

    Only patch-to-patch weights are used: prefix rows and columns are dropped and each remaining row
    is renormalised to sum to 1, i.e. it is the distance of the attention that stays among patches.
    The distance between patches is Euclidean on the grid times `patch_size`; the result is averaged
    over query patches and the batch.
    """
    h, w = grid_size
    p = num_prefix_tokens
    coords = torch.cartesian_prod(torch.arange(h), torch.arange(w)).double()  # (h*w, 2), row-major
    distance = torch.cdist(coords, coords) * patch_size  # (h*w, h*w)
    per_layer = []
    for attn in attentions:
        patch_attn = attn[:, :, p:, p:].double()  # (B, H, h*w, h*w)
        patch_attn = patch_attn / patch_attn.sum(dim=-1, keepdim=True)
        per_query = (patch_attn * distance.to(attn.device)).sum(dim=-1)  # (B, H, h*w)
        per_layer.append(per_query.mean(dim=(0, 2)))  # (H,)
    return torch.stack(per_layer).to(attentions[0].dtype)  # (L, H)


# --- figures -----------------------------------------------------------------------------------------
def _min_max(t: torch.Tensor) -> torch.Tensor:
    """Scale to [0, 1] for display; a constant map becomes all zeros."""
    span = t.max() - t.min()
    return (t - t.min()) / span if span > 0 else torch.zeros_like(t)


def show_image(ax: Axes, image: torch.Tensor) -> None:
    """Draw a (C, H, W) image, C = 1 (grayscale) or 3 (RGB), min-max scaled, without axes."""
    image = _min_max(image.detach().cpu().float())
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray")
    else:
        ax.imshow(image.permute(1, 2, 0).numpy())  # (H, W, 3)
    ax.set_axis_off()


def overlay(ax: Axes, image: torch.Tensor, heat: torch.Tensor, alpha: float = 0.5, cmap: str = "inferno") -> Figure:
    """Draw `heat` (h, w), bilinearly upsampled to the image, over `image` (C, H, W) with C = 1 or 3.

    Both are min-max scaled here, each on its own, so normalised inputs and raw maps display as-is.
    """
    show_image(ax, image)
    heat = heat.detach().cpu().float()[None, None]  # (1, 1, h, w)
    heat = F.interpolate(heat, size=image.shape[-2:], mode="bilinear", align_corners=False)  # (1, 1, H, W)
    ax.imshow(_min_max(heat[0, 0]).numpy(), cmap=cmap, alpha=alpha)
    return ax.figure


def plot_mean_attention_distance(
    distance: torch.Tensor, ax: Axes | None = None, title: str = "Mean attention distance"
) -> Figure:
    """Scatter of `mean_attention_distance` output (L, H): one dot per head at each layer (1-based)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    distance = distance.detach().cpu().numpy()
    layers = range(1, distance.shape[0] + 1)
    for head in range(distance.shape[1]):
        ax.scatter(layers, distance[:, head], s=15, label=f"head {head}")
    ax.set(xlabel="layer (network depth)", ylabel="mean attention distance (pixels)", title=title)
    ax.set_xticks(layers)
    ax.legend(fontsize="x-small", ncol=2)
    return ax.figure


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
