"""timm and torchvision ViT weights in vitnb's model, and timm's twin of a vitnb config.

vitnb's `VisionTransformer` uses timm's module names and shapes, so a timm ViT state dict loads with
`strict=True`: `from_timm("vit_tiny_patch16_224")` reads the timm model's config into a `ViTConfig`,
loads its weights and checks that both give the same logits. `timm_kwargs(cfg)` is the inverse: the
arguments that build timm's twin of a vitnb config. torchvision's ViTs need their keys renamed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from torch import nn

from .config import ViTConfig, preset
from .errors import UsageError
from .model import VisionTransformer

__all__ = [
    "TORCHVISION_VITS",
    "config_from_timm",
    "from_timm",
    "hub_reachable",
    "load_torchvision_vit",
    "timm_kwargs",
    "torchvision_vit_state_dict",
    "vitnb_from_timm",
    "vitnb_from_torchvision",
]

_TIMM_FIELDS = (
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
    "drop_path_rate",
    "init_values",
)


def timm_kwargs(cfg: ViTConfig) -> dict:
    """Arguments for timm's `VisionTransformer` that build the same architecture as `cfg`.

    Only plain-ViT configs have a timm twin: post-norm, the conv/SPT stems, LSA and fixed sin-cos
    embeddings are vitnb's notebook-08 options, and raise a UsageError.
    """
    if cfg.norm != "pre" or cfg.stem != "patch" or cfg.lsa or cfg.pos_embed == "sincos":
        raise UsageError(
            "timm's VisionTransformer has no post-norm, conv/SPT stem, LSA or fixed sin-cos option; "
            f"got norm={cfg.norm!r}, stem={cfg.stem!r}, lsa={cfg.lsa}, pos_embed={cfg.pos_embed!r}"
        )
    return {name: getattr(cfg, name) for name in _TIMM_FIELDS}


# --- timm -----------------------------------------------------------------------------------------
def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """True if `host` accepts a connection on port 443 within `timeout` seconds: whether a pretrained download
    can start at all (a machine offline would otherwise spend a minute in the downloader's retries)."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def from_timm(name: str, pretrained: bool = False, **kwargs) -> VisionTransformer:
    """The vitnb twin of timm model `name`: its config, its weights, the same logits (in eval mode).

    `timm.create_model(name, pretrained=pretrained, **kwargs)` builds the timm model, so timm's options
    apply (`num_classes=10`, `img_size=...`, `pretrained_cfg_overlay=dict(file=PATH)` for local weights).
    Raises a UsageError naming what vitnb lacks for a model that is not a plain ViT (e.g. 'resnet18',
    register tokens, QK-norm), and a ConnectionError saying how to supply a local file when
    `pretrained=True` cannot download the weights.
    """
    import timm

    if not timm.is_model(name):
        raise UsageError(f"timm has no model {name!r}; list the ViTs with timm.list_models('vit_*')")
    try:
        timm_model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except OSError as err:  # URLError, huggingface_hub's LocalEntryNotFoundError, socket errors
        if not pretrained or "file" in kwargs.get("pretrained_cfg_overlay", {}):
            raise
        raise ConnectionError(_timm_download_help(name, err)) from err
    try:
        return vitnb_from_timm(timm_model)
    except UsageError as err:
        raise UsageError(f"timm model {name!r}: {err}") from None


def _timm_download_help(name: str, err: OSError) -> str:
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    source = f"https://huggingface.co/{cfg.hf_hub_id}" if cfg.hf_hub_id else cfg.url
    return (
        f"could not download the pretrained weights of timm model {name!r} ({type(err).__name__}: {err}). "
        f"Offline, fetch them elsewhere (from {source}) and pass "
        f"pretrained_cfg_overlay=dict(file='path/to/model.safetensors')"
    )


def config_from_timm(timm_model: nn.Module) -> ViTConfig:
    """The `ViTConfig` of a timm `VisionTransformer` (the inverse of `timm_kwargs`).

    The config read from the model is built again as timm's twin (`timm_kwargs`); every module,
    parameter or attribute in which the two differ is a part vitnb's model lacks, and a UsageError lists them.
    """
    from timm.models.vision_transformer import Attention, Block, Mlp
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    if type(timm_model) is not TimmViT:
        raise UsageError(
            f"vitnb converts timm's plain VisionTransformer (vit_*_patch*_* models), not {type(timm_model).__name__}"
        )
    plain = (Block, Attention, Mlp)
    kinds = {(type(b), type(getattr(b, "attn", None)), type(getattr(b, "mlp", None))) for b in timm_model.blocks}
    if kinds != {plain}:
        names = sorted("/".join(t.__name__ for t in kind) for kind in kinds)
        raise UsageError(f"vitnb's blocks are timm's Block/Attention/Mlp; this model's blocks are {names}")
    block, patch_embed = timm_model.blocks[0], timm_model.patch_embed
    for field in ("img_size", "patch_size"):
        if len(set(getattr(patch_embed, field))) != 1:
            raise UsageError(f"vitnb's ViT needs a square {field}, got {getattr(patch_embed, field)}")
    drop_path = getattr(timm_model.blocks[-1].drop_path1, "drop_prob", 0.0)
    cfg = ViTConfig(
        img_size=patch_embed.img_size[0],
        patch_size=patch_embed.patch_size[0],
        in_chans=patch_embed.proj.in_channels,
        num_classes=timm_model.num_classes,
        embed_dim=timm_model.embed_dim,
        depth=len(timm_model.blocks),
        num_heads=block.attn.num_heads,
        mlp_ratio=block.mlp.fc1.out_features / timm_model.embed_dim,
        qkv_bias=block.attn.qkv.bias is not None,
        class_token=timm_model.cls_token is not None,
        global_pool=timm_model.global_pool,
        pos_embed="none" if timm_model.pos_embed is None else "learn",
        drop_path_rate=float(f"{drop_path:.6g}"),  # the last block's rate, without linspace's float32 rounding
        init_values=getattr(block.ls1, "init_values", None),
    )
    with torch.device("meta"):  # structure only: no memory, no init cost
        twin = TimmViT(**timm_kwargs(cfg))
    ours, theirs = _describe_timm(timm_model), _describe_timm(twin)
    differences = {
        re.sub(r"blocks\.\d+\.", "blocks.*.", f"{name}: {ours.get(name, '(absent)')} -> {theirs.get(name, '(absent)')}")
        for name in {**ours, **theirs}
        if ours.get(name) != theirs.get(name)
    }
    if differences:
        raise UsageError(
            "vitnb's ViT lacks parts of this timm model (timm's -> what vitnb would need):\n  "
            + "\n  ".join(sorted(differences))
        )
    return cfg


def _describe_timm(model: nn.Module) -> dict[str, str]:
    """name -> description of every module, parameter and forward-relevant attribute of a timm ViT."""
    out = {name or "model": f"{type(m).__name__}({m.extra_repr()})" for name, m in model.named_modules()}
    out |= {name: f"Parameter{tuple(p.shape)}" for name, p in model.named_parameters()}
    for attr in ("global_pool", "num_prefix_tokens", "no_embed_class", "pool_include_prefix", "dynamic_img_size"):
        out[attr] = repr(getattr(model, attr, None))
    for attr in ("flatten", "output_fmt", "strict_img_size", "dynamic_img_pad"):
        out[f"patch_embed.{attr}"] = repr(getattr(model.patch_embed, attr, None))
    return out


def vitnb_from_timm(timm_model: nn.Module) -> VisionTransformer:
    """A vitnb `VisionTransformer` holding a timm ViT's weights, in eval mode, checked to give its logits.

    The state dict loads with `strict=True`; both models then classify the same random image and any
    logit gap above float32 rounding is a UsageError (a timm feature the config check did not see).
    """
    cfg = config_from_timm(timm_model)
    param = next(timm_model.parameters())
    model = VisionTransformer(cfg).to(param.device, param.dtype)
    model.load_state_dict(timm_model.state_dict(), strict=True)
    x = torch.randn(1, cfg.in_chans, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(0))
    x = x.to(param.device, param.dtype)
    was_training = timm_model.training
    with torch.no_grad():
        expected, got = timm_model.eval()(x), model.eval()(x)
    timm_model.train(was_training)
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        gap = (got - expected).abs().max().item()
        raise UsageError(f"vitnb's logits differ from timm's by up to {gap:.3g}: the timm model has a part vitnb lacks")
    return model


# --- torchvision ----------------------------------------------------------------------------------
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
# torchvision's ViTs that vitnb converts -> their patch size (base size; the image size comes from the weights)
TORCHVISION_VITS = {"vit_b_16": 16, "vit_b_32": 32}


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
            raise UsageError(
                f"unexpected key {key!r} in a torchvision ViT state dict (pre_logits heads are not supported)"
            )
    return out


def load_torchvision_vit(
    name: str = "vit_b_16", weights: str | None = "DEFAULT", weights_path: str | Path | None = None
) -> VisionTransformer:
    """vitnb model holding torchvision's `vit_b_16` / `vit_b_32` weights.

    `weights` names torchvision's weights ("DEFAULT", "IMAGENET1K_V1", ...), downloaded by torchvision
    when online; `weights=None` gives torchvision's random init.
    `weights_path` loads a local torchvision state dict (the .pth file torchvision downloads) instead.
    Offline, a failed download is a ConnectionError naming the URL and `weights_path`.
    """
    import torchvision

    if name not in TORCHVISION_VITS:
        raise UsageError(f"unsupported torchvision model {name!r}; choose one of {sorted(TORCHVISION_VITS)}")
    if weights_path is not None:
        state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    elif weights is None:
        state_dict = getattr(torchvision.models, name)(weights=None).state_dict()
    else:
        choices = torchvision.models.get_model_weights(name)
        if not isinstance(weights, choices) and weights not in ("DEFAULT", *choices.__members__):
            raise UsageError(
                f"unknown weights {weights!r} for {name}; choose one of {['DEFAULT', *choices.__members__]}"
            )
        entry = choices.verify(weights)
        try:
            state_dict = entry.get_state_dict(progress=True, check_hash=True)
        except OSError as err:  # URLError and socket errors when offline
            raise ConnectionError(
                f"could not download torchvision's {name} weights {entry} from {entry.url} "
                f"({type(err).__name__}: {err}). Offline, fetch that file elsewhere and pass "
                f"weights_path='path/to/{Path(entry.url).name}' (or put it in {torch.hub.get_dir()}/checkpoints/)"
            ) from err
    state_dict = torchvision_vit_state_dict(state_dict)
    patch_size = TORCHVISION_VITS[name]
    grid_size = math.isqrt(state_dict["pos_embed"].shape[1] - 1)  # (1, 1 + grid**2, D): 224 or 384 px weights
    model = VisionTransformer(preset("base", patch_size=patch_size, img_size=grid_size * patch_size))
    model.load_state_dict(state_dict, strict=True)
    return model


def vitnb_from_torchvision(tv_model: nn.Module, cfg: ViTConfig) -> VisionTransformer:
    """Build a vitnb `VisionTransformer` of config `cfg` holding a torchvision ViT's weights."""
    model = VisionTransformer(cfg)
    model.load_state_dict(torchvision_vit_state_dict(tv_model.state_dict()), strict=True)
    return model
