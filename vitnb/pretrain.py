"""Masked-autoencoder pretraining through `vitnb.train.fit`: the MAE objective and the MAE recipe.

`pretrain_mae(mae, images, epochs=10)` trains a `vitnb.mae.MaskedAutoencoder` with the loop every classifier
uses, so it gets autocast, gradient clipping, DDP, checkpoints and exact resume, and returns a `History`
(column `train_loss` is the masked reconstruction loss; `train_acc` is None).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from .config import TrainConfig
from .data import ImageTensorDataset
from .mae import MaskedAutoencoder
from .runtime import autocast, eval_mode
from .train import History, Run, fit

__all__ = ["MaskedReconstruction", "pretrain_mae"]


class MaskedReconstruction:
    """MAE's objective: the mean squared error on the hidden patches (`MaskedAutoencoder.forward`); labels unused.

    Validation scores the same loss on the validation images as `val_loss`, with masks drawn from a generator
    seeded by cfg.seed, so every epoch is scored on the same masks.
    """

    val_metric: ClassVar[str] = "val_loss"
    find_unused_parameters: ClassVar[bool] = True  # the encoder's classifier head takes no part

    def loss(self, run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, None]:
        with autocast(run.device, run.precision):
            loss, _, _ = run.ddp_model(x)  # masks from the global generator, which fit seeds and checkpoints
        return loss.float(), None

    @torch.no_grad()
    def score_sum(self, run: Run, dataset: ImageTensorDataset) -> float:
        model, batch_size = run.eval_model, run.cfg.eval_batch_size
        generator = torch.Generator().manual_seed(run.cfg.seed)
        total = 0.0
        with eval_mode(model):
            for i in range(0, len(dataset), batch_size):
                x = dataset.normalize(dataset.images[i : i + batch_size].float()).to(run.device)  # (B, C, H, W)
                with autocast(run.device, run.precision):
                    loss, _, _ = model(x, generator)  # every image hides the same number of patches
                total += loss.item() * len(x)
        return total


def pretrain_mae(
    mae: MaskedAutoencoder,
    dataset,
    epochs: float,
    batch_size: int = 256,
    lr: float = 1.5e-3,
    weight_decay: float = 0.05,
    warmup_epochs: float = 1.0,
    seed: int = 0,
    precision: str = "auto",
    **fit_options,
) -> History:
    """Train `mae` in place on the images of `dataset` (labels unused) with `fit`; returns its History.

    The recipe: AdamW with linear warmup then cosine decay, gradient clipping at norm 1, horizontal flips as the
    only augmentation. A fractional `epochs` stops part-way through the last epoch.
    fit_options go to `fit`: val_set (scored as `val_loss`), checkpoint, resume, max_epochs_this_run, device,
    progress, verbose (default False), callbacks, step_callbacks.
    """
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        seed=seed,
        precision=precision,
        crop_pad=0,
    )
    return fit(mae, dataset, cfg=cfg, objective=MaskedReconstruction(), **{"verbose": False, **fit_options})
