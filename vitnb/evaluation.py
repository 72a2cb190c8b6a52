"""A classifier's predictions and accuracy on a data set, on the model's device, in eval mode."""

from __future__ import annotations

import torch
from torch import nn

from .data import as_image_dataset
from .errors import UsageError
from .interface import check_data
from .runtime import autocast, eval_mode, memory_format_for, model_device, pick_device, resolve_precision

__all__ = ["class_scores", "evaluate", "predict"]


def class_scores(model: nn.Module, x: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """The model's logits (B, num_classes) for images x (B, C, H, W); with `flip`, the mean of the softmax of
    x and of its horizontal mirror image (test-time augmentation). Either way the predicted class is the argmax."""
    logits = model(x)  # (B, num_classes)
    if not flip:
        return logits
    mirrored = model(x.flip(-1))  # the width axis
    return (logits.float().softmax(-1) + mirrored.float().softmax(-1)) / 2


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset,
    batch_size: int = 1024,
    precision: str = "auto",
    device: str | torch.device | None = None,
    transform=None,
    flip: bool = False,
) -> torch.Tensor:
    """Predicted class of every image (N,), computed on the model's device.

    dataset: an `ImageTensorDataset` or any map-style data set of (image tensor, int label) pairs.
    device: move the model there first (default: leave it where it is).
    transform: maps each batch before normalisation (for an ImageTensorDataset, floats in 0..255),
        e.g. `lambda x: shift_image(x, 2, 0)`.
    flip: average the softmax of each image and its horizontal mirror image (see `class_scores`); twice the cost.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise UsageError(f"batch_size must be a positive int, got {batch_size!r}")
    dataset = as_image_dataset(dataset)
    check_data(model, dataset, "data set")
    if device is not None:
        model.to(pick_device(device))
    device = model_device(model)
    precision = resolve_precision(precision, device)
    memory_format = memory_format_for(model)
    preds = []
    with eval_mode(model):
        for i in range(0, len(dataset), batch_size):
            images = dataset.images[i : i + batch_size].float()  # (B, C, H, W)
            x = dataset.normalize(images if transform is None else transform(images))
            with autocast(device, precision):
                scores = class_scores(model, x.to(device, memory_format=memory_format), flip)  # (B, num_classes)
            preds.append(scores.argmax(1).cpu())
    return torch.cat(preds)


def evaluate(model: nn.Module, dataset, **kwargs) -> float:
    """Top-1 accuracy of `model` on `dataset` (see `predict` for the data sets and options it takes, e.g. flip=True)."""
    dataset = as_image_dataset(dataset)
    return (predict(model, dataset, **kwargs) == dataset.labels).float().mean().item()
