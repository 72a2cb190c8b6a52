"""Notebooks 02 and 03: small ViTs trained for well under a minute, and measures of position tables.

The series' ViT (`preset(SERIES_PRESET)`) uses fixed 2-D sin-cos positions, so it has no learned table to look at.
Notebook 02 trains the same model with a learned table (`learned_positions_config()`) for a short run with
`train_briefly`, with and without random horizontal flips (no crops, as notebook 06 trains), to show the
structure training gives the table and the left-right symmetry the flips add; `mirror_similarity`,
`mean_pair_similarity` and `offset_spread` measure those properties of any position table. Notebook 03 shows
the attention of notebook 06's model, or of a `train_briefly` stand-in before notebook 06 has run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import SERIES_PRESET, TrainConfig, ViTConfig, preset
from ..data import ImageTensorDataset
from ..errors import UsageError
from ..evaluation import evaluate
from ..model import VisionTransformer
from ..train import fit
from .profiles import get_profile

__all__ = ["learned_positions_config", "mean_pair_similarity", "mirror_similarity", "offset_spread", "train_briefly"]


def learned_positions_config() -> ViTConfig:
    """The series' ViT with a learned position table instead of sin-cos: (1, 49, 96), no class token."""
    return preset(SERIES_PRESET, pos_embed="learn")


def train_briefly(
    config: ViTConfig,
    train: ImageTensorDataset,
    test: ImageTensorDataset,
    flips: bool = True,
    profile=None,
    seed: int = 0,
) -> tuple[VisionTransformer, float]:
    """Train a ViT of `config` briefly on Fashion-MNIST; return (model in eval mode, test accuracy).

    flips: random horizontal flips of the training images (the only augmentation; no crops).
    The run's size comes from the profile (settings short_run_*): a few steps when quick, 12,000 images when
    full. fp32, batch 64, peak learning rate 2e-3.
    """
    profile = profile or get_profile()
    torch.manual_seed(seed)
    model = VisionTransformer(config)
    cfg = TrainConfig(
        epochs=profile.short_run_epochs,
        batch_size=64,
        lr=2e-3,
        warmup_epochs=0.3,
        augment=flips,
        crop_pad=0,
        seed=seed,
        precision="fp32",
    )
    fit(model, train.per_class_subset(profile.short_run_per_class), None, cfg, progress=False, verbose=False)
    accuracy = evaluate(model, test.per_class_subset(profile.short_run_test_per_class, seed=0))
    return model.eval(), accuracy


def _patch_table(pos_embed: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """The patch rows of a position table, (gh, gw, D); prefix (cls) rows, if any, are dropped."""
    gh, gw = grid_size
    rows = pos_embed.detach().cpu().float().reshape(-1, pos_embed.shape[-1])  # (prefix + N, D)
    if rows.shape[0] < gh * gw:
        raise UsageError(f"{rows.shape[0]} position embeddings cannot fill a {gh}x{gw} grid")
    return rows[-gh * gw :].reshape(gh, gw, -1)


def mirror_similarity(pos_embed: torch.Tensor, grid_size: tuple[int, int], axis: str) -> float:
    """Mean cosine similarity of each patch's embedding with its mirror patch's.

    axis: 'left-right' pairs (r, c) with (r, gw-1-c), 'up-down' pairs (r, c) with (gh-1-r, c). Patches on
    the mirror line (their own mirror) are left out.
    """
    dims = {"left-right": 1, "up-down": 0}
    if axis not in dims:
        raise UsageError(f"axis must be one of {list(dims)}, got {axis!r}")
    table = _patch_table(pos_embed, grid_size)  # (gh, gw, D)
    d = dims[axis]
    sim = F.cosine_similarity(table, table.flip(d), dim=-1)  # (gh, gw)
    index = torch.arange(grid_size[d])
    moved = index != index.flip(0)  # off the mirror line
    moved = moved[:, None].expand(grid_size) if d == 0 else moved[None, :].expand(grid_size)
    return sim[moved].mean().item()


def mean_pair_similarity(pos_embed: torch.Tensor, grid_size: tuple[int, int]) -> float:
    """Mean cosine similarity of two different patches' embeddings, over all pairs (the reference level)."""
    table = F.normalize(_patch_table(pos_embed, grid_size).flatten(0, 1), dim=-1)  # (N, D), unit rows
    sim = table @ table.T  # (N, N)
    n = len(sim)
    return ((sim.sum() - sim.trace()) / (n * (n - 1))).item()


def offset_spread(pos_embed: torch.Tensor, grid_size: tuple[int, int]) -> float:
    """How much the similarity of two patches depends on more than their offset.

    For every offset (dr, dc), the standard deviation of the cosine similarity over all pairs of patches
    with that offset, averaged over the offsets that at least two pairs share. 0 when the similarity depends
    only on the offset (as for sin-cos tables).
    """
    gh, gw = grid_size
    table = F.normalize(_patch_table(pos_embed, grid_size), dim=-1)  # (gh, gw, D)
    spreads = []
    for dr in range(-(gh - 1), gh):
        for dc in range(-(gw - 1), gw):
            a = table[max(0, -dr) : gh - max(0, dr), max(0, -dc) : gw - max(0, dc)]  # patches (r, c)
            b = table[max(0, dr) : gh - max(0, -dr), max(0, dc) : gw - max(0, -dc)]  # patches (r + dr, c + dc)
            sims = (a * b).sum(-1).flatten()
            if len(sims) > 1:
                spreads.append(sims.std().item())
    return sum(spreads) / len(spreads)
