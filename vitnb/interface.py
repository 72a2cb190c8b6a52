"""The model interface: what the trainer, the checkpoint and the maps may rely on in a vitnb model.

Every classifier that vitnb trains and saves (`VisionTransformer`, `ResNet`, `PixelClassifier`) offers the
attributes of `ImageClassifier`; nothing else about a model is probed. The masked autoencoder
(`vitnb.mae.MaskedAutoencoder`) is saved like them (kind, config_class, cfg) but is no classifier: it has no
head, and the trainer neither shape-checks its data nor reads its labels. `check_data` says, before training
or evaluating, whether a data set fits a model.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

from torch import nn

from .data import ImageTensorDataset
from .errors import UsageError

__all__ = ["ImageClassifier", "ModelConfig", "check_data", "model_input_shape", "model_num_classes"]


@runtime_checkable
class ModelConfig(Protocol):
    """A model's configuration: a frozen dataclass that a checkpoint stores as a plain dict."""

    in_chans: int
    num_classes: int
    img_size: int

    def to_dict(self) -> dict: ...

    def replace(self, **changes) -> ModelConfig: ...


@runtime_checkable
class ImageClassifier(Protocol):
    """An image classifier: `model(x)` maps images (B, C, H, W) to logits (B, num_classes)."""

    kind: ClassVar[str]  # the checkpoint's name for the family ("vit", "resnet", "pixels")
    config_class: ClassVar[type]  # the type of `cfg`, whose from_dict rebuilds it from a checkpoint
    cfg: ModelConfig
    channels_last: bool  # True: the trainer feeds NHWC tensors (faster convolutions on a CPU)
    any_size: ClassVar[bool]  # True: any image size works, only the channels must match

    @property
    def classifier(self) -> nn.Module:
        """The final linear layer (the head): what a linear probe trains and `reset_classifier` replaces."""
        ...

    def reset_classifier(self, num_classes: int) -> None: ...

    def set_input_size(self, img_size: int) -> None: ...

    def __call__(self, x): ...


def model_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """(C, H, W) the model expects, (C,) if any image size works, or None for a model outside vitnb."""
    if not isinstance(model, ImageClassifier):
        return None
    cfg = model.cfg
    return (cfg.in_chans,) if model.any_size else (cfg.in_chans, cfg.img_size, cfg.img_size)


def model_num_classes(model: nn.Module) -> int | None:
    """The number of classes a vitnb model predicts, or None for a model outside vitnb."""
    return model.cfg.num_classes if isinstance(model, ImageClassifier) else None


def check_data(model: nn.Module, dataset: ImageTensorDataset, name: str = "training set") -> None:
    """Raise a UsageError saying what is wrong and what to do if `dataset` cannot train `model`."""
    if dataset is None or len(dataset) == 0:
        raise UsageError(f"the {name} is empty; check the data set name, split and --labels-per-class selection")
    expected = model_input_shape(model)
    got = tuple(dataset.images.shape[1:])
    if expected is not None and got[: len(expected)] != expected:
        raise UsageError(
            f"the {name} has images of shape {got} (C, H, W) but the model expects {expected}; "
            f"build the model for this data (e.g. preset('cpu', img_size={got[1]}, in_chans={got[0]})), "
            f"call model.set_input_size({got[1]}) for another size, or resize the data"
        )
    num_classes = model_num_classes(model)
    top = int(dataset.labels.max())
    if num_classes is not None and top >= num_classes:
        raise UsageError(
            f"the {name} has labels up to {top} ({top + 1} classes) but the model has {num_classes} outputs; "
            f"build it with num_classes={dataset.num_classes} or call model.reset_classifier({dataset.num_classes})"
        )
