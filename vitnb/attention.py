"""Multi-head self-attention with a fused qkv projection (timm layout).

Two paths compute the same thing: `F.scaled_dot_product_attention` (fast, fused) and an explicit
softmax(q k^T * scale) v that can also return the post-softmax weights. The explicit path also serves bf16
autocast on the CPU, where a whole training step runs faster with it than with SDPA (benchmarks/RESULTS.md,
"Training throughput").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .errors import UsageError

__all__ = ["Attention"]


def _sdpa_is_slower() -> bool:
    """True under bf16 autocast on the CPU, where PyTorch's fused SDPA is slower than matmul + softmax."""
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, lsa: bool = False):
        super().__init__()
        if dim % num_heads:
            raise UsageError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        # Locality Self-Attention (Lee et al. 2021): a learned temperature (stored as log scale) and
        # a mask that stops each token attending to itself, both sharpening the attention.
        self.lsa = lsa
        if lsa:
            self.log_scale = nn.Parameter(torch.tensor(math.log(self.head_dim**-0.5)))

    def scale(self) -> torch.Tensor | float:
        return self.log_scale.exp() if self.lsa else self.head_dim**-0.5

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """x: (B, N, D) -> (B, N, D), or ((B, N, D), weights (B, heads, N, N)) if return_attention."""
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        n = x.shape[1]
        mask = ~torch.eye(n, dtype=torch.bool, device=x.device) if self.lsa else None  # True = may attend
        if return_attention or (x.device.type == "cpu" and _sdpa_is_slower()):
            scores = (q * self.scale()) @ k.transpose(-2, -1)  # (B, H, N, N)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            out = weights @ v  # (B, H, N, d)
        elif self.lsa:  # learned temperature: a tensor, so it scales q (and gets its gradient)
            out = F.scaled_dot_product_attention(q * self.scale(), k, v, attn_mask=mask, scale=1.0)
        else:  # a float scale goes straight to SDPA: no extra pass over q, forward or backward
            out = F.scaled_dot_product_attention(q, k, v, scale=self.head_dim**-0.5)
        out = self.proj(rearrange(out, "b h n d -> b n (h d)"))
        return (out, weights) if return_attention else out
