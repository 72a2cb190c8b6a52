"""Importance maps: how much each patch of an image matters to the model's decision, by six methods.

Every method maps (model, images, labels) to (B, h, w) scores on the model's patch grid, with `images`
normalised as the model takes them and `labels` the true classes (`METHODS`; `importance_map` picks one):
- 'raw attention': the last block's attention, heads averaged, in the row the head reads
  (`rollout.raw_attention`);
- 'rollout': attention rollout (`rollout.rollout_matrix`), same row;
- 'gradient rollout': rollout of the positive part of A * dlogit/dA for the true class, each block's weights
  scaled by that block's total relevance (`rollout.relevance`, `rollout.gradient_rollout_matrix`);
- 'gradient x (input - canvas)': (x - canvas) * dlogit/dx of the true-class logit, summed over channels and
  over each patch's pixels: the first-order estimate of how much the logit drops when that patch is replaced
  by the canvas, i.e. by what the faithfulness curves do to it;
- 'integrated gradients' (Sundararajan et al. 2017): the same product with the gradient averaged along the
  straight path from the canvas to the image, so the patches' scores add up to logit(x) - logit(canvas);
- 'random': uniform random scores, i.e. a random order (seeded by a `torch.Generator`).

The two gradient maps measure each pixel against a reference, and the reference is the canvas the curves
delete to and insert on (`faithfulness.curve_canvas`): a patch that already looks like the canvas scores 0, as
deleting it changes nothing. Pass it as `canvas=`. Both use Captum (`captum.attr.Saliency`,
`captum.attr.IntegratedGradients`).

The row the head reads: the cls token's row for `global_pool='token'`; for `global_pool='avg'`, where the
head reads the mean of the patch tokens, the mean of the patch tokens' rows, i.e. the mean attention each
patch RECEIVES from all patch tokens. So every map works for both kinds of pooling.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from captum.attr import IntegratedGradients, Saliency
from einops import reduce
from torch import nn

from .errors import UsageError
from .rollout import TokenLayout, gradient_rollout_matrix, raw_attention, rollout_matrix
from .runtime import eval_mode

__all__ = [
    "IG_STEPS",
    "METHODS",
    "REFERENCED",
    "Importance",
    "gradient_input_importance",
    "gradient_rollout_importance",
    "importance_map",
    "integrated_gradients_importance",
    "random_importance",
    "raw_attention_importance",
    "rollout_importance",
]

Importance = Callable[..., torch.Tensor]  # (model, images, labels, **options) -> (B, h, w)
IG_STEPS = 32  # points of the path integral (Gauss-Legendre) in 'integrated gradients'


def _attentions(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The post-softmax attention of every block, L x (B, H, N, N), in eval mode without gradients."""
    with eval_mode(model), torch.no_grad():
        _, attentions = model(images, return_attention=True)
    return list(attentions)


def raw_attention_importance(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, h, w): the last block's attention, heads averaged, in the row the head reads. `labels` is unused."""
    return raw_attention(_attentions(model, images), -1, "mean", TokenLayout.of(model))


def rollout_importance(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, h, w): attention rollout (heads averaged, no discarding) in the row the head reads. `labels` is unused."""
    layout = TokenLayout.of(model)
    return layout.readout(rollout_matrix(_attentions(model, images), layout))


def gradient_rollout_importance(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, h, w): gradient rollout for the true classes `labels` (B,), in the row the head reads.

    For a cls-pooled model this is exactly `rollout.gradient_rollout(model, images, labels)`.
    """
    return TokenLayout.of(model).readout(gradient_rollout_matrix(model, images, labels))


