"""Attention maths for looking inside a ViT: rollout, gradient rollout, raw attention maps, attention distance.

The functions work on plain tensors: a list of L post-softmax attention tensors, one per block in forward
order, each (B, H, N, N), where N = P prefix tokens (cls, ...) + h * w patch tokens in row-major order.
Where the token layout matters, `num_prefix_tokens` (P) and `grid_size` ((h, w)) are keyword-only; for a
`VisionTransformer`, `token_layout(model)` supplies both:

    logits, attentions = model(x, return_attention=True)
    maps = attention_rollout(attentions, **token_layout(model), global_pool=pooling(model))  # (B, h, w)

A map "for the decision" reads the row of the token the head reads (`readout`): the cls token's row when
the model pools its cls token (`global_pool='token'`), the mean of the patch tokens' rows when it averages
the patch tokens (`global_pool='avg'`): the head reads the mean patch token, so what reaches it from input
token j is the mean over the patch rows of column j. `pooling(model)` says which.

Maps are returned raw, never rescaled; figures min-max scale them for display (`vitnb.plotting`).
`ForwardCache` and `attention_map` serve the attention explorer (`vitnb.widgets`): one forward pass per
image, then any map of any layer, head or query token without running the model again.
How far each map can be trusted (deletion and insertion curves) is measured in `vitnb.faithfulness`.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from .runtime import eval_mode

HeadFusion = Literal["mean", "max", "min"]
Head = int | Literal["mean", "max", "rollout", "gradient rollout"]  # what `attention_map` shows
Pool = Literal["token", "avg"]  # the token the head reads: the cls token, or the mean of the patch tokens
POOLED = "pooled"  # the query of the token the head reads (`readout`), beside the token indices
Query = int | Literal["pooled"]


# --- token layout --------------------------------------------------------------------------------------
def token_layout(model: nn.Module) -> dict:
    """`{"num_prefix_tokens": P, "grid_size": (h, w)}` of a ViT, to pass as `**token_layout(model)`."""
    return {"num_prefix_tokens": model.num_prefix_tokens, "grid_size": tuple(model.patch_embed.grid_size)}


def _patch_row_to_grid(row: torch.Tensor, *, num_prefix_tokens: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """(B, N) weights over all tokens -> (B, h, w) weights over the patch tokens."""
    h, w = grid_size
    patches = row[:, num_prefix_tokens:]  # (B, N - P)
    if patches.shape[1] != h * w:
        raise ValueError(
            f"{patches.shape[1]} patch tokens (N={row.shape[1]} minus num_prefix_tokens={num_prefix_tokens}) "
            f"do not fill a {h}x{w} grid; pass the model's layout: **token_layout(model)"
        )
    return patches.reshape(-1, h, w)


def pooling(model: nn.Module) -> Pool:
    """What the head of `model` reads: 'token' (the cls token) or 'avg' (the mean of the patch tokens).

    `model.cfg.global_pool` when the model has one; otherwise 'token' when it has a prefix token, else 'avg'.
    """
    pool = getattr(getattr(model, "cfg", None), "global_pool", None)
    if pool is None:
        pool = "token" if model.num_prefix_tokens >= 1 else "avg"
    if pool not in ("token", "avg"):
        raise ValueError(f"maps read the cls token ('token') or the mean patch token ('avg'), not {pool!r}")
    return pool


def _default_pool(global_pool: Pool | None, num_prefix_tokens: int) -> Pool:
    """`global_pool`, or when None: 'token' if there is a prefix token, else 'avg'. 'token' needs a prefix token."""
    pool = global_pool or ("token" if num_prefix_tokens >= 1 else "avg")
    if pool not in ("token", "avg"):
        raise ValueError(f"global_pool must be 'token', 'avg' or None, got {global_pool!r}")
    if pool == "token" and num_prefix_tokens < 1:
        raise ValueError(
            "global_pool='token' reads the cls token's row, but there is no prefix token (num_prefix_tokens=0); "
            "a model without one averages its patch tokens: global_pool='avg'"
        )
    return pool


def readout(
    matrix: torch.Tensor, *, num_prefix_tokens: int, grid_size: tuple[int, int], global_pool: Pool | None = None
) -> torch.Tensor:
    """(B, N, N) token-to-token weights -> (B, h, w): the row of the token the head reads, patch columns only.

    global_pool='token': row 0, the cls token's. 'avg': the mean of the patch tokens' rows (the head reads
    the mean patch token, and a mean of rows is the row of the mean). None: 'token' if there is a prefix
    token, else 'avg'; pass `pooling(model)` for a model that has a cls token but averages its patches.
    """
    pool = _default_pool(global_pool, num_prefix_tokens)
    row = matrix[:, num_prefix_tokens:].mean(dim=1) if pool == "avg" else matrix[:, 0]  # (B, N)
    return _patch_row_to_grid(row, num_prefix_tokens=num_prefix_tokens, grid_size=grid_size)


# --- heads and rollout ---------------------------------------------------------------------------------
def fuse_heads(attn: torch.Tensor, how: HeadFusion = "mean") -> torch.Tensor:
    """(B, H, N, N) -> (B, N, N): combine the heads entry-wise by their mean, max or min."""
    if how == "mean":
        return attn.mean(dim=1)
    if how == "max":
        return attn.amax(dim=1)
    if how == "min":
        return attn.amin(dim=1)
    raise ValueError(f"head fusion must be 'mean', 'max' or 'min', got {how!r}")


def discard_smallest(fused: torch.Tensor, ratio: float, *, num_prefix_tokens: int) -> torch.Tensor:
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
    *,
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
        fused = [discard_smallest(a, discard_ratio, num_prefix_tokens=num_prefix_tokens) for a in fused]
    return _accumulate(fused)


def attention_rollout(
    attentions: Sequence[torch.Tensor],
    *,
    num_prefix_tokens: int,
    grid_size: tuple[int, int],
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    global_pool: Pool | None = None,
) -> torch.Tensor:
    """Attention rollout map (B, h, w): the `readout` row of `rollout_matrix`, patch columns only, not rescaled.

    global_pool='token' reads row 0 (the cls token), 'avg' the mean of the patch rows; None: 'token' when
    there is a prefix token, else 'avg' (pass `pooling(model)` for a cls-token model that averages patches).
    """
    rollout = rollout_matrix(
        attentions, num_prefix_tokens=num_prefix_tokens, head_fusion=head_fusion, discard_ratio=discard_ratio
    )  # (B, N, N)
    return readout(rollout, num_prefix_tokens=num_prefix_tokens, grid_size=grid_size, global_pool=global_pool)


def relevance(attn: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """One layer's weights for gradient rollout: (B, H, N, N) attention and its gradient -> (B, N, N).

    The positive part of A * dlogit/dA (the mixing that raises the logit), heads averaged, divided by the
    mean over the N tokens of the row sums of |A * dlogit/dA| (heads averaged), one number per image.

    Why the division: A * dlogit/dA is measured in units of the logit, so its size depends on how large the
    logits are, not on how much the layer mixes, and next to the identity that rollout adds for the residual
    stream it is typically tiny: the rolled-out map would stay at the identity's uniform floor. Divided by
    the layer's total relevance, a layer whose relevance is all positive has rows that sum to 1 on average,
    as an attention matrix does, and the residual keeps the share it has in `rollout_matrix`; a layer that
    mostly argues against the class keeps small weights, and a layer without relevance (all 0) stays 0, so
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
    """Class-specific rollout matrix (B, N, N) of `model` on images `x`: each layer's attention weighted by
    ITS OWN gradient, then rolled out like `rollout_matrix`; every row sums to 1.

    The chosen logit (default: the predicted class; or an int, or a (B,) tensor of classes) is
    differentiated w.r.t. the attention tensors only, via `torch.autograd.grad`, so no parameter gets
    a `.grad`. Per layer (`relevance`): the positive part of A * dlogit/dA, heads averaged, divided by the
    layer's total |A * dlogit/dA| per token (so the weights do not depend on the logit's scale), optionally
    `discard_smallest`; then A -> (A + I) / row sums and R = A_L_hat @ ... @ A_1_hat. The model runs in eval
    mode (no dropout) and every submodule gets its mode back.
    """
    num_prefix_tokens = token_layout(model)["num_prefix_tokens"]
    with eval_mode(model), torch.enable_grad():
        # Differentiating w.r.t. a fresh input keeps the attentions in the graph even if
        # every parameter is frozen; x itself is left untouched.
        logits, attentions = model(x.detach().requires_grad_(), return_attention=True)  # (B, classes)
        if target_class is None:
            target_class = logits.argmax(dim=-1)
        target = torch.as_tensor(target_class, device=logits.device).expand(logits.shape[0])  # (B,)
        score = logits.gather(1, target[:, None]).sum()  # samples are independent: sum = per-sample
        grads = torch.autograd.grad(score, attentions)  # L x (B, H, N, N), grads[i] belongs to layer i
    fused = [relevance(a.detach(), g) for a, g in zip(attentions, grads, strict=True)]  # L x (B, N, N)
    if discard_ratio > 0:
        fused = [discard_smallest(a, discard_ratio, num_prefix_tokens=num_prefix_tokens) for a in fused]
    return _accumulate(fused)


