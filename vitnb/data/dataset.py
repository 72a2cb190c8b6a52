"""In-memory labelled image sets (uint8 images with their classes and preprocessing), any map-style data set
held as one, and the one preprocessing path (`image_transform`, `preprocess`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from ..errors import UsageError

__all__ = ["FloatImageDataset", "ImageTensorDataset", "as_image_dataset", "image_transform", "preprocess"]


@dataclass
class ImageTensorDataset(torch.utils.data.Dataset):
    """A labelled image set in memory: uint8 images (N, C, H, W) and int64 labels (N,).

    Indexing returns `(normalised float image (C, H, W), int label)`; `BatchLoader` reads whole
    batches straight from the uint8 tensor, which is far faster than per-sample transforms.
    `mean` and `std` are per channel, of images scaled to [0, 1]; `name` says which data set it is
    (checkpoints record it with the classes and the preprocessing: see `meta`).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: Sequence[str]
    mean: Sequence[float]
    std: Sequence[float]
    name: str = ""

    def _check_images(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise UsageError(
                f"images must be a uint8 tensor (N, C, H, W), got {self.images.dtype} "
                f"of shape {tuple(self.images.shape)}"
            )

    def __post_init__(self) -> None:
        self._check_images()
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
        if self.labels.shape != (len(self.images),):
            raise UsageError(
                f"expected {len(self.images)} labels (one per image), got shape {tuple(self.labels.shape)}"
            )
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise UsageError(
                f"labels must lie in [0, {len(self.classes)}) for {len(self.classes)} classes, "
                f"got [{int(self.labels.min())}, {int(self.labels.max())}]"
            )
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise UsageError(
                f"mean/std need one value per channel ({self.images.shape[1]}), got {len(self.mean)}/{len(self.std)}"
            )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.normalize(self.images[i : i + 1])[0], int(self.labels[i])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32, scaled to [0, 1] then standardised per channel."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (images.float() / 255.0 - mean) / std

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Inverse of `normalize`, to [0, 1] floats for display."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (images * std + mean).clamp(0, 1)

    def meta(self) -> dict:
        """Name, class names and preprocessing (image shape, per-channel mean/std) as plain Python values."""
        return {
            "name": self.name,
            "classes": list(self.classes),
            "image_shape": list(self.image_shape),
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
        }

    def subset(self, indices: torch.Tensor) -> ImageTensorDataset:
        """The examples at `indices`, with the same classes, preprocessing and name."""
        return dataclasses.replace(self, images=self.images[indices], labels=self.labels[indices])

    def resized(self, size: int) -> ImageTensorDataset:
        """The same examples with images resized (shorter side, antialiased) and centre-cropped to `size` x `size`,
        as `image_transform` prepares them."""
        return dataclasses.replace(self, images=image_transform(size=size)(self.images).as_subclass(torch.Tensor))

    def per_class_subset(self, per_class: int | None, seed: int = 0) -> ImageTensorDataset:
        """A fixed, seeded selection of `per_class` examples of every class (e.g. 1% of the labels).

        `per_class=None` returns the whole set, so a "labels per class" option can default to all.
        """
        return self if per_class is None else self.subset(self.per_class_indices(per_class, seed))

    def per_class_indices(self, per_class: int, seed: int = 0) -> torch.Tensor:
        """The sorted indices of `per_class_subset(per_class, seed)`: `per_class` seeded draws from every class."""
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise UsageError(f"per_class must be a positive int (or None for the whole set), got {per_class!r}")
        g = torch.Generator().manual_seed(seed)
        picks = []
        for c in range(self.num_classes):
            idx = (self.labels == c).nonzero().flatten()
            if len(idx) < per_class:
                raise UsageError(
                    f"class {c} ({self.classes[c]}) has {len(idx)} examples, fewer than per_class={per_class}"
                )
            picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
        return torch.cat(picks).sort().values


class FloatImageDataset(ImageTensorDataset):
    """Images given as float tensors (N, C, H, W), already as the model takes them (`normalize` keeps them).

    What `as_image_dataset` makes of a data set that is not an `ImageTensorDataset`. The preprocessing
    that produced the images is unknown, so `meta()` records mean and std as None.
    """

    def _check_images(self) -> None:
        if not self.images.is_floating_point() or self.images.ndim != 4:
            raise UsageError(
                f"images must be a float tensor (N, C, H, W), got {self.images.dtype} "
                f"of shape {tuple(self.images.shape)}"
            )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return images.float()

    def meta(self) -> dict:
        return {**super().meta(), "mean": None, "std": None}


# --- any data set --------------------------------------------------------------------------------
_NEEDS = "fit, evaluate and predict take a map-style data set (len() and [i]) of (image tensor (C, H, W), int label)"


def as_image_dataset(dataset) -> ImageTensorDataset:
    """Any map-style data set of (image tensor (C, H, W), int label) pairs, held in memory for the trainer.

    An `ImageTensorDataset` comes back as it is (the fast uint8 path). A `TensorDataset(images, labels)`
    is wrapped without copying; any other data set is read once, item by item, into float tensors, so
    it must fit in memory (for big image sets, `from_torchvision` keeps uint8). Images are used as given
    (no normalisation). Class names come from the data set's `classes` if it has them, else '0', '1', ...
    """
    if isinstance(dataset, ImageTensorDataset):
        return dataset
    if isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) == 2:
        images, labels = dataset.tensors
    else:
        images, labels = _read_items(dataset)
    if images.ndim != 4:
        raise TypeError(f"{_NEEDS} pairs; got images of shape {tuple(images.shape[1:])}, not (C, H, W)")
    labels = torch.as_tensor(labels, dtype=torch.int64)
    c = images.shape[1]
    return FloatImageDataset(
        images.float(), labels, _class_names(dataset, labels), (0.0,) * c, (1.0,) * c, getattr(dataset, "name", "")
    )


