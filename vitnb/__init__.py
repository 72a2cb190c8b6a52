"""vitnb: the Vision Transformer, built step by step and tested."""

from .config import PRESETS, ViTConfig, preset
from .model import VisionTransformer, num_params
from .patches import PatchEmbed, patchify, unpatchify
from .position import resample_pos_embed, sincos_2d
from .profiles import get_profile, seed_everything
from .train import TrainConfig, evaluate, fit

__all__ = [
    "PRESETS",
    "PatchEmbed",
    "TrainConfig",
    "ViTConfig",
    "VisionTransformer",
    "evaluate",
    "fit",
    "get_profile",
    "num_params",
    "patchify",
    "preset",
    "resample_pos_embed",
    "seed_everything",
    "sincos_2d",
    "unpatchify",
]
