"""Position embeddings: learned (timm layout), fixed 2-D sin-cos, and resampling to a new grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from .errors import UsageError

__all__ = ["resample_pos_embed", "sincos_2d"]


def sincos_2d(embed_dim: int, grid_size: tuple[int, int], num_prefix_tokens: int = 0, temperature=10000.0):
    """Fixed 2-D sin-cos position embedding, shape (1, prefix + gh*gw, D); prefix rows are zero.

    A quarter of the channels encode the row with sin, a quarter with cos, and likewise the column,
    at geometrically spaced frequencies 1 / temperature**(k / (D/4)), k = 0 .. D/4 - 1.
    """
    if embed_dim % 4:
        raise UsageError(f"2-D sin-cos position embedding needs embed_dim divisible by 4, got {embed_dim}")
    gh, gw = grid_size
    rows, cols = torch.meshgrid(
        torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij"
    )
    omega = 1.0 / temperature ** (torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim // 4))
    angle_r = rows.reshape(-1, 1) * omega  # (N, D/4)
    angle_c = cols.reshape(-1, 1) * omega
    pe = torch.cat([angle_r.sin(), angle_r.cos(), angle_c.sin(), angle_c.cos()], dim=1)  # (N, D)
    pe = torch.cat([torch.zeros(num_prefix_tokens, embed_dim, dtype=pe.dtype), pe])
    return pe.float().unsqueeze(0)


def resample_pos_embed(pos_embed: torch.Tensor, new_grid: tuple[int, int] | int, num_prefix_tokens: int):
    """Resize a (1, prefix + gh*gw, D) position embedding to a new grid by bicubic interpolation.

    The prefix (cls) rows are kept untouched; the old grid must be square. As in timm, antialiasing
    is on, which matters when shrinking the grid.
    """
    new_grid = (new_grid, new_grid) if isinstance(new_grid, int) else tuple(new_grid)
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    side = int(round(grid.shape[1] ** 0.5))
    if side * side != grid.shape[1]:
        raise UsageError(f"expected a square grid of position embeddings, got {grid.shape[1]} patch rows")
    if (side, side) == new_grid:
        return pos_embed.clone()
    grid = rearrange(grid, "1 (h w) d -> 1 d h w", h=side).float()
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False, antialias=True)
    grid = rearrange(grid, "1 d h w -> 1 (h w) d").to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)
