"""vitnb: the Vision Transformer, built step by step and tested.

The names below are imported on first use (PEP 562 `__getattr__`), so `import vitnb` and
`python -m vitnb --help` start without importing torch.
"""

from importlib import import_module

_EXPORTS = {  # public name -> the module that defines it
    "export_safetensors": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_model": "checkpoint",
    "save_model": "checkpoint",
    "PRESETS": "config",
    "TrainConfig": "config",
    "ViTConfig": "config",
    "preset": "config",
    "from_timm": "convert",
    "BatchLoader": "data",
    "ImageTensorDataset": "data",
    "fashion_mnist": "data",
    "load_dataset": "data",
    "MaskedAutoencoder": "mae",
    "pretrain_mae": "mae",
    "VisionTransformer": "model",
    "num_params": "model",
    "PatchEmbed": "patches",
    "patchify": "patches",
    "unpatchify": "patches",
    "resample_pos_embed": "position",
    "sincos_2d": "position",
    "History": "train",
    "evaluate": "train",
    "fit": "train",
    "predict": "train",
    "seed_everything": "runtime",
}
__all__ = sorted(_EXPORTS)


_SUBMODULES = {
    "attention",
    "checkpoint",
    "cli",
    "cnn",
    "config",
    "convert",
    "data",
    "distributed",
    "errors",
    "interface",
    "io",
    "runtime",
    "encoder",
    "experiments",
    "faithfulness",
    "fractal",
    "mae",
    "model",
    "patches",
    "plotting",
    "position",
    "rollout",
    "train",
    "widgets",
}


def __getattr__(name: str):
    if name in _SUBMODULES:  # `vitnb.train.fit` works after a bare `import vitnb`, as with eager imports
        return import_module(f".{name}", __name__)
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups find it without calling __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
