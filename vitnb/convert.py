"""Load weights from torchvision's ViT (vit_b_16, vit_b_32, ...) into vitnb's timm-named model.

timm's state dicts need no conversion: vitnb uses timm's names and shapes (see tests/test_parity.py);
`timm_kwargs` gives the arguments that build timm's twin of a vitnb config.
"""

from __future__ import annotations

import re

import torch

from .config import ViTConfig, preset
from .model import VisionTransformer

TIMM_FIELDS = (
    "img_size",
    "patch_size",
    "in_chans",
    "num_classes",
    "embed_dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "qkv_bias",
    "class_token",
    "global_pool",
    "pos_embed",
    "init_values",
)


def timm_kwargs(cfg: ViTConfig) -> dict:
    """Arguments for timm's `VisionTransformer` that build the same architecture as `cfg`.

    Only plain-ViT configs have a timm twin: post-norm, the conv/SPT stems, LSA and fixed sin-cos
    embeddings are vitnb's notebook-08 options, and raise a ValueError.
    """
    if cfg.norm != "pre" or cfg.stem != "patch" or cfg.lsa or cfg.pos_embed == "sincos":
        raise ValueError(
            "timm's VisionTransformer has no post-norm, conv/SPT stem, LSA or fixed sin-cos option; "
            f"got norm={cfg.norm!r}, stem={cfg.stem!r}, lsa={cfg.lsa}, pos_embed={cfg.pos_embed!r}"
        )
    return {name: getattr(cfg, name) for name in TIMM_FIELDS}


# torchvision name -> vitnb/timm name, for the parts outside the encoder layers
_TOP_LEVEL = {
    "conv_proj.": "patch_embed.proj.",
    "class_token": "cls_token",
    "encoder.pos_embedding": "pos_embed",
    "encoder.ln.": "norm.",
    "heads.head.": "head.",
}
# inside encoder.layers.encoder_layer_{i}.  (mlp.0/mlp.3 today; linear_1/linear_2 in older torchvision)
_LAYER = {
    "ln_1.": "norm1.",
    "self_attention.in_proj_weight": "attn.qkv.weight",
    "self_attention.in_proj_bias": "attn.qkv.bias",
    "self_attention.out_proj.": "attn.proj.",
    "ln_2.": "norm2.",
    "mlp.0.": "mlp.fc1.",
    "mlp.linear_1.": "mlp.fc1.",
    "mlp.3.": "mlp.fc2.",
    "mlp.linear_2.": "mlp.fc2.",
}


def torchvision_vit_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision `VisionTransformer` state dict to vitnb's (= timm's) keys.

    torchvision's fused in_proj stacks q, k, v with heads contiguous inside each, exactly timm's qkv
    layout, so every tensor is copied unchanged; only names move.
    """
    out = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"encoder\.layers\.encoder_layer_(\d+)\.(.+)", key)
        table, rest, prefix = (_LAYER, m.group(2), f"blocks.{m.group(1)}.") if m else (_TOP_LEVEL, key, "")
        for old, new in table.items():
            if rest.startswith(old):
                out[prefix + new + rest[len(old) :]] = value
                break
        else:
            raise ValueError(
                f"unexpected key {key!r} in a torchvision ViT state dict (pre_logits heads are not supported)"
            )
    return out


def load_torchvision_vit(name: str = "vit_b_16", weights: str | None = "DEFAULT") -> VisionTransformer:
    """vitnb model with torchvision's `vit_b_16` / `vit_b_32` weights (downloaded by torchvision when online).

    `weights=None` gives torchvision's random init, which is what the offline tests use.
    """
    import torchvision

    configs = {"vit_b_16": preset("base"), "vit_b_32": preset("base", patch_size=32)}
    if name not in configs:
        raise ValueError(f"unsupported torchvision model {name!r}; choose one of {sorted(configs)}")
    tv_model = getattr(torchvision.models, name)(weights=weights)
    return vitnb_from_torchvision(tv_model, configs[name])


def vitnb_from_torchvision(tv_model: torch.nn.Module, cfg: ViTConfig) -> VisionTransformer:
    """Build a vitnb `VisionTransformer` of config `cfg` holding a torchvision ViT's weights."""
    model = VisionTransformer(cfg)
    model.load_state_dict(torchvision_vit_state_dict(tv_model.state_dict()), strict=True)
    return model