def _per_patch(attribution: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """(B, C, H, W) pixel attributions -> (B, h, w): summed over channels and over each patch's pixels."""
    h, w = TokenLayout.of(model).grid_size
    return reduce(attribution, "b c (h ph) (w pw) -> b h w", "sum", h=h, w=w)


def _reference(images: torch.Tensor, canvas: torch.Tensor | None, method: str) -> torch.Tensor:
    """`canvas` as a (B, C, H, W) tensor on the images' device; a clear error when it is missing."""
    if canvas is None:
        raise UsageError(
            f"{method!r} measures the image against the canvas the curves delete to; pass canvas= "
            "(e.g. curve_canvas(model, images, 'blank', blank=<the normalised black pixel>))"
        )
    return canvas.to(device=images.device, dtype=images.dtype).expand_as(images)


def gradient_input_importance(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, canvas: torch.Tensor
) -> torch.Tensor:
    """(B, h, w): (images - canvas) * dlogit/dimages of the true-class logit, summed per patch (signed).

    `canvas` (broadcastable to `images`) is the reference, the image the curves delete to; a patch equal to
    it scores 0. The sum over a patch is the first-order change of the logit when that patch is replaced by
    the canvas. The gradient comes from `captum.attr.Saliency` (abs=False), taken w.r.t. the input only: the
    model runs in eval mode and no parameter gets a `.grad`.
    """
    reference = _reference(images, canvas, "gradient x (input - canvas)")
    targets = torch.as_tensor(labels, device=images.device)
    with eval_mode(model), torch.enable_grad():
        inputs = images.detach().requires_grad_()  # a fresh leaf: `images` itself stays untouched
        grad = Saliency(model).attribute(inputs, target=targets, abs=False)  # (B, C, H, W)
    return _per_patch((images.detach() - reference) * grad.detach(), model)


def integrated_gradients_importance(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    canvas: torch.Tensor,
    steps: int = IG_STEPS,
    internal_batch_size: int = 1024,
) -> torch.Tensor:
    """(B, h, w): integrated gradients of the true-class logit from `canvas` to `images`, summed per patch.

    Per pixel: (x - canvas) times the gradient averaged along the straight path canvas -> x (`steps` points,
    Gauss-Legendre; `captum.attr.IntegratedGradients`). Completeness: each image's scores add up to
    logit(x) - logit(canvas), up to the quadrature error. A patch equal to the canvas scores 0. The model
    runs in eval mode on at most `internal_batch_size` path points at a time; no parameter gets a `.grad`.
    """
    reference = _reference(images, canvas, "integrated gradients")
    targets = torch.as_tensor(labels, device=images.device)
    with eval_mode(model), torch.enable_grad():
        attribution = IntegratedGradients(model).attribute(
            images.detach(),
            baselines=reference,
            target=targets,
            n_steps=steps,
            internal_batch_size=max(internal_batch_size, len(images)),
        )  # (B, C, H, W)
    return _per_patch(attribution.detach(), model)


def random_importance(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, h, w) uniform random scores from `generator` (on the CPU): a random order of the patches."""
    h, w = TokenLayout.of(model).grid_size
    return torch.rand(images.shape[0], h, w, generator=generator).to(images.device)


METHODS: dict[str, Importance] = {
    "raw attention": raw_attention_importance,
    "rollout": rollout_importance,
    "gradient rollout": gradient_rollout_importance,
    "gradient x (input - canvas)": gradient_input_importance,
    "integrated gradients": integrated_gradients_importance,
    "random": random_importance,
}
REFERENCED = ("gradient x (input - canvas)", "integrated gradients")  # the methods that take `canvas=`


def importance_map(
    method: str,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    canvas: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, h, w) map of `METHODS[method]`.

    `canvas` is the reference of the methods in `REFERENCED` (required there; pass the canvas the curves use,
    `curve_canvas`); `generator` seeds the 'random' method. Methods ignore what they do not use.
    """
    if method not in METHODS:
        raise UsageError(f"unknown importance method {method!r}; choose from {list(METHODS)}")
    if method == "random":
        return random_importance(model, images, labels, generator=generator)
    if method in REFERENCED:
        return METHODS[method](model, images, labels, canvas=_reference(images, canvas, method))
    return METHODS[method](model, images, labels)
