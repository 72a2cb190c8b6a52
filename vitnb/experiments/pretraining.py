"""Notebook 05's protocol: pretrain the series' ViT by two offline routes, then reuse the checkpoints.

- 'fractal': `pretrain_fractal` classifies formula-driven fractal categories (labelled, synthetic images);
- 'mae': `pretrain_mae_vit` trains a masked autoencoder on the Fashion-MNIST training images, labels unused.

`load_or_pretrain(route)` gives later notebooks a route's checkpoint (pretraining first if it is missing);
`from_pretrained` turns a checkpoint into a model for a new task.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from .. import fractal
from ..checkpoint import load_model, save_model
from ..config import SERIES_PRESET, TrainConfig, ViTConfig, preset
from ..data import ImageTensorDataset, fashion_mnist
from ..mae import MAEConfig, MaskedAutoencoder
from ..model import VisionTransformer
from ..optim import freeze_all_but_head
from ..pretrain import pretrain_mae
from ..train import History, fit
from .paths import FRACTAL_VIT_PATH, MAE_VIT_PATH, run_path, shown_path
from .profiles import get_profile

__all__ = [
    "IMAGENET_IMG_SIZE",
    "IMAGENET_VIT",
    "ROUTES",
    "from_pretrained",
    "imagenet_vit",
    "linear_probe",
    "load_or_pretrain",
    "pretrain_fractal",
    "pretrain_mae_vit",
    "train_val_split",
]


def train_val_split(
    dataset: ImageTensorDataset, val_per_class: int, seed: int = 0
) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """Hold out a fixed, seeded `val_per_class` examples of every class; returns (train, validation)."""
    held = torch.zeros(len(dataset), dtype=torch.bool)
    held[dataset.per_class_indices(val_per_class, seed)] = True  # the draw of per_class_subset
    return dataset.subset((~held).nonzero().flatten()), dataset.subset(held.nonzero().flatten())


def pretrain_fractal(
    path: str | os.PathLike = FRACTAL_VIT_PATH,
    num_classes: int | None = None,
    per_class: int | None = None,
    val_per_class: int | None = None,
    epochs: float | None = None,
    cfg: ViTConfig | None = None,
    train_cfg: TrainConfig | None = None,
    progress: bool = True,
):
    """Pretrain the series' ViT (`SERIES_PRESET`) to classify fractal categories; the checkpoint goes to `path`.

    Sizes default to the profile (nb05_*). Returns (model, history, (train, validation) data sets).
    """
    P = get_profile()
    num_classes = num_classes or P.nb05_corpus_classes
    corpus = fractal.dataset(num_classes, per_class or P.nb05_corpus_per_class)
    train, val = train_val_split(corpus, val_per_class or P.nb05_val_per_class)
    model = VisionTransformer(cfg or preset(SERIES_PRESET, num_classes=num_classes))
    train_cfg = train_cfg or TrainConfig(
        epochs=epochs or P.nb05_epochs, batch_size=128, lr=1e-3, warmup_epochs=0.5, crop_pad=0
    )
    history = fit(model, train, val, train_cfg, checkpoint=run_path(path), progress=progress)
    return model, history, (train, val)


def pretrain_mae_vit(
    path: str | os.PathLike = MAE_VIT_PATH,
    epochs: float | None = None,
    norm_pix_loss: bool | None = None,
    progress: bool = True,
) -> tuple[MaskedAutoencoder, History]:
    """Pretrain the series' ViT (`SERIES_PRESET`) as the encoder of a masked autoencoder on the Fashion-MNIST
    training images (labels unused; the quick profile takes a per-class subset), and save the encoder to `path`.

    Masking ratio, loss and epochs default to the profile's (nb05_mae_*). Returns (autoencoder, history).
    """
    P = get_profile()
    images = fashion_mnist(True).per_class_subset(P.nb05_mae_per_class)
    norm_pix_loss = P.nb05_mae_norm_pix_loss if norm_pix_loss is None else norm_pix_loss
    torch.manual_seed(0)
    mae = MaskedAutoencoder(
        MAEConfig(preset(SERIES_PRESET), mask_ratio=P.nb05_mae_mask_ratio, norm_pix_loss=norm_pix_loss)
    )
    history = pretrain_mae(mae, images, epochs=epochs or P.nb05_mae_epochs, progress=progress)
    save_model(run_path(path), mae.encoder, images, route="mae", mask_ratio=mae.mask_ratio, profile=P.name)
    return mae, history


ROUTES = {"fractal": (FRACTAL_VIT_PATH, pretrain_fractal), "mae": (MAE_VIT_PATH, pretrain_mae_vit)}


def load_or_pretrain(route: str) -> Path:
    """The path of notebook 05's checkpoint for `route` ('fractal' or 'mae'), pretraining one first (profile
    sizes) if it is missing."""
    if route not in ROUTES:
        raise ValueError(f"unknown pretraining route {route!r}; choose from {sorted(ROUTES)}")
    path, pretrain = ROUTES[route]
    path = run_path(path)
    if not path.exists():
        print(f"no pretrained checkpoint at {shown_path(path)}: pretraining one now (notebook 05 does the same)")
        pretrain(path, progress=False)
    return path


IMAGENET_VIT = "vit_tiny_patch16_224"  # timm's ViT-Ti/16: ImageNet-21k pretrained, ImageNet-1k finetuned, 5.7M
IMAGENET_IMG_SIZE = 64  # Fashion-MNIST upsampled to 64 px, so that 16-px patches make a 4x4 grid


def imagenet_vit(num_classes: int = 10, pretrained: bool = True) -> VisionTransformer:
    """timm's ImageNet ViT-Ti/16 as a vitnb model for one-channel `IMAGENET_IMG_SIZE` images, with a new head.

    Downloads the weights (see `vitnb.convert.hub_reachable`); timm sums the RGB patch filters into one
    channel and resamples the position embeddings to the 4x4 grid."""
    from ..convert import from_timm

    return from_timm(
        IMAGENET_VIT, pretrained=pretrained, num_classes=num_classes, img_size=IMAGENET_IMG_SIZE, in_chans=1
    )


def from_pretrained(
    path: str | os.PathLike, num_classes: int, img_size: int | None = None, mode: str = "full"
) -> nn.Module:
    """A pretrained model (ViT or ResNet) ready for a new task, in train mode: a fresh head for `num_classes`,
    position embeddings resampled if `img_size` differs, and for mode='linear' everything but the head frozen."""
    if mode not in ("full", "linear"):
        raise ValueError(f"mode must be 'full' (finetune everything) or 'linear' (probe), got {mode!r}")
    model, _ = load_model(run_path(path), num_classes=num_classes, img_size=img_size)
    if mode == "linear":
        freeze_all_but_head(model)
    return model.train()


def linear_probe(encoder: VisionTransformer, labelled: ImageTensorDataset, cfg: TrainConfig) -> VisionTransformer:
    """A linear probe of `encoder` (e.g. `mae.encoder`): a copy of it with a new head for `labelled`'s classes,
    everything but the head frozen, and the head trained on `labelled` by `cfg` (e.g.
    `data_efficiency.series_recipe(epochs, lr=1e-2)`). Returns the probe, in eval mode; `encoder` is left as it
    was."""
    probe = copy.deepcopy(encoder)
    probe.reset_classifier(labelled.num_classes)
    freeze_all_but_head(probe)
    fit(probe, labelled, None, cfg, progress=False, verbose=False)
    return probe
