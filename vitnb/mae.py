"""Masked-autoencoder pretraining (He et al. 2021, "Masked Autoencoders Are Scalable Vision Learners").

Hide most patches of an image, encode only the visible ones with a `VisionTransformer`, and ask a light
decoder to paint the hidden ones back. No labels are used. The encoder is a ViT module (`mae.encoder`), so after
pretraining its state dict loads by name into a classifier of the same config (its head, unused here, is the
only part left untrained):

    mae = MaskedAutoencoder(MAEConfig(encoder=preset(SERIES_PRESET)))
    pretrain_mae(mae, fashion_mnist(train=True), epochs=10)     # vitnb.pretrain: through vitnb.train.fit
    classifier = VisionTransformer(preset(SERIES_PRESET)); classifier.load_state_dict(mae.encoder.state_dict())

A `MaskedAutoencoder` is saved and loaded like every vitnb model (checkpoint kind "mae"); it is not an
image classifier (no head of its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .config import DictConfig, ViTConfig
from .encoder import Block
from .errors import UsageError
from .model import VisionTransformer
from .patches import PatchEmbed, patchify, unpatchify
from .position import sincos_2d

__all__ = ["MAEConfig", "MaskedAutoencoder", "random_masking"]


@dataclass(frozen=True)
class MAEConfig(DictConfig):
    """A masked autoencoder: its encoder's `ViTConfig` and the decoder and masking around it.

    encoder: the ViT that sees the visible patches (a dict is read with `ViTConfig.from_dict`, as in checkpoints).
    decoder_dim, decoder_depth, decoder_heads: width, blocks and heads of the decoder transformer.
    mask_ratio: fraction of patches hidden from the encoder (round(N * (1 - ratio)) stay visible).
    norm_pix_loss: regress each patch's pixels standardised by that patch's own mean and variance.
    """

    encoder: ViTConfig
    decoder_dim: int = 64
    decoder_depth: int = 2
    decoder_heads: int = 4
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            object.__setattr__(self, "encoder", ViTConfig.from_dict(self.encoder))
        if not isinstance(self.encoder, ViTConfig):
            raise UsageError(f"MAEConfig.encoder must be a ViTConfig, got {type(self.encoder).__name__}")


def random_masking(n: int, num_keep: int, batch: int, generator: torch.Generator | None = None, device=None):
    """Per-sample random subsets of `num_keep` of `n` token positions.

    Each sample shuffles its positions by sorting uniform noise and keeps the first `num_keep`. Returns
    `ids_keep` (B, num_keep), the kept positions; `ids_restore` (B, n), which puts the shuffled order back
    (`ids_shuffle[ids_restore] = arange(n)`); and `mask` (B, n), 1.0 where a patch is hidden.
    """
    noise = torch.rand(batch, n, generator=generator, device=generator.device if generator else device)
    ids_shuffle = noise.to(device).argsort(dim=1)  # (B, n): kept positions first
    ids_restore = ids_shuffle.argsort(dim=1)  # (B, n)
    mask = torch.ones(batch, n, device=device)
    mask[:, :num_keep] = 0.0
    mask = mask.gather(1, ids_restore)  # (B, n), back in grid order
    return ids_shuffle[:, :num_keep], ids_restore, mask


def _gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """x (B, N, D), ids (B, K) -> the tokens x[b, ids[b]] (B, K, D)."""
    return x.gather(1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class MaskedAutoencoder(nn.Module):
    """A ViT encoder that sees only the visible patches and a light decoder that predicts the hidden pixels.

    `mae.encoder` is a `VisionTransformer` built from cfg.encoder, which needs the plain patch stem and learned
    or sin-cos positions; the autoencoder uses its patch_embed, cls_token, pos_embed, blocks and final norm.
    `mae(images)` returns (loss, pred, mask); see `forward`.
    """

    kind: ClassVar[str] = "mae"  # the checkpoint's name for the family
    config_class: ClassVar[type] = MAEConfig

    def __init__(self, cfg: MAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = VisionTransformer(cfg.encoder)
        self._check_encoder()
        n = self.encoder.patch_embed.num_patches
        self.num_keep = round(n * (1 - cfg.mask_ratio))
        if not 0 < self.num_keep < n:
            raise UsageError(
                f"mask_ratio={cfg.mask_ratio} keeps {self.num_keep} of {n} patches; choose a ratio that hides at "
                f"least one patch and keeps at least one (e.g. 0.75)"
            )
        self.mask_ratio, self.norm_pix_loss = cfg.mask_ratio, cfg.norm_pix_loss
        self.patch_size, self.in_chans = cfg.encoder.patch_size, cfg.encoder.in_chans
        self.grid_size = self.encoder.patch_embed.grid_size

        dim = cfg.decoder_dim
        self.decoder_embed = nn.Linear(cfg.encoder.embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos = sincos_2d(dim, self.grid_size, self.encoder.num_prefix_tokens)  # (1, prefix + N, Dd), fixed
        self.register_buffer("decoder_pos_embed", pos, persistent=False)
        self.decoder_blocks = nn.ModuleList(Block(dim, cfg.decoder_heads) for _ in range(cfg.decoder_depth))
        self.decoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.decoder_pred = nn.Linear(dim, self.patch_size**2 * self.in_chans)
        self._init_decoder()

    def _check_encoder(self) -> None:
        """A UsageError for an encoder that masking cannot work with."""
        if type(self.encoder.patch_embed) is not PatchEmbed:
            raise UsageError(
                f"MaskedAutoencoder needs the plain patch stem (stem='patch'), got stem={self.cfg.encoder.stem!r}: "
                f"the other stems mix neighbouring pixels into each token, so hidden patches would leak into visible "
                f"ones"
            )
        if self.encoder.pos_embed is None:
            raise UsageError(
                "MaskedAutoencoder needs position embeddings (pos_embed='learn' or 'sincos'), got pos_embed='none': "
                "once patches are dropped the encoder could not tell where the visible ones sit"
            )

    def _init_decoder(self) -> None:
        """MAE's init for the new parts: xavier-uniform linears, zero biases, mask token normal(std .02)."""
        nn.init.normal_(self.mask_token, std=0.02)
        decoder = [self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred]
        for m in nn.ModuleList(decoder).modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    # --- encoder and decoder -----------------------------------------------------------------------
    def forward_encoder(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """Images (B, C, H, W) -> (visible tokens (B, prefix + K, D), mask (B, N), ids_restore (B, N))."""
        vit = self.encoder
        prefix = vit.num_prefix_tokens
        x = vit.patch_embed(images) + vit.pos_embed[:, prefix:]  # (B, N, D); checks the input shape
        ids_keep, ids_restore, mask = random_masking(x.shape[1], self.num_keep, x.shape[0], generator, x.device)
        x = _gather_tokens(x, ids_keep)  # (B, K, D)
        if vit.cls_token is not None:
            cls = vit.cls_token + vit.pos_embed[:, :prefix]  # (1, 1, D)
            x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + K, D)
        for block in vit.blocks:
            x = block(x)
        # The ViT's final LayerNorm: `norm` for cls pooling, `fc_norm` (then applied per token) for avg pooling.
        return vit.fc_norm(vit.norm(x)), mask, ids_restore

    def forward_decoder(self, x: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Visible tokens (B, prefix + K, D) -> predicted pixels of every patch (B, N, P*P*C)."""
        prefix = self.encoder.num_prefix_tokens
        x = self.decoder_embed(x)  # (B, prefix + K, Dd)
        b, n = ids_restore.shape
        masked = self.mask_token.expand(b, n - self.num_keep, -1)  # (B, N - K, Dd)
        x_ = _gather_tokens(torch.cat([x[:, prefix:], masked], dim=1), ids_restore)  # (B, N, Dd), grid order
        x = torch.cat([x[:, :prefix], x_], dim=1) + self.decoder_pos_embed  # (B, prefix + N, Dd)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, prefix:]  # (B, N, P*P*C)

    # --- loss and outputs --------------------------------------------------------------------------
    def patch_stats(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patches (B, N, P*P*C) of `images` with each patch's mean and std (B, N, 1), as norm_pix_loss uses."""
        patches = patchify(images, self.patch_size)
        mean = patches.mean(dim=-1, keepdim=True)
        std = (patches.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
        return patches, mean, std

    def forward_loss(self, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the pixels of the hidden patches only (visible ones do not count)."""
        target, mean, std = self.patch_stats(images)
        if self.norm_pix_loss:
            target = (target - mean) / std
        per_patch = ((pred - target) ** 2).mean(dim=-1)  # (B, N)
        return (per_patch * mask).sum() / mask.sum()

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """Images (B, C, H, W) -> (loss, pred (B, N, P*P*C), mask (B, N) with 1 = hidden).

        `generator` (optional) draws the masks, so that they can be reproduced.
        """
        latent, mask, ids_restore = self.forward_encoder(images, generator)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(images, pred, mask), pred, mask

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """Images (B, C, H, W) -> (masked input, reconstruction, reconstruction with the visible patches pasted).

        All three are images in the input's (normalised) space: hidden patches of the masked input are 0;
        under norm_pix_loss each predicted patch is de-normalised with the true patch's own mean and std,
        as in the MAE paper's figures. For display, e.g. `dataset.denormalize(out)`.
        """
        training = self.training
        self.eval()  # no stochastic depth in the encoder
        try:
            _, pred, mask = self(images, generator)
        finally:
            self.train(training)
        patches, mean, std = self.patch_stats(images)
        if self.norm_pix_loss:
            pred = pred * std + mean
        hidden = mask.bool().unsqueeze(-1)  # (B, N, 1)
        outputs = (torch.where(hidden, 0.0, patches), pred, torch.where(hidden, pred, patches))
        return tuple(unpatchify(p, self.patch_size, self.grid_size, self.in_chans) for p in outputs)
