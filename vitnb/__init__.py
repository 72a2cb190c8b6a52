"""vitnb: the Vision Transformer, built step by step and tested."""

from .checkpoint import export_safetensors, load_checkpoint, load_model, save_model
from .config import PRESETS, ViTConfig, preset
from .convert import from_timm
from .data import BatchLoader, ImageTensorDataset, fashion_mnist, load_dataset
from .mae import MaskedAutoencoder, pretrain_mae
from .model import VisionTransformer, num_params
from .patches import PatchEmbed, patchify, unpatchify
from .position import resample_pos_embed, sincos_2d
from .train import History, TrainConfig, evaluate, fit, predict, seed_everything

__all__ = [
    "PRESETS",
    "BatchLoader",
    "History",
    "ImageTensorDataset",
    "MaskedAutoencoder",
    "PatchEmbed",
    "TrainConfig",
    "ViTConfig",
    "VisionTransformer",
    "evaluate",
    "export_safetensors",
    "fashion_mnist",
    "fit",
    "from_timm",
    "load_checkpoint",
    "load_dataset",
    "load_model",
    "num_params",
    "patchify",
    "predict",
    "preset",
    "pretrain_mae",
    "resample_pos_embed",
    "save_model",
    "seed_everything",
    "sincos_2d",
    "unpatchify",
]
