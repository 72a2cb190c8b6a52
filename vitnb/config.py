"""ViTConfig: every architectural choice of the model, named as in timm, plus named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from .errors import UsageError

__all__ = [
    "CONV_STEMS",
    "GLOBAL_POOLS",
    "NORM_PLACEMENTS",
    "POS_EMBEDS",
    "PRECISIONS",
    "PRESETS",
    "SERIES_PRESET",
    "STEMS",
    "DictConfig",
    "TrainConfig",
    "ViTConfig",
    "parse_vit_changes",
    "preset",
]

GLOBAL_POOLS = ("token", "avg")
POS_EMBEDS = ("learn", "sincos", "none")
NORM_PLACEMENTS = ("pre", "post")
CONV_STEMS = ("conv", "conv_deep", "resnet")  # built from 3x3 stride-2 convs: need a power-of-two patch
STEMS = ("patch", *CONV_STEMS, "spt")

PRECISIONS = ("auto", "fp32", "bf16", "amp")


class DictConfig:
    """What every config dataclass offers (TrainConfig, ViTConfig, CNNConfig, PixelConfig): a plain dict for
    checkpoints and JSON, built back by `from_dict`, which refuses fields it does not know."""

    def to_dict(self) -> dict:
        """Plain dict (for checkpoints loadable with weights_only=True)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UsageError(f"unknown {cls.__name__} fields {sorted(unknown)}; known fields: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


@dataclass
class TrainConfig(DictConfig):
    """Everything about a training run except the model and the data."""

    epochs: float = 10  # a fraction trains part of the last epoch (e.g. 0.1 = a tenth of the data once)
    batch_size: int = 256  # per process; under DDP the global batch is batch_size * world_size
    lr: float = 1e-3  # peak learning rate, reached after the warmup
    min_lr: float = 1e-5  # the cosine decays to this
    warmup_epochs: float = 1.0  # linear warmup from ~0 (fractions allowed; capped at half the run)
    weight_decay: float = 0.05  # not applied to biases, norms, position embeddings, cls token
    label_smoothing: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    augment: bool = True  # random crop (crop_pad px of padding) + horizontal flip
    crop_pad: int = 2  # 0 = flips only (shifts cost a ViT with large patches a lot early in training)
    seed: int = 0
    precision: str = "auto"  # 'auto' | 'fp32' | 'bf16' (CPU/GPU autocast) | 'amp' (CUDA fp16 + scaler)
    eval_batch_size: int = 1024
    ema_decay: float = 0.0  # exponential moving average of the weights (e.g. 0.999); 0 = off
    eval_flip: bool = False  # validation averages the softmax of each image and its horizontal mirror

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not self.epochs > 0:
            raise UsageError(f"TrainConfig.epochs must be positive, got {self.epochs!r}")
        for name in ("batch_size", "eval_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise UsageError(f"TrainConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if not isinstance(self.crop_pad, int) or self.crop_pad < 0:
            raise UsageError(f"TrainConfig.crop_pad must be an int >= 0, got {self.crop_pad!r}")
        if not self.lr > 0:
            raise UsageError(f"TrainConfig.lr must be positive, got {self.lr}")
        decay = self.ema_decay
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0.0 <= decay < 1.0:
            raise UsageError(
                f"TrainConfig.ema_decay must be in [0, 1) (0 turns the weight average off, e.g. 0.999 averages "
                f"about the last 1000 steps), got {self.ema_decay!r}"
            )
        if not isinstance(self.eval_flip, bool):
            raise UsageError(f"TrainConfig.eval_flip must be True or False, got {self.eval_flip!r}")


@dataclass(frozen=True)
class ViTConfig(DictConfig):
    """Hyper-parameters of a `VisionTransformer`.

    The first block of fields uses timm's names and defaults, so a default config is a plain timm ViT
    and its state dict loads into timm's model (and back). The second block holds the "minor
    modifications" studied in notebook 08; their defaults keep the plain ViT.
    """

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    class_token: bool = True
    global_pool: str = "token"  # 'token' (the cls token) | 'avg' (mean of the patch tokens)
    pos_embed: str = "learn"  # 'learn' | 'sincos' (fixed 2-D) | 'none'
    drop_path_rate: float = 0.0
    # --- modifications (notebook 08); defaults = the plain ViT ---
    norm: str = "pre"  # 'pre' (ViT) | 'post' (original Transformer) placement of LayerNorm in a block
    # 'patch' (conv k=s=P) | 'conv' (Xiao et al. 2021) | 'conv_deep' (2 convs/stage) | 'resnet' (residual blocks,
    # the ViT paper's hybrid) | 'spt' (Lee et al. 2021)
    stem: str = "patch"
    stem_width: int = 24  # channels of the conv stem's first stage (doubling per stage); conv stems only
    lsa: bool = False  # Locality Self-Attention: learned temperature + no attention to self
    init_values: float | None = None  # LayerScale init (timm's name); None disables it

    def __post_init__(self) -> None:
        for name in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "stem_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise UsageError(f"ViTConfig.{name} must be a positive int, got {value!r}")
        if self.num_classes < 0:
            raise UsageError(f"ViTConfig.num_classes must be >= 0 (0 = no head), got {self.num_classes}")
        if self.img_size % self.patch_size:
            raise UsageError(
                f"img_size={self.img_size} is not divisible by patch_size={self.patch_size}; "
                f"choose a patch size that divides the image (e.g. {_divisors(self.img_size)})"
            )
        if self.embed_dim % self.num_heads:
            raise UsageError(
                f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}; "
                f"each head needs embed_dim / num_heads channels"
            )
        _check_choice("global_pool", self.global_pool, GLOBAL_POOLS)
        _check_choice("pos_embed", self.pos_embed, POS_EMBEDS)
        _check_choice("norm", self.norm, NORM_PLACEMENTS)
        _check_choice("stem", self.stem, STEMS)
        if self.global_pool == "token" and not self.class_token:
            raise UsageError("global_pool='token' needs class_token=True; use global_pool='avg' without one")
        if self.stem in CONV_STEMS and (self.patch_size & (self.patch_size - 1) or self.patch_size < 2):
            raise UsageError(f"stem={self.stem!r} needs a power-of-two patch_size >= 2, got {self.patch_size}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise UsageError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    @property
    def grid_size(self) -> int:
        """Patches per side: the image becomes grid_size**2 tokens."""
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    def block_flops(self) -> tuple[int, int]:
        """The arithmetic of the encoder blocks for one image, at 2 FLOPs per multiply-add: (linear layers,
        attention products). Each block's qkv, proj, fc1 and fc2 hold (4 + 2r)D^2 weights (r = mlp_ratio), each
        used once per token; QK^T and the attention-weighted sum of V cost 2N^2D each (N tokens). Biases, norms,
        softmax, the stem and the head are left out: notebook 04 derives the estimate."""
        n, d = self.num_patches + int(self.class_token), self.embed_dim
        linear = 2 * self.depth * n * (4 * d * d + 2 * d * int(d * self.mlp_ratio))
        attention = self.depth * 4 * n * n * d
        return linear, attention


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"ViTConfig.{name} must be one of {choices}, got {value!r}")


def _divisors(n: int) -> list[int]:
    return [d for d in range(2, n) if n % d == 0]


PRESETS: dict[str, ViTConfig] = {
    # The ViT paper's / DeiT's ImageNet models (224 px, patch 16): 5.7M, 22.1M, 86.6M parameters.
    "tiny": ViTConfig(embed_dim=192, depth=12, num_heads=3),
    "small": ViTConfig(embed_dim=384, depth=12, num_heads=6),
    "base": ViTConfig(embed_dim=768, depth=12, num_heads=12),
    # Sized for a 2-core CPU and 28x28 grayscale (Fashion-MNIST): 7x7 = 49 patches of 4x4 pixels.
    "cpu": ViTConfig(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=192, depth=6, num_heads=3),
    # The same model on a 4x4 grid of 7x7-pixel patches: 17 tokens instead of 50, so several times more images/s.
    "cpu_p7": ViTConfig(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=192, depth=6, num_heads=3),
}

SERIES_PRESET = "cpu_small"  # the series' ViT: the model the notebooks, the CLI's default and the benchmarks train

# The series' ViT: a plain ViT (patch embedding, patch 4, 7x7 tokens) narrow and shallow enough to train on
# Fashion-MNIST in minutes on a 2-core CPU (benchmarks/RESULTS.md), with sin-cos positions (fixed 2-D geometry
# instead of a table learned from data; notebook 08 measures both choices) and average pooling (one token fewer and
# nothing to learn before the head reads the patches: a choice for simplicity, after Beyer et al. 2022).
PRESETS[SERIES_PRESET] = PRESETS["cpu"].replace(
    embed_dim=96, depth=4, num_heads=4, mlp_ratio=2.0, class_token=False, global_pool="avg", pos_embed="sincos"
)

# A hybrid, as in the ViT paper: a small ResNet's stages (16 channels at full resolution, then 32 and 64) turn
# the image into the cpu preset's 7x7 tokens, for one transformer block (width 96, 3 heads, MLP ratio 2) with
# average pooling and sin-cos positions. Each further block makes a training step slower, and in a 10-minute
# budget the epochs it costs are worth more than the block (benchmarks/fmnist_time_to_accuracy.py trains it;
# benchmarks/RESULTS.md compares depths 1-3).
PRESETS["cpu_hybrid"] = PRESETS["cpu"].replace(
    embed_dim=96,
    depth=1,
    mlp_ratio=2.0,
    class_token=False,
    global_pool="avg",
    pos_embed="sincos",
    stem="resnet",
    stem_width=16,
)


def preset(name: str, **changes) -> ViTConfig:
    """A named preset (one of `PRESETS`), optionally with some fields changed."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**changes)


def parse_vit_changes(texts) -> dict:
    """ViTConfig fields given as KEY=VALUE text (the CLI's `--model-opt`), each value cast to its field's type:
    ['depth=4', 'qkv_bias=false', 'init_values=none'] -> {'depth': 4, 'qkv_bias': False, 'init_values': None}.
    A UsageError names a text that is not KEY=VALUE, not a field, or not a value of the field's type."""
    types = {f.name: str(f.type) for f in fields(ViTConfig)}  # 'int', 'float', 'bool', 'str', 'float | None'
    casts = {"int": int, "float": float, "str": str}
    changes = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep:
            raise UsageError(f"expected KEY=VALUE, got {text!r}")
        if key not in types:
            raise UsageError(f"{key!r} is not a ViTConfig field; fields: {', '.join(types)}")
        type_name = types[key]
        if "None" in type_name and value.lower() == "none":
            changes[key] = None
        elif type_name == "bool" and value.lower() in ("true", "false"):
            changes[key] = value.lower() == "true"
        else:
            try:
                changes[key] = casts[type_name.split(" ")[0]](value)
            except (KeyError, ValueError):
                raise UsageError(f"{key} takes a value of type {type_name}, got {value!r}") from None
    return changes
