"""One image, one forward pass: every attention map of the explorer (`vitnb.widgets.AttentionExplorer`).

`forward_cache(model, image)` runs the model once and keeps its logits and attentions (`ForwardCache`);
`attention_map(cache, layer, head, query, target)` then gives any map of any block, head or query token
without running the model again (only a gradient rollout for a class not seen before runs it: forward and
backward). `every_map(cache)` stacks all of them at once, for the explorer as a page (`vitnb.explorer`).
The maths is `vitnb.rollout`'s.
"""

from __future__ import annotations

import contextlib
import numbers
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from .errors import UsageError
from .rollout import POOLED, Query, TokenLayout, fuse_heads, gradient_rollout, raw_attention, rollout_matrix
from .runtime import eval_mode

__all__ = [
    "ForwardCache",
    "Head",
    "attention_map",
    "every_map",
    "forward_cache",
    "head_options",
    "query_options",
    "single_thread",
]

Head = int | Literal["mean", "max", "rollout", "gradient rollout"]  # what `attention_map` shows


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
    layout: TokenLayout  # the model's tokens, and the one its head reads (the row POOLED queries)
    _rollouts: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)  # block -> (N, N)
    _gradient_rollouts: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)  # class -> (h, w)

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
        """(N, N) rollout matrix through blocks 0..layer, heads averaged (`rollout_matrix`)."""
        if layer not in self._rollouts:
            with single_thread():
                matrix = rollout_matrix(self.attentions[: layer + 1], self.layout)
            self._rollouts[layer] = matrix[0]
        return self._rollouts[layer]

    def gradient_rollout(self, target: int | None = None) -> torch.Tensor:
        """(h, w) `gradient_rollout` map for class `target` (None: the predicted class)."""
        target = self.prediction if target is None else int(target)
        num_classes = self.logits.shape[-1]
        if not 0 <= target < num_classes:
            raise UsageError(f"target class must be in [0, {num_classes}) or None (the predicted class), got {target}")
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
        layout=TokenLayout.of(model),
    )


def head_options(num_heads: int) -> list[Head]:
    """The `head` values `attention_map` accepts for a model with `num_heads` heads."""
    return [*range(num_heads), "mean", "max", "rollout", "gradient rollout"]


def _checked(cache: ForwardCache, layer: int, head: Head, query: Query) -> tuple[int, Head, Query]:
    """(layer in [0, L), head, query) with numpy integers made ints; a UsageError naming what is out of range."""
    num_layers, n = cache.num_layers, cache.num_tokens
    if not -num_layers <= layer < num_layers:
        raise UsageError(f"layer must be in [{-num_layers}, {num_layers}), got {layer}")
    if isinstance(query, numbers.Integral) and not isinstance(query, bool):
        query = int(query)
    if query != POOLED and (not isinstance(query, int) or isinstance(query, bool) or not 0 <= query < n):
        raise UsageError(f"query must be {POOLED!r} or a token index in [0, {n}), got {query!r}")
    if isinstance(head, numbers.Integral) and not isinstance(head, bool):
        head = int(head)  # e.g. a numpy integer
    options = head_options(cache.num_heads)
    if head not in options or isinstance(head, bool):
        raise UsageError(f"head must be one of {options}, got {head!r}")
    return layer % num_layers, head, query


def attention_map(
    cache: ForwardCache, layer: int, head: Head, query: Query = POOLED, target: int | None = None
) -> torch.Tensor:
    """The (h, w) map over the patch grid for one image; raw weights, not rescaled.

    `layer` indexes the blocks (0 = first; negative counts from the end). `query` is POOLED (default: the
    row of the token the head reads, `TokenLayout.readout`: the cls token's, or the mean of the patch
    tokens' rows for an average-pooled model) or a token index (0 = the cls token when there is one, then
    the patches row by row). `head` selects the map:
    - a head index, 'mean' or 'max': row `query` of block `layer`'s attention (that head, or the heads
      fused entry-wise), patch columns only: `raw_attention`.
    - 'rollout': row `query` of the rollout through blocks 0..`layer` (inclusive); at the last block
      and POOLED this is exactly `attention_rollout(attentions, TokenLayout.of(model))`.
    - 'gradient rollout': `gradient_rollout` for class `target` (None: the predicted class). It explains
      one logit of the whole network, read where the head reads, so it ignores `layer` and `query`.
    """
    layer, head, query = _checked(cache, layer, head, query)
    if head == "gradient rollout":
        return cache.gradient_rollout(target)
    if head == "rollout":
        matrix = cache.rollout(layer)[None]  # (1, N, N)
        return (cache.layout.readout(matrix) if query == POOLED else cache.layout.to_grid(matrix[:, query]))[0]
    return raw_attention(cache.attentions, layer, head, cache.layout, query=query)[0]


def query_options(num_tokens: int) -> list[Query]:
    """The `query` values `attention_map` accepts for N tokens, in `every_map`'s order: POOLED, then 0..N-1."""
    return [POOLED, *range(num_tokens)]


def _every_query(matrix: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """(1, N, N) token-to-token weights -> (1 + N, h, w): the POOLED row (`layout.readout`), then every token's row."""
    return torch.cat([layout.readout(matrix), layout.to_grid(matrix[0])])  # the N rows as a batch of N


def every_map(cache: ForwardCache) -> dict[str, torch.Tensor]:
    """Every map `attention_map` offers for the image of `cache`, stacked; each entry is the very tensor
    `attention_map` returns for that setting (the same operations on the same tensors, so bit for bit):

    - 'raw': (L, H + 2, Q, h, w) for block, head (0..H-1, then 'mean' and 'max'), query;
    - 'rollout': (L, Q, h, w) for the rollout through blocks 0..block, query;
    - 'gradient rollout': (C, h, w), one per class (C forward and backward passes, kept in the cache).

    Q = 1 + N queries in `query_options` order: POOLED, then the token indices 0..N-1.
    """
    layout, heads = cache.layout, cache.num_heads
    raw = []
    for attn in cache.attentions:  # (1, H, N, N)
        fused = [attn[:, h] for h in range(heads)] + [fuse_heads(attn, "mean"), fuse_heads(attn, "max")]
        raw.append(torch.stack([_every_query(weights, layout) for weights in fused]))  # (H + 2, Q, h, w)
    rollout = [_every_query(cache.rollout(layer)[None], layout) for layer in range(cache.num_layers)]
    gradient = [cache.gradient_rollout(target) for target in range(cache.logits.shape[-1])]
    return {"raw": torch.stack(raw), "rollout": torch.stack(rollout), "gradient rollout": torch.stack(gradient)}
