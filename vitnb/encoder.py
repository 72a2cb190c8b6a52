"""The transformer encoder block: attention + MLP, each in a residual branch with LayerNorm."""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention

__all__ = ["Block", "DropPath", "LayerScale", "Mlp"]


class Mlp(nn.Module):
    """Linear -> exact GELU -> Linear, hidden width = mlp_ratio * dim."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a whole residual branch per sample with probability p."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep  # rescale so the expected output is unchanged

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerScale(nn.Module):
    """Per-channel learned scaling of a residual branch (Touvron et al. 2021, CaiT), timm's `gamma`."""

    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Encoder block. Pre-norm (ViT): x + f(LN(x)). Post-norm (original Transformer): LN(x + f(x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        norm: str = "pre",
        lsa: bool = False,
        init_values: float | None = None,
    ):
        super().__init__()
        self.pre_norm = norm == "pre"
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, lsa=lsa)
        self.ls1 = LayerScale(dim, init_values) if init_values is not None else nn.Identity()
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values is not None else nn.Identity()
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """(B, N, D) -> (B, N, D); with return_attention also the (B, heads, N, N) weights."""
        a = self.attn(self.norm1(x) if self.pre_norm else x, return_attention=return_attention)
        a, weights = a if return_attention else (a, None)
        x = x + self.drop_path1(self.ls1(a))
        if not self.pre_norm:
            x = self.norm1(x)
        m = self.mlp(self.norm2(x) if self.pre_norm else x)
        x = x + self.drop_path2(self.ls2(m))
        if not self.pre_norm:
            x = self.norm2(x)
        return (x, weights) if return_attention else x
