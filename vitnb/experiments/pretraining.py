"""Notebook 05's protocol: pretrain a CPU-sized ViT to classify fractal categories, then reuse the checkpoint.

`pretrain_fractal` is the recipe; `load_or_pretrain_fractal_vit` gives later notebooks its checkpoint
(making one if it is missing); `from_pretrained` turns a checkpoint into a model for a new task.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .. import fractal
from ..checkpoint import load_model
from ..config import ViTConfig, preset
from ..data import ImageTensorDataset
from ..model import VisionTransformer
from ..train import TrainConfig, fit, freeze_all_but_head
from .paths import FRACTAL_VIT_PATH, run_path, shown_path
from .profiles import get_profile

VIT_PRESET = "cpu_small"  # the series' ViT: notebooks 05-07 pretrain, finetune and inspect it


def train_val_split(
    dataset: ImageTensorDataset, val_per_class: int, seed: int = 0
) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """Hold out a fixed, seeded `val_per_class` examples of every class; returns (train, validation)."""
    g = torch.Generator().manual_seed(seed)
    held = torch.zeros(len(dataset), dtype=torch.bool)
    for c in range(dataset.num_classes):
        idx = (dataset.labels == c).nonzero().flatten()
        held[idx[torch.randperm(len(idx), generator=g)[:val_per_class]]] = True
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
    """Pretrain a `VIT_PRESET` ViT to classify fractal categories; the checkpoint goes to `path`.

    Sizes default to the profile (nb05_*). Returns (model, history, (train, validation) data sets).
    """
    P = get_profile()
    num_classes = num_classes or P.nb05_corpus_classes
    corpus = fractal.dataset(num_classes, per_class or P.nb05_corpus_per_class)
    train, val = train_val_split(corpus, val_per_class or P.nb05_val_per_class)
    model = VisionTransformer(cfg or preset(VIT_PRESET, num_classes=num_classes))
    train_cfg = train_cfg or TrainConfig(
        epochs=epochs or P.nb05_epochs, batch_size=128, lr=1e-3, warmup_epochs=0.5, crop_pad=0
    )
    history = fit(model, train, val, train_cfg, checkpoint=run_path(path), progress=progress)
    return model, history, (train, val)


def load_or_pretrain_fractal_vit(path: str | os.PathLike = FRACTAL_VIT_PATH) -> Path:
    """The path of notebook 05's pretrained checkpoint, pretraining one first (profile sizes) if it is missing."""
    path = run_path(path)
    if not path.exists():
        print(f"no pretrained checkpoint at {shown_path(path)}: pretraining one now (notebook 05 does the same)")
        pretrain_fractal(path)
    return path


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
