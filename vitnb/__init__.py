"""vitnb: the Vision Transformer, built step by step and tested.

The public API, by layer (each layer imports only from the ones above it in this list; `make test` checks it
with import-linter):

- core: models, configs, data, checkpoints (`VisionTransformer`, `preset`, `fashion_mnist`, `load_model`, ...)
- engine: training and evaluation (`fit`, `evaluate`, `pretrain_mae`, `process_group`, ...)
- analysis: attention maps (`attention_rollout`, `gradient_rollout`, `TokenLayout`, ...)
- presentation: `vitnb.plotting`, `vitnb.widgets`, `vitnb.explorer` (the explorer as one HTML page), `python -m vitnb`
  (`vitnb.cli`)

Every module is also reachable as `vitnb.<module>` (e.g. `vitnb.faithfulness`) and lists its own public names
in `__all__`. The names below are imported on first use (PEP 562 `__getattr__`), so `import vitnb` and
`python -m vitnb --help` start without importing torch; type checkers and IDEs read the imports in the
`TYPE_CHECKING` block, which `tests/test_packaging.py` keeps equal to `_EXPORTS`.
"""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .checkpoint import export_safetensors, load_checkpoint, load_model, save_model
    from .cnn import PixelClassifier, ResNet, resnet18, resnet_small
    from .config import PRESETS, SERIES_PRESET, TrainConfig, ViTConfig, preset
    from .convert import from_timm
    from .data import ImageTensorDataset, as_image_dataset, fashion_mnist, load_dataset
    from .distributed import process_group
    from .errors import UsageError
    from .evaluation import evaluate, predict
    from .interface import ImageClassifier
    from .mae import MAEConfig, MaskedAutoencoder
    from .model import VisionTransformer, num_params
    from .optim import freeze_all_but_head
    from .patches import PatchEmbed, patchify, unpatchify
    from .position import resample_pos_embed, sincos_2d
    from .pretrain import pretrain_mae
    from .rollout import TokenLayout, attention_rollout, gradient_rollout, mean_attention_distance, raw_attention
    from .runs import MetricsCsv, RunFolder
    from .runtime import seed_everything
    from .train import History, fit

_EXPORTS = {  # module -> the public names it defines
    # core
    "errors": ("UsageError",),
    "config": ("PRESETS", "SERIES_PRESET", "TrainConfig", "ViTConfig", "preset"),
    "patches": ("PatchEmbed", "patchify", "unpatchify"),
    "position": ("resample_pos_embed", "sincos_2d"),
    "model": ("VisionTransformer", "num_params"),
    "cnn": ("PixelClassifier", "ResNet", "resnet18", "resnet_small"),
    "mae": ("MAEConfig", "MaskedAutoencoder"),
    "interface": ("ImageClassifier",),
    "data": ("ImageTensorDataset", "as_image_dataset", "fashion_mnist", "load_dataset"),
    "checkpoint": ("export_safetensors", "load_checkpoint", "load_model", "save_model"),
    "convert": ("from_timm",),
    # engine
    "runtime": ("seed_everything",),
    "distributed": ("process_group",),
    "optim": ("freeze_all_but_head",),
    "evaluation": ("evaluate", "predict"),
    "train": ("History", "fit"),
    "pretrain": ("pretrain_mae",),
    "runs": ("MetricsCsv", "RunFolder"),
    # analysis
    "rollout": ("TokenLayout", "attention_rollout", "gradient_rollout", "mean_attention_distance", "raw_attention"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [  # the same names as _EXPORTS and the TYPE_CHECKING imports (tests/test_packaging.py)
    "History",
    "ImageClassifier",
    "ImageTensorDataset",
    "MAEConfig",
    "MaskedAutoencoder",
    "MetricsCsv",
    "PRESETS",
    "PatchEmbed",
    "PixelClassifier",
    "ResNet",
    "RunFolder",
    "SERIES_PRESET",
    "TokenLayout",
    "TrainConfig",
    "UsageError",
    "ViTConfig",
    "VisionTransformer",
    "as_image_dataset",
    "attention_rollout",
    "evaluate",
    "export_safetensors",
    "fashion_mnist",
    "fit",
    "freeze_all_but_head",
    "from_timm",
    "gradient_rollout",
    "load_checkpoint",
    "load_dataset",
    "load_model",
    "mean_attention_distance",
    "num_params",
    "patchify",
    "predict",
    "preset",
    "pretrain_mae",
    "process_group",
    "raw_attention",
    "resample_pos_embed",
    "resnet18",
    "resnet_small",
    "save_model",
    "seed_everything",
    "sincos_2d",
    "unpatchify",
]

_SUBMODULES = {
    "attention",
    "checkpoint",
    "cli",
    "cnn",
    "config",
    "convert",
    "data",
    "distributed",
    "encoder",
    "errors",
    "evaluation",
    "experiments",
    "explorer",
    "faithfulness",
    "fractal",
    "importance",
    "interface",
    "io",
    "mae",
    "maps",
    "model",
    "optim",
    "patches",
    "plotting",
    "position",
    "pretrain",
    "rollout",
    "runs",
    "runtime",
    "train",
    "widgets",
}


def __getattr__(name: str):
    if name in _SUBMODULES:  # `vitnb.train.fit` works after a bare `import vitnb`, as with eager imports
        return import_module(f".{name}", __name__)
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value  # later look-ups find it without calling __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
