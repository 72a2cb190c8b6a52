"""Attention maths for looking inside a ViT: rollout, gradient rollout, raw attention maps, attention distance.

The functions work on plain tensors: a list of L post-softmax attention tensors, one per block in forward
order (block 0, the first, ... block L-1, as `model.blocks` indexes them), each (B, H, N, N), where
N = P prefix tokens (cls, ...) + h * w patch tokens in row-major order.
Where the token layout matters, a `TokenLayout` says what the N tokens are and which one the head reads;
`TokenLayout.of(model)` reads it off a `VisionTransformer`:

    logits, attentions = model(x, return_attention=True)
    maps = attention_rollout(attentions, TokenLayout.of(model))  # (B, h, w)

A map "for the decision" reads the row of the token the head reads (`TokenLayout.readout`): the cls token's
row when the model pools its cls token (`global_pool='token'`), the mean of the patch tokens' rows when it
averages the patch tokens (`global_pool='avg'`): the head reads the mean patch token, so what reaches it from
input token j is the mean over the patch rows of column j.

Maps are returned raw, never rescaled; figures min-max scale them for display (`vitnb.plotting`).
`vitnb.maps` serves the attention explorer: one forward pass per image, then any map of any block, head or
query token. How far each map can be trusted (deletion and insertion curves) is measured in
`vitnb.faithfulness`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .errors import UsageError
from .runtime import eval_mode

__all__ = [
    "POOLED",
    "HeadFusion",
    "Pool",
    "Query",
    "TokenLayout",
    "attention_rollout",
    "discard_smallest",
    "fuse_heads",
    "gradient_rollout",
    "gradient_rollout_matrix",
    "mean_attention_distance",
    "raw_attention",
    "relevance",
    "rollout_matrix",
]

HeadFusion = Literal["mean", "max", "min"]
Pool = Literal["token", "avg"]  # the token the head reads: the cls token, or the mean of the patch tokens
POOLED = "pooled"  # the query of the token the head reads (`TokenLayout.readout`), beside the token indices
Query = int | Literal["pooled"]


# --- token layout --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenLayout:
    """What a ViT's N tokens are: `num_prefix_tokens` (P: cls, ...) then a `grid_size` (h, w) grid of patch
    tokens in row-major order; and `global_pool`, the token the head reads: 'token' (the cls token) or 'avg'
    (the mean of the patch tokens). None means 'token' when there is a prefix token, else 'avg'.
    """

    num_prefix_tokens: int
    grid_size: tuple[int, int]
    global_pool: Pool | None = None

    def __post_init__(self) -> None:
        pool = self.global_pool or ("token" if self.num_prefix_tokens >= 1 else "avg")
        if pool not in ("token", "avg"):
            raise UsageError(f"global_pool must be 'token', 'avg' or None, got {self.global_pool!r}")
        if pool == "token" and self.num_prefix_tokens < 1:
            raise UsageError(
                "global_pool='token' reads the cls token's row, but there is no prefix token (num_prefix_tokens=0); "
                "a model without one averages its patch tokens: global_pool='avg'"
            )
        object.__setattr__(self, "grid_size", tuple(self.grid_size))
        object.__setattr__(self, "global_pool", pool)

    @classmethod
    def of(cls, model: nn.Module) -> TokenLayout:
        """The layout of a `VisionTransformer`: its prefix tokens, patch grid and `cfg.global_pool`."""
        return cls(model.num_prefix_tokens, tuple(model.patch_embed.grid_size), model.cfg.global_pool)

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def num_tokens(self) -> int:
        return self.num_prefix_tokens + self.num_patches

    def to_grid(self, row: torch.Tensor) -> torch.Tensor:
        """(B, N) weights over all tokens -> (B, h, w) weights over the patch tokens."""
        h, w = self.grid_size
        patches = row[:, self.num_prefix_tokens :]  # (B, N - P)
        if patches.shape[1] != h * w:
            raise UsageError(
                f"{patches.shape[1]} patch tokens (N={row.shape[1]} minus num_prefix_tokens={self.num_prefix_tokens}) "
                f"do not fill a {h}x{w} grid; pass the model's layout: TokenLayout.of(model)"
            )
        return patches.reshape(-1, h, w)

    def readout(self, matrix: torch.Tensor) -> torch.Tensor:
        """(B, N, N) token-to-token weights -> (B, h, w): the row of the token the head reads, patch columns only.

        'token': row 0, the cls token's. 'avg': the mean of the patch tokens' rows (the head reads the mean
        patch token, and a mean of rows is the row of the mean).
        """
        if self.global_pool == "avg":
            row = matrix[:, self.num_prefix_tokens :].mean(dim=1)  # (B, N)
        else:
            row = matrix[:, 0]  # (B, N)
        return self.to_grid(row)

    def token_patch(self, query: Query) -> tuple[int, int] | None:
        """(row, col) on the patch grid of token `query`; None for a prefix token or POOLED."""
        if query == POOLED or query < self.num_prefix_tokens:
            return None
        return divmod(query - self.num_prefix_tokens, self.grid_size[1])

    def describe_token(self, query: Query) -> str:
        """'cls' for token 0 of a model with a cls token, 'prefix i' for other prefix tokens, 'patch (row, col)'
        for a patch; for POOLED what the head reads: 'cls' or 'mean of patches'."""
        if query == POOLED:
            return "cls" if self.global_pool == "token" else "mean of patches"
        patch = self.token_patch(query)
        if patch is None:
            return "cls" if query == 0 else f"prefix {query}"
        return f"patch {patch}"

    def check_tokens(self, attentions: Sequence[torch.Tensor]) -> None:
        """Raise unless the attentions' N tokens are this layout's prefix tokens and grid."""
        n = attentions[0].shape[-1]
        if n != self.num_tokens:
            h, w = self.grid_size
            raise UsageError(
                f"N={n} tokens are not num_prefix_tokens={self.num_prefix_tokens} + a {h}x{w} grid; "
                "pass the model's layout: TokenLayout.of(model)"
            )


# --- heads and rollout ---------------------------------------------------------------------------------
def fuse_heads(attn: torch.Tensor, how: HeadFusion = "mean") -> torch.Tensor:
    """(B, H, N, N) -> (B, N, N): combine the heads entry-wise by their mean, max or min."""
    if how == "mean":
        return attn.mean(dim=1)
    if how == "max":
        return attn.amax(dim=1)
    if how == "min":
        return attn.amin(dim=1)
    raise UsageError(f"head fusion must be 'mean', 'max' or 'min', got {how!r}")


def discard_smallest(fused: torch.Tensor, ratio: float, *, keep_cls_row: bool) -> torch.Tensor:
    """Zero the floor(ratio * N^2) smallest entries of each sample's (N, N) matrix; returns a new tensor.

    With `keep_cls_row` (a model with a prefix token), row 0 (the cls token's attention) is never zeroed, and
    the count is capped at the N^2 - N other entries; without, every entry is a candidate.
    Ties are broken arbitrarily.
    """
    if not 0.0 <= ratio <= 1.0:
        raise UsageError(f"discard ratio must be in [0, 1], got {ratio}")
    b, n, _ = fused.shape  # (B, N, N)
    # The epsilon stops float error turning e.g. 0.57 * 10 * 10 = 56.99999999999999 into 56.
    k = min(math.floor(ratio * n * n + 1e-9), n * n - n if keep_cls_row else n * n)
    ranking = fused.clone()
    if keep_cls_row:
        ranking[:, 0, :] = float("inf")  # never among the smallest
    smallest = ranking.reshape(b, n * n).topk(k, dim=-1, largest=False).indices  # (B, k)
    return fused.reshape(b, n * n).scatter(1, smallest, 0.0).reshape(b, n, n)


def _discard(fused: list[torch.Tensor], ratio: float, layout: TokenLayout) -> list[torch.Tensor]:
    """`discard_smallest` on every block when `ratio` > 0, keeping the cls row when there is a prefix token."""
    if ratio <= 0:
        return fused
    return [discard_smallest(a, ratio, keep_cls_row=layout.num_prefix_tokens >= 1) for a in fused]


def _add_identity_and_normalise(fused: torch.Tensor) -> torch.Tensor:
    """A -> (A + I) / row sums: the residual connection carries half (or more) of each token forward."""
    a = fused + torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)  # (B, N, N)
    return a / a.sum(dim=-1, keepdim=True)


def _accumulate(fused_layers: Sequence[torch.Tensor]) -> torch.Tensor:
    """R = A_{L-1}_hat @ ... @ A_0_hat (blocks 0..L-1): each later block multiplies on the LEFT.  (B, N, N)"""
    rollout = None
    for fused in fused_layers:
        a_hat = _add_identity_and_normalise(fused)
        rollout = a_hat if rollout is None else a_hat @ rollout
    if rollout is None:
        raise UsageError("need at least one attention tensor")
    return rollout


def rollout_matrix(
    attentions: Sequence[torch.Tensor],
    layout: TokenLayout,
    *,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """Full attention-rollout matrix R (B, N, N) of Abnar & Zuidema (2020); every row sums to 1.

    Per block: fuse heads, optionally `discard_smallest` (never in the cls row), add the identity, normalise
    rows; then R = A_{L-1}_hat @ ... @ A_0_hat. R[b, i, j] is how much of input token j reaches output token i.
    """
    if attentions:
        layout.check_tokens(attentions)
    fused = [fuse_heads(attn, head_fusion) for attn in attentions]  # L x (B, N, N)
    return _accumulate(_discard(fused, discard_ratio, layout))


def attention_rollout(
    attentions: Sequence[torch.Tensor],
    layout: TokenLayout,
    *,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """Attention rollout map (B, h, w): the row of `rollout_matrix` that the head reads (`layout.readout`),
    patch columns only, not rescaled."""
    rollout = rollout_matrix(attentions, layout, head_fusion=head_fusion, discard_ratio=discard_ratio)  # (B, N, N)
    return layout.readout(rollout)


def relevance(attn: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """One block's weights for gradient rollout: (B, H, N, N) attention and its gradient -> (B, N, N).

    The positive part of A * dlogit/dA (the mixing that raises the logit), heads averaged, divided by the
    mean over the N tokens of the row sums of |A * dlogit/dA| (heads averaged), one number per image.

    Why the division: A * dlogit/dA is measured in units of the logit, so its size depends on how large the
    logits are, not on how much the block mixes, and next to the identity that rollout adds for the residual
    stream it is typically tiny: the rolled-out map would stay at the identity's uniform floor. Divided by
    the block's total relevance, a block whose relevance is all positive has rows that sum to 1 on average,
    as an attention matrix does, and the residual keeps the share it has in `rollout_matrix`; a block that
    mostly argues against the class keeps small weights, and a block without relevance (all 0) stays 0, so
    only the identity passes. The result is unchanged when the logit is multiplied by a positive constant.
    """
    product = attn * grad  # (B, H, N, N)
    total = product.abs().mean(dim=1).sum(dim=-1).mean(dim=-1)  # (B,): mean row sum of |A * dA|
    positive = product.clamp(min=0).mean(dim=1)  # (B, N, N)
    return positive / total.clamp(min=torch.finfo(total.dtype).tiny)[:, None, None]


def gradient_rollout_matrix(
    model: nn.Module,
    x: torch.Tensor,
    target_class: int | torch.Tensor | None = None,
    *,
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """Class-specific rollout matrix (B, N, N) of `model` on images `x`: each block's attention weighted by
    ITS OWN gradient, then rolled out like `rollout_matrix`; every row sums to 1.

    The chosen logit (default: the predicted class; or an int, or a (B,) tensor of classes) is
    differentiated w.r.t. the attention tensors only, via `torch.autograd.grad`, so no parameter gets
    a `.grad`. Per block (`relevance`): the positive part of A * dlogit/dA, heads averaged, divided by the
    block's total |A * dlogit/dA| per token (so the weights do not depend on the logit's scale), optionally
    `discard_smallest`; then A -> (A + I) / row sums and R = A_{L-1}_hat @ ... @ A_0_hat. The model runs in eval
    mode (no dropout) and every submodule gets its mode back.
    """
    with eval_mode(model), torch.enable_grad():
        # Differentiating w.r.t. a fresh input keeps the attentions in the graph even if
        # every parameter is frozen; x itself is left untouched.
        logits, attentions = model(x.detach().requires_grad_(), return_attention=True)  # (B, classes)
        if target_class is None:
            target_class = logits.argmax(dim=-1)
        target = torch.as_tensor(target_class, device=logits.device).expand(logits.shape[0])  # (B,)
        score = logits.gather(1, target[:, None]).sum()  # samples are independent: sum = per-sample
        grads = torch.autograd.grad(score, attentions)  # L x (B, H, N, N), grads[i] belongs to block i
    fused = [relevance(a.detach(), g) for a, g in zip(attentions, grads, strict=True)]  # L x (B, N, N)
    return _accumulate(_discard(fused, discard_ratio, TokenLayout.of(model)))


def gradient_rollout(
    model: nn.Module,
    x: torch.Tensor,
    target_class: int | torch.Tensor | None = None,
    *,
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """Class-specific rollout map (B, h, w) of `model` on images `x`: the row of `gradient_rollout_matrix`
    that the head reads (the cls token's row, or the mean of the patch rows for an average-pooled model),
    patch columns only. The token layout is read from the model (`TokenLayout.of`).
    """
    matrix = gradient_rollout_matrix(model, x, target_class, discard_ratio=discard_ratio)  # (B, N, N)
    return TokenLayout.of(model).readout(matrix)


# --- raw attention -------------------------------------------------------------------------------------
def raw_attention(
    attentions: Sequence[torch.Tensor],
    layer: int,
    head: int | HeadFusion,
    layout: TokenLayout,
    *,
    query: Query = POOLED,
) -> torch.Tensor:
    """(B, h, w): one block's attention over the patch tokens, in the row of token `query`.

    `layer` indexes `attentions`, i.e. the blocks (0 = first; negative counts from the end); `head` is a head
    index or a fusion of the heads. query=POOLED (default) reads the token the head reads (`layout.readout`):
    for 'avg' the mean of the patch rows, i.e. the attention each patch receives on average; an int is a token
    index (0: the cls token, when there is one).
    """
    attn = attentions[layer]  # (B, H, N, N)
    weights = attn[:, head] if isinstance(head, int) else fuse_heads(attn, head)  # (B, N, N)
    if query == POOLED:
        return layout.readout(weights)
    return layout.to_grid(weights[:, query])


def mean_attention_distance(
    attentions: Sequence[torch.Tensor], layout: TokenLayout, *, patch_size: int = 1
) -> torch.Tensor:
    """(L, H): attention-weighted mean query-key distance in pixels, per block and head (ViT Fig. 7).

    Only patch-to-patch weights are used: prefix rows and columns are dropped and each remaining row
    is renormalised to sum to 1, i.e. it is the distance of the attention that stays among patches.
    The distance between patches is Euclidean on the grid times `patch_size` (1: in patches); the
    result is averaged over query patches and the batch.
    """
    layout.check_tokens(attentions)
    h, w = layout.grid_size
    p = layout.num_prefix_tokens
    coords = torch.cartesian_prod(torch.arange(h), torch.arange(w)).double()  # (h*w, 2), row-major
    distance = torch.cdist(coords, coords) * patch_size  # (h*w, h*w)
    per_layer = []
    for attn in attentions:
        patch_attn = attn[:, :, p:, p:].double()  # (B, H, h*w, h*w)
        patch_attn = patch_attn / patch_attn.sum(dim=-1, keepdim=True)
        per_query = (patch_attn * distance.to(attn.device)).sum(dim=-1)  # (B, H, h*w)
        per_layer.append(per_query.mean(dim=(0, 2)))  # (H,)
    return torch.stack(per_layer).to(attentions[0].dtype)  # (L, H)