def gradient_rollout(
    model: nn.Module,
    x: torch.Tensor,
    target_class: int | torch.Tensor | None = None,
    *,
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """Class-specific rollout map (B, h, w) of `model` on images `x`: the `readout` row of
    `gradient_rollout_matrix` (the cls token's row, or the mean of the patch rows for an average-pooled
    model: `pooling(model)`), patch columns only. The token layout is read from the model (`token_layout`).
    """
    matrix = gradient_rollout_matrix(model, x, target_class, discard_ratio=discard_ratio)  # (B, N, N)
    return readout_row(matrix, model)


def readout_row(matrix: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """(B, N, N) token-to-token weights -> (B, h, w): the row of the token `model`'s head reads, patch columns only.

    The cls token's row for cls pooling; the mean of the patch tokens' rows for average pooling (`readout` with
    the model's `token_layout` and `pooling`).
    """
    return readout(matrix, **token_layout(model), global_pool=pooling(model))


# --- raw attention -------------------------------------------------------------------------------------
def _layer_weights(attentions: Sequence[torch.Tensor], layer: int, head: int | HeadFusion) -> torch.Tensor:
    """(B, N, N): block `layer`'s attention (negative counts from the end), one head or the heads fused."""
    attn = attentions[layer]  # (B, H, N, N)
    return attn[:, head] if isinstance(head, int) else fuse_heads(attn, head)


def cls_attention(
    attentions: Sequence[torch.Tensor],
    layer: int,
    head: int | HeadFusion,
    *,
    num_prefix_tokens: int,
    grid_size: tuple[int, int],
    query: int = 0,
) -> torch.Tensor:
    """(B, h, w): attention from token `query` (default 0, the cls token) to the patch tokens.

    `layer` indexes `attentions` (negative counts from the end); `head` is a head index or a fusion.
    """
    weights = _layer_weights(attentions, layer, head)  # (B, N, N)
    return _patch_row_to_grid(weights[:, query], num_prefix_tokens=num_prefix_tokens, grid_size=grid_size)


def raw_attention(
    attentions: Sequence[torch.Tensor],
    layer: int,
    head: int | HeadFusion,
    *,
    num_prefix_tokens: int,
    grid_size: tuple[int, int],
    query: Query = POOLED,
    global_pool: Pool | None = None,
) -> torch.Tensor:
    """(B, h, w): one layer's attention over the patch tokens, from token `query` or, by default, `readout`'s row.

    query=POOLED reads the token the head reads (`global_pool`, see `readout`): for 'avg' the mean of the
    patch rows, i.e. the attention each patch receives on average. An int is a token index (`cls_attention`).
    """
    if query != POOLED:
        return cls_attention(
            attentions, layer, head, num_prefix_tokens=num_prefix_tokens, grid_size=grid_size, query=query
        )
    weights = _layer_weights(attentions, layer, head)  # (B, N, N)
    return readout(weights, num_prefix_tokens=num_prefix_tokens, grid_size=grid_size, global_pool=global_pool)


def mean_attention_distance(
    attentions: Sequence[torch.Tensor],
    *,
    num_prefix_tokens: int,
    grid_size: tuple[int, int],
    patch_size: int = 1,
) -> torch.Tensor:
    """(L, H): attention-weighted mean query-key distance in pixels, per layer and head (ViT Fig. 7).

    Only patch-to-patch weights are used: prefix rows and columns are dropped and each remaining row
    is renormalised to sum to 1, i.e. it is the distance of the attention that stays among patches.
    The distance between patches is Euclidean on the grid times `patch_size` (1: in patches); the
    result is averaged over query patches and the batch.
    """
    h, w = grid_size
    p = num_prefix_tokens
    if attentions[0].shape[-1] != p + h * w:
        raise ValueError(
            f"N={attentions[0].shape[-1]} tokens are not num_prefix_tokens={p} + a {h}x{w} grid; "
            "pass the model's layout: **token_layout(model)"
        )
    coords = torch.cartesian_prod(torch.arange(h), torch.arange(w)).double()  # (h*w, 2), row-major
    distance = torch.cdist(coords, coords) * patch_size  # (h*w, h*w)
    per_layer = []
    for attn in attentions:
        patch_attn = attn[:, :, p:, p:].double()  # (B, H, h*w, h*w)
        patch_attn = patch_attn / patch_attn.sum(dim=-1, keepdim=True)
        per_query = (patch_attn * distance.to(attn.device)).sum(dim=-1)  # (B, H, h*w)
        per_layer.append(per_query.mean(dim=(0, 2)))  # (H,)
    return torch.stack(per_layer).to(attentions[0].dtype)  # (L, H)


# --- tokens --------------------------------------------------------------------------------------------
def token_patch(query: Query, *, num_prefix_tokens: int, grid_size: tuple[int, int]) -> tuple[int, int] | None:
    """(row, col) on the patch grid of token `query` (row-major after the prefix); None for a prefix token or POOLED."""
    if query == POOLED or query < num_prefix_tokens:
        return None
    return divmod(query - num_prefix_tokens, grid_size[1])


def describe_token(
    query: Query, *, num_prefix_tokens: int, grid_size: tuple[int, int], global_pool: Pool | None = None
) -> str:
    """'cls' for token 0 of a model with a cls token, 'prefix i' for other prefix tokens, 'patch (row, col)'
    for a patch; for POOLED what the head reads: 'cls' or 'mean of patches' (`global_pool`, see `readout`)."""
    if query == POOLED:
        return "cls" if _default_pool(global_pool, num_prefix_tokens) == "token" else "mean of patches"
    patch = token_patch(query, num_prefix_tokens=num_prefix_tokens, grid_size=grid_size)
    if patch is None:
        return "cls" if query == 0 else f"prefix {query}"
    return f"patch {patch}"


# --- one image, one forward pass: the explorer's maps --------------------------------------------------
@contextlib.contextmanager
def single_thread():
    """Run torch on one thread inside the block, then restore the thread count.

    One image makes tiny matrix products that gain nothing from intra-op threads, and on a busy CPU
    the threads' waiting for each other costs several times the work itself.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class ForwardCache:
    """Everything `attention_map` needs about one image, from a single forward pass (`forward_cache`).

    Rollout matrices and gradient rollouts are computed on first use and kept; only a gradient
    rollout for a class not seen before runs the model again (forward + backward).
    """

    model: nn.Module
    image: torch.Tensor  # (C, H, W), normalised, exactly as fed to the model
    label: int | None  # the true class, if known
    logits: torch.Tensor  # (num_classes,)
    attentions: list[torch.Tensor]  # L x (1, heads, N, N), post-softmax
    num_prefix_tokens: int
    grid_size: tuple[int, int]
    global_pool: Pool  # what the head reads (`pooling`): the row POOLED queries
    _rollouts: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)  # layer -> (N, N)
    _gradient_rollouts: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)  # class -> (h, w)

    @property
    def layout(self) -> dict:
        """`num_prefix_tokens` and `grid_size`, to pass on as `**cache.layout`."""
        return {"num_prefix_tokens": self.num_prefix_tokens, "grid_size": self.grid_size}

    @property
    def readout_layout(self) -> dict:
        """`layout` and `global_pool`, for the functions that read the pooled row (`readout`, `raw_attention`)."""
        return self.layout | {"global_pool": self.global_pool}

    @property
    def num_layers(self) -> int:
        return len(self.attentions)

    @property
    def num_heads(self) -> int:
        return self.attentions[0].shape[1]

    @property
    def num_tokens(self) -> int:
        return self.attentions[0].shape[-1]

    @property
    def probabilities(self) -> torch.Tensor:
        return self.logits.softmax(dim=-1)  # (num_classes,)

    @property
    def prediction(self) -> int:
        return int(self.logits.argmax())

    def rollout(self, layer: int) -> torch.Tensor:
        """(N, N) rollout matrix through layers 0..layer, heads averaged (`rollout_matrix`)."""
        if layer not in self._rollouts:
            with single_thread():
                matrix = rollout_matrix(self.attentions[: layer + 1], num_prefix_tokens=self.num_prefix_tokens)
            self._rollouts[layer] = matrix[0]
        return self._rollouts[layer]

    def gradient_rollout(self, target: int | None = None) -> torch.Tensor:
        """(h, w) `gradient_rollout` map for class `target` (None: the predicted class)."""
        target = self.prediction if target is None else int(target)
        num_classes = self.logits.shape[-1]
        if not 0 <= target < num_classes:
            raise ValueError(f"target class must be in [0, {num_classes}) or None (the predicted class), got {target}")
        if target not in self._gradient_rollouts:
            with single_thread():
                self._gradient_rollouts[target] = gradient_rollout(self.model, self.image[None], target)[0]
        return self._gradient_rollouts[target]


def forward_cache(model: nn.Module, image: torch.Tensor, label: int | None = None) -> ForwardCache:
    """Run `model` once on `image` (C, H, W) in eval mode, without gradients, on one thread, and keep what
    `attention_map` needs. Every submodule's train/eval mode is restored afterwards.
    """
    with eval_mode(model), torch.no_grad(), single_thread():
        logits, attentions = model(image[None], return_attention=True)  # (1, classes), L x (1, H, N, N)
    return ForwardCache(
        model=model,
        image=image,
        label=None if label is None else int(label),
        logits=logits[0],
        attentions=list(attentions),
        **token_layout(model),
        global_pool=pooling(model),
    )


def head_options(num_heads: int) -> list[Head]:
    """The `head` values `attention_map` accepts for a model with `num_heads` heads."""
    return [*range(num_heads), "mean", "max", "rollout", "gradient rollout"]


def query_options(num_tokens: int) -> list[Query]:
    """The `query` values `attention_map` accepts: POOLED (the token the head reads), then every token index."""
    return [POOLED, *range(num_tokens)]


def attention_map(
    cache: ForwardCache, layer: int, head: Head, query: Query = POOLED, target: int | None = None
) -> torch.Tensor:
    """The (h, w) map over the patch grid for one image; raw weights, not rescaled.

    `layer` indexes the blocks (0 = first; negative counts from the end). `query` is POOLED (default: the
    row of the token the head reads, `readout`: the cls token's, or the mean of the patch tokens' rows
    for an average-pooled model) or a token index (0 = the cls token when there is one, then the
    patches row by row). `head` selects the map:
    - a head index, 'mean' or 'max': row `query` of layer `layer`'s attention (that head, or the heads
      fused entry-wise), patch columns only: `raw_attention`.
    - 'rollout': row `query` of the rollout through layers 0..`layer` (inclusive); at the last layer
      and POOLED this is exactly `attention_rollout(..., global_pool=pooling(model))`.
    - 'gradient rollout': `gradient_rollout` for class `target` (None: the predicted class). It explains
      one logit of the whole network, read where the head reads, so it ignores `layer` and `query`.
    """
    num_layers, n = cache.num_layers, cache.num_tokens
    if not -num_layers <= layer < num_layers:
        raise ValueError(f"layer must be in [{-num_layers}, {num_layers}), got {layer}")
    layer %= num_layers
    if isinstance(query, numbers.Integral) and not isinstance(query, bool):
        query = int(query)
    if query != POOLED and (not isinstance(query, int) or isinstance(query, bool) or not 0 <= query < n):
        raise ValueError(f"query must be {POOLED!r} or a token index in [0, {n}), got {query!r}")
    if isinstance(head, numbers.Integral) and not isinstance(head, bool):
        head = int(head)  # e.g. a numpy integer
    options = head_options(cache.num_heads)
    if head not in options or isinstance(head, bool):
        raise ValueError(f"head must be one of {options}, got {head!r}")
    if head == "gradient rollout":
        return cache.gradient_rollout(target)
    if head == "rollout":
        matrix = cache.rollout(layer)[None]  # (1, N, N)
        if query == POOLED:
            return readout(matrix, **cache.readout_layout)[0]
        return _patch_row_to_grid(matrix[:, query], **cache.layout)[0]
    return raw_attention(cache.attentions, layer, head, query=query, **cache.readout_layout)[0]