def _read_items(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack the (image tensor, int label) items of a map-style data set; a TypeError for anything else."""
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"{_NEEDS} pairs; a {type(dataset).__name__} has no len() or [i]")
    images, labels = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], torch.Tensor)) or not (
            isinstance(item[1], int) or (isinstance(item[1], torch.Tensor) and item[1].numel() == 1)
        ):
            kinds = ", ".join(type(x).__name__ for x in item) if isinstance(item, tuple | list) else type(item).__name__
            raise TypeError(
                f"{_NEEDS} pairs; item {i} of the {type(dataset).__name__} is ({kinds}). Convert PIL images with "
                f"v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]), or use vitnb.data.from_torchvision"
            )
        images.append(item[0])
        labels.append(int(item[1]))
    if not images:
        return torch.zeros(0, 1, 1, 1), torch.zeros(0, dtype=torch.int64)
    return _stack_images(images, "resize them to one size (e.g. from_torchvision(ds, img_size=N))"), torch.tensor(
        labels
    )


def _stack_images(images: Sequence[torch.Tensor], fix: str) -> torch.Tensor:
    """(C, H, W) tensors -> (N, C, H, W); a UsageError saying `fix` when their shapes differ."""
    shapes = sorted({tuple(im.shape) for im in images})
    if len(shapes) > 1:
        raise UsageError(f"the images differ in shape ({shapes[0]}, {shapes[-1]}, ...); {fix}")
    return torch.stack(list(images))


def _class_names(dataset, labels: torch.Tensor) -> list[str]:
    """The data set's `classes`, else '0', '1', ... up to the largest label."""
    names = getattr(dataset, "classes", None)
    return list(names) if names else [str(c) for c in range(int(labels.max()) + 1 if len(labels) else 0)]


# --- one preprocessing path ----------------------------------------------------------------------
def image_transform(channels: int | None = None, size: int | Sequence[int] | None = None) -> v2.Compose:
    """Images (PIL, or tensors (..., C, H, W)) -> uint8 tensors: converted to `channels` (1 grayscale, 3 RGB;
    None keeps them), the shorter side resized to `size` (antialiased) and centre-cropped to it (an int for a
    square, or (H, W); None keeps the size). The preprocessing of every image a model sees."""
    steps = [v2.ToImage(), v2.ToDtype(torch.uint8, scale=True)]
    if channels is not None:
        if channels not in (1, 3):
            raise UsageError(f"images can be converted to 1 (grayscale) or 3 (RGB) channels, not {channels}")
        steps.append(v2.Grayscale() if channels == 1 else v2.RGB())
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        steps += [v2.Resize(min(h, w), antialias=True), v2.CenterCrop([h, w])]
    return v2.Compose(steps)


def preprocess(images, meta: dict, labels=None, classes=None, name: str = "") -> ImageTensorDataset:
    """Images prepared as a data set's record says (`meta`: an `ImageTensorDataset.meta()`, a checkpoint's "data"):
    converted to its channels, resized and centre-cropped to its image size, normalised with its mean and std.

    images: uint8, a tensor (N, C, H, W) or a list of (C, H, W) tensors of any sizes (e.g. from `read_image`).
    labels, classes: default to zeros (images to classify) and the record's classes.
    """
    c, h, w = meta["image_shape"]
    transform = image_transform(c, (h, w))
    images = transform(images) if torch.is_tensor(images) else torch.stack([transform(image) for image in images])
    labels = torch.zeros(len(images), dtype=torch.int64) if labels is None else labels
    classes = meta["classes"] if classes is None else classes
    return ImageTensorDataset(images.as_subclass(torch.Tensor), labels, classes, meta["mean"], meta["std"], name)
