"""BatchLoader: batches of normalised images for the trainer, shuffled, augmented (random crop and flip, in torch
on whole uint8 batches) and split between the ranks of a distributed run."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ..errors import UsageError
from .dataset import ImageTensorDataset

__all__ = ["BatchLoader", "crop_and_flip"]


def _augment_params(n: int, pad: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop offsets (n, 2) in [0, 2*pad] and horizontal-flip flags (n,) for a batch."""
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return offsets, flips


def crop_and_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Per-sample random crop with zero padding, then optional horizontal flip; (B, C, H, W) in and out."""
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    rows = offsets[:, 0:1] + torch.arange(h)  # (B, H)
    cols = offsets[:, 1:2] + torch.arange(w)  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)  # flipping = reading the columns backwards
    out = padded[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


class BatchLoader:
    """Iterate over an `ImageTensorDataset` in batches of normalised float images, without workers.

    Shuffling and augmentation (random crop with `pad` pixels of padding, horizontal flip) are drawn
    from a generator seeded by (seed, epoch): call `set_epoch` so every epoch differs yet a resumed run
    sees exactly the batches an uninterrupted one would. With `world_size > 1` every global batch of
    `batch_size * world_size` examples is split between ranks, so N processes together see what one
    process with the combined batch sees.
    """

    def __init__(
        self,
        dataset: ImageTensorDataset,
        batch_size: int,
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        pad: int = 2,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size <= 0:
            raise UsageError(f"batch_size must be positive, got {batch_size}")
        if len(dataset) == 0:
            raise UsageError("the data set is empty; check the path, split and labels-per-class selection")
        self.dataset, self.batch_size, self.shuffle, self.augment = dataset, batch_size, shuffle, augment
        self.drop_last, self.seed, self.pad, self.rank, self.world_size = drop_last, seed, pad, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        global_batch = self.batch_size * self.world_size
        n = len(self.dataset)
        return n // global_batch if self.drop_last else math.ceil(n / global_batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.dataset)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        global_batch = self.batch_size * self.world_size
        for i in range(len(self)):
            idx = order[i * global_batch : (i + 1) * global_batch]
            if self.augment:  # drawn for the whole global batch, so every rank draws the same numbers
                offsets, flips = _augment_params(len(idx), self.pad, g)
            mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
            images = self.dataset.images[idx[mine]]
            if self.augment:
                images = crop_and_flip(images, offsets[mine], flips[mine], self.pad)
            yield self.dataset.normalize(images), self.dataset.labels[idx[mine]]
