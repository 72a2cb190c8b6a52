"""VisionTransformer: patches -> tokens (+cls, +position) -> encoder blocks -> pooled token -> head."""

from __future__ import annotations

import torch
from torch import nn

from .config import ViTConfig
from .encoder import Block
from .patches import STEM_CLASSES, ConvStemEmbed
from .position import resample_pos_embed, sincos_2d

__all__ = ["VisionTransformer", "num_params"]


class VisionTransformer(nn.Module):
    """ViT (Dosovitskiy et al. 2021) with timm's module names, so timm state dicts load unchanged.

    `model(x)` returns logits (B, num_classes); `model(x, return_attention=True)` returns
    `(logits, attentions)` with one post-softmax (B, heads, N, N) tensor per block, N = prefix + patches.
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.num_prefix_tokens = 1 if cfg.class_token else 0
        self.patch_embed = STEM_CLASSES[cfg.stem].from_config(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim)) if cfg.class_token else None
        embed_len = self.num_prefix_tokens + self.patch_embed.num_patches
        if cfg.pos_embed == "learn":
            self.pos_embed = nn.Parameter(torch.zeros(1, embed_len, cfg.embed_dim))
        elif cfg.pos_embed == "sincos":  # fixed: a buffer, not a parameter, and not saved in state dicts
            self.register_buffer("pos_embed", self._sincos(), persistent=False)
        else:
            self.pos_embed = None
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()  # stochastic depth grows with depth
        self.blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, rate, cfg.norm, cfg.lsa, cfg.init_values)
            for rate in rates
        )
        # timm: the final LayerNorm sits before pooling for cls pooling ('norm') and after it for avg ('fc_norm').
        use_fc_norm = cfg.global_pool == "avg"
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.fc_norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6) if use_fc_norm else nn.Identity()
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes) if cfg.num_classes else nn.Identity()
        self.init_weights()

    kind = "vit"
    config_class = ViTConfig
    any_size = False  # the patch grid and position embeddings fix the size: see set_input_size

    @property
    def classifier(self) -> nn.Module:
        return self.head

    @property
    def channels_last(self) -> bool:
        """True for the conv stems: the trainer then feeds NHWC tensors, faster on a CPU (benchmarks/RESULTS.md)."""
        return isinstance(self.patch_embed, ConvStemEmbed)

    def init_weights(self) -> None:
        """timm's default init: truncated normal (std .02) for linears and pos_embed, tiny cls token."""
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _sincos(self) -> torch.Tensor:
        return sincos_2d(self.cfg.embed_dim, self.patch_embed.grid_size, self.num_prefix_tokens)

    # --- forward -----------------------------------------------------------------------------------
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> tokens (B, prefix + N, D), with position embeddings added."""
        x = self.patch_embed(x)  # (B, N, D); checks the input shape
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        return x

    def forward_features(self, x: torch.Tensor, return_attention: bool = False):
        """Images -> final normalised tokens (B, prefix + N, D) [, list of per-block attention weights]."""
        x = self.embed(x)
        attentions = []
        for block in self.blocks:
            if return_attention:
                x, weights = block(x, return_attention=True)
                attentions.append(weights)
            else:
                x = block(x)
        x = self.norm(x)
        return (x, attentions) if return_attention else x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens (B, prefix + N, D) -> logits (B, num_classes), or the pooled features if pre_logits."""
        x = x[:, 0] if self.cfg.global_pool == "token" else x[:, self.num_prefix_tokens :].mean(dim=1)
        x = self.fc_norm(x)  # (B, D)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        if return_attention:
            x, attentions = self.forward_features(x, return_attention=True)
            return self.forward_head(x), attentions
        return self.forward_head(self.forward_features(x))

    # --- surgery for finetuning --------------------------------------------------------------------
    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for `num_classes` classes (0 = no head)."""
        self.cfg = self.cfg.replace(num_classes=num_classes)
        self.head = nn.Linear(self.cfg.embed_dim, num_classes) if num_classes else nn.Identity()
        if num_classes:
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)
        self.head.to(self.patch_embed.proj.weight.device)

    def set_input_size(self, img_size: int) -> None:
        """Accept images of a new size: the patch grid changes and the position embeddings follow.

        Learned embeddings are resampled bicubically (prefix rows untouched); sin-cos ones are recomputed.
        """
        self.cfg = self.cfg.replace(img_size=img_size)  # validates divisibility
        self.patch_embed.set_img_size(img_size)
        if isinstance(self.pos_embed, nn.Parameter):
            new = resample_pos_embed(self.pos_embed.data, self.patch_embed.grid_size, self.num_prefix_tokens)
            self.pos_embed = nn.Parameter(new)
        elif self.pos_embed is not None:
            self.pos_embed = self._sincos().to(self.pos_embed.device)


def num_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
