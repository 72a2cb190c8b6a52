"""Checkpoints: one format for every model kind, plain dicts loadable with `torch.load(weights_only=True)`.

    {"format": "vitnb", "version": 1, "kind": "vit" | "resnet" | "pixels" | "mae", "config": dict,
     "model": state_dict, "data": {"name", "classes", "image_shape", "mean", "std"} or None,
     # runs written by fit(checkpoint=...) add: "optimizer", "scheduler", "epoch", "history", "rng",
     # "loader", "train_config", "precision", "world_size"; with ema_decay > 0 also "raw_model" (the
     # trained weights) and "ema_steps" (optimizer steps averaged), to resume}

"model" always holds the weights to use (with ema_decay > 0, the moving average), so every reader
(`load_model`, `export_safetensors`, the CLI) gets them without knowing how they were trained.

Every file is written atomically by `vitnb.io.atomic_write` (a uniquely named temp file in the same folder, then
`os.replace`): a crash mid-write never leaves a half-written file where a good one was, and several
processes writing the same file at once each leave a complete copy. `export_safetensors` writes the
weights alone (with the config and classes as metadata) for sharing; `load_model` reads both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from .cnn import PixelClassifier, ResNet
from .data import as_image_dataset
from .errors import UsageError
from .io import atomic_write, save_tensors
from .mae import MaskedAutoencoder
from .model import VisionTransformer

__all__ = [
    "CLASSIFIERS",
    "FORMAT",
    "KINDS",
    "MODELS",
    "VERSION",
    "build_model",
    "check_compatible",
    "check_resumable",
    "checkpoint_header",
    "data_info",
    "export_safetensors",
    "load_checkpoint",
    "load_model",
    "model_kind",
    "save_model",
]

FORMAT, VERSION = "vitnb", 1
CLASSIFIERS = (VisionTransformer, ResNet, PixelClassifier)  # the kinds that are `ImageClassifier`s
MODELS = (*CLASSIFIERS, MaskedAutoencoder)  # every model kind a checkpoint can hold
KINDS = {cls.kind: cls for cls in MODELS}  # kind -> model class
EXPECTED = "expected a file written by vitnb.save_model / fit(checkpoint=...)"


# --- writing -------------------------------------------------------------------------------------
def model_kind(model: nn.Module) -> str:
    """'vit', 'resnet', 'pixels' or 'mae'; a UsageError for a model this format cannot rebuild."""
    for kind, cls in KINDS.items():
        if isinstance(model, cls):
            return kind
    raise UsageError(
        f"vitnb checkpoints hold a {', '.join(cls.__name__ for cls in MODELS[:-1])} or {MODELS[-1].__name__}, "
        f"not a {type(model).__name__}; save another module's weights with torch.save(model.state_dict(), path)"
    )


def data_info(dataset) -> dict | None:
    """What a checkpoint records about its data: `dataset.meta()` when it has one, else None."""
    return dataset.meta() if hasattr(dataset, "meta") else None


def checkpoint_header(model: nn.Module, dataset=None) -> dict:
    """The part of every checkpoint that says what it holds: format, kind, model config, data set."""
    kind = model_kind(model)
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": model.cfg.to_dict(),
        "data": data_info(dataset),
    }


def save_model(path: str | os.PathLike, model: nn.Module, dataset=None, **extra) -> Path:
    """Save any vitnb model with its config (and `dataset`'s name, classes and preprocessing, if given)."""
    return save_tensors(path, {**checkpoint_header(model, dataset), "model": model.state_dict(), **extra})


# --- reading -------------------------------------------------------------------------------------
def _not_a_checkpoint(path: Path, why: str) -> UsageError:
    return UsageError(f"{path} is not a vitnb checkpoint ({why}); {EXPECTED}")


def _brief(err: BaseException, limit: int = 200) -> str:
    """An error on one line, cut to `limit` characters: 'KeyError: 101'."""
    text = " ".join(str(err).split()) or "no message"
    return f"{type(err).__name__}: {text if len(text) <= limit else text[: limit - 3] + '...'}"


def _unreadable(err: Exception, path: Path) -> str:
    """Why torch.load failed, in words: a damaged archive, objects unsafe to load, or the error itself."""
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
    if "Weights only load failed" in str(err):
        return "torch.load could not read it: it holds pickled Python objects, not only tensors and plain values"
    if zipped:
        return f"torch.load could not read it: the archive is truncated or damaged ({_brief(err, 60)})"
    return f"torch.load could not read it: {_brief(err)}"


def _validated(ckpt, path: Path) -> dict:
    """`ckpt` with defaults filled in for files from before the format had a name; UsageError if foreign."""
    if not isinstance(ckpt, dict):
        raise _not_a_checkpoint(path, f"it holds a {type(ckpt).__name__}, not a dict")
    if ckpt.get("format", FORMAT) != FORMAT:
        raise _not_a_checkpoint(path, f"its format is {ckpt['format']!r}")
    if ckpt.get("version", 0) > VERSION:
        raise UsageError(f"{path} has checkpoint format version {ckpt['version']}, newer than {VERSION}: upgrade vitnb")
    if "config" not in ckpt or "model" not in ckpt:
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            why = "it holds a bare state_dict without the model's config; save with vitnb.save_model(path, model)"
        else:
            why = f"keys {sorted(map(str, ckpt))[:8]}, no 'config' and 'model'"
        raise _not_a_checkpoint(path, why)
    kind = ckpt.get("kind", "vit")
    kind = "resnet" if kind == "resnet18" else kind  # the name of the kind when ResNet-18 was the only ResNet
    if kind not in KINDS:
        raise _not_a_checkpoint(path, f"unknown model kind {kind!r}; known: {sorted(KINDS)}")
    return {"format": FORMAT, "version": 0, "data": None, **ckpt, "kind": kind}


def _read_safetensors(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise _not_a_checkpoint(path, f"safetensors could not read it: {_brief(err)}") from err
    if metadata.get("format") != FORMAT:
        raise UsageError(f"{path} holds no vitnb metadata; expected a file written by vitnb.export_safetensors")
    header = {k: json.loads(metadata[k]) for k in ("version", "kind", "config", "data")}
    return _validated({"format": FORMAT, **header, "model": state}, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint (`.pt` from save_model / fit, or `.safetensors` from export_safetensors).

    Safe to call on untrusted files (weights_only=True). Missing files raise FileNotFoundError; empty,
    truncated and foreign files a UsageError naming the file. Files written before the format had a
    name (a dict with 'config' and 'model') load too, with "data" None.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one first (see README, `python -m vitnb --help`)")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if path.stat().st_size == 0:
        raise _not_a_checkpoint(path, "the file is empty")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise _not_a_checkpoint(path, _unreadable(err, path)) from err
    return _validated(ckpt, path)


def build_model(ckpt: dict) -> nn.Module:
    """The model a checkpoint describes (kind + config), with freshly initialised weights."""
    model_cls = KINDS[ckpt["kind"]]
    return model_cls(model_cls.config_class.from_dict(ckpt["config"]))


def load_model(
    path: str | os.PathLike, *, num_classes: int | None = None, img_size: int | None = None
) -> tuple[nn.Module, dict]:
    """Rebuild any vitnb model from a checkpoint; returns (model in eval mode, checkpoint dict).

    num_classes: replace the head with a fresh one for this many classes (finetuning on a new task).
    img_size: accept images of this size (a ViT resamples its position embeddings; a CNN takes any size).
    """
    ckpt = load_checkpoint(path)
    try:
        model = build_model(ckpt)
        model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, RuntimeError) as err:
        raise _not_a_checkpoint(
            Path(path), f"its config and weights do not make a {ckpt['kind']}: {_brief(err)}"
        ) from err
    if (num_classes is not None or img_size is not None) and not isinstance(model, CLASSIFIERS):
        raise UsageError(
            f"{path} holds a {type(model).__name__}, not an image classifier: num_classes and img_size apply to "
            f"classifiers; load it without them"
        )
    if num_classes is not None:
        model.reset_classifier(num_classes)
    if img_size is not None and img_size != model.cfg.img_size:
        model.set_input_size(img_size)
    return model.eval(), ckpt


def check_resumable(state: dict, model: nn.Module, path: str | os.PathLike, ema_decay: float = 0.0) -> None:
    """Raise a UsageError unless `state`, a checkpoint written by fit, can resume training `model`: a model of
    exactly this kind and config, the training state, and a moving average of the weights if and only if
    `ema_decay` > 0 (the run's TrainConfig.ema_decay)."""
    kind = model_kind(model)
    try:
        saved = KINDS[state["kind"]].config_class.from_dict(state["config"]).to_dict()  # defaults filled in
    except (TypeError, ValueError):
        saved = state["config"]
    ours = model.cfg.to_dict()
    if state["kind"] != kind or saved != ours:
        keys = sorted(set(saved) | set(ours))
        diff = ", ".join(
            f"{k}: {saved.get(k)!r} there, {ours.get(k)!r} here" for k in keys if saved.get(k) != ours.get(k)
        )
        raise UsageError(
            f"cannot resume from {path}: it holds a {state['kind']} model of another config than this {kind} ({diff}); "
            f"pass the model it was trained with (vitnb.load_model rebuilds it) or write to another checkpoint path"
        )
    missing = [k for k in ("optimizer", "scheduler", "epoch", "history", "rng") if k not in state]
    if missing:
        raise UsageError(
            f"cannot resume from {path}: it holds a model but no training state ({', '.join(missing)}); "
            f"it was written by save_model, not fit(checkpoint=...). To train from its weights, "
            f"load them with vitnb.load_model and fit without resume=True"
        )
    averaged = "raw_model" in state
    if averaged != (ema_decay > 0):
        had = "with a moving average of the weights" if averaged else "without a moving average of the weights"
        raise UsageError(
            f"cannot resume from {path}: it was trained {had}, this run has ema_decay={ema_decay}; "
            f"resume with the ema_decay of its train_config ({state.get('train_config', {}).get('ema_decay', 0.0)}) "
            f"or write to another checkpoint path"
        )


def check_compatible(ckpt: dict, dataset) -> None:
    """Raise a UsageError if `dataset` is not the kind of data the checkpoint's model was trained on.

    Compares the class names (for checkpoints without them, the number of classes), the channels and,
    for models of a fixed input size, the image size. To finetune on other classes: `load_model(path, num_classes=N)`.
    """
    if not issubclass(KINDS[ckpt["kind"]], CLASSIFIERS):
        raise UsageError(f"the checkpoint holds a {ckpt['kind']} model, which predicts no classes")
    dataset = as_image_dataset(dataset)
    config, data = ckpt["config"], ckpt.get("data") or {}
    trained_on = f"the checkpoint's model was trained on {data.get('name') or 'a data set'}"
    name = f"the data set {dataset.name}" if dataset.name else "the data set"
    ours, theirs = data.get("classes"), list(dataset.classes)
    if ours is not None and list(ours) != theirs:
        raise UsageError(
            f"{trained_on} with {len(ours)} classes {_preview(ours)}, but {name} has {len(theirs)} classes "
            f"{_preview(theirs)}; evaluate on the data it was trained on, or finetune a new head with "
            f"load_model(path, num_classes={len(theirs)})"
        )
    if len(theirs) != config["num_classes"]:
        raise UsageError(
            f"{trained_on} with {config['num_classes']} classes, but {name} has {len(theirs)}; "
            f"finetune a new head with load_model(path, num_classes={len(theirs)})"
        )
    c, h, w = dataset.image_shape
    if c != config["in_chans"]:
        raise UsageError(f"{trained_on} with {config['in_chans']}-channel images, but {name} has {c} channels")
    size = config["img_size"]
    if not KINDS[ckpt["kind"]].any_size and (h, w) != (size, size):
        raise UsageError(
            f"{trained_on} with {size}x{size} images, but {name} has {h}x{w}; load the data with "
            f"img_size={size}, or adapt the model with load_model(path, img_size={h})"
        )


def _preview(classes, n: int = 4) -> str:
    shown = ", ".join(map(str, list(classes)[:n]))
    return f"({shown}, ...)" if len(classes) > n else f"({shown})"


# --- sharing -------------------------------------------------------------------------------------
def export_safetensors(ckpt_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write a checkpoint's weights alone as safetensors, with kind, config and data set as metadata JSON.

    `load_model(out_path)` rebuilds the model; the optimizer and run state are left out.
    """
    from safetensors.torch import save

    ckpt = load_checkpoint(ckpt_path)
    tensors = {k: v.contiguous().clone() for k, v in ckpt["model"].items()}  # no shared or strided storage
    header = {"version": VERSION, "kind": ckpt["kind"], "config": ckpt["config"], "data": ckpt["data"]}
    metadata = {"format": FORMAT, **{k: json.dumps(v) for k, v in header.items()}}  # str -> str only
    return atomic_write(out_path, lambda f: f.write(save(tensors, metadata)))
