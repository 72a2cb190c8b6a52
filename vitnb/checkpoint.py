"""Checkpoints: plain dicts of tensors and Python values, loadable with `torch.load(weights_only=True)`.

Written atomically (a temp file in the same folder, then `os.replace`), so a crash mid-write never
leaves a half-written checkpoint where a good one was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from .config import ViTConfig
from .model import VisionTransformer


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write `payload` (tensors, numbers, strings, lists, dicts) to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by `save_checkpoint` (safely: weights_only=True)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train one first (see README, `python -m vitnb --help`)")
    return torch.load(path, map_location="cpu", weights_only=True)


def save_model(path: str | Path, model: VisionTransformer, **extra) -> Path:
    """Save a ViT as {'config': dict, 'model': state_dict, **extra}."""
    return save_checkpoint(path, {"config": model.cfg.to_dict(), "model": model.state_dict(), **extra})


def load_model(path: str | Path) -> tuple[VisionTransformer, dict]:
    """Rebuild a ViT from a checkpoint holding 'config' and 'model'; returns (model in eval mode, checkpoint)."""
    ckpt = load_checkpoint(path)
    if "config" not in ckpt or "model" not in ckpt:
        raise ValueError(
            f"{path} is not a vitnb model checkpoint (keys: {sorted(ckpt)}); expected 'config' and 'model'"
        )
    model = VisionTransformer(ViTConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt
