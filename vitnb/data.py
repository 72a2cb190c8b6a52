"""Data: labelled image sets held in memory as uint8 tensors, and a batch loader that augments in torch.

Every data set here yields `(image float tensor (C, H, W), int label)`. Fashion-MNIST is found in
`data/` (or $VITNB_DATA), then in Debian's `dataset-fashion-mnist` package, then via torchvision's
download; any other torchvision data set (CIFAR-10, an ImageFolder of your own) goes through
`from_torchvision`, and any other map-style data set of (image tensor, int label) through
`as_image_dataset`. Files are written with `atomic_write`, so several processes (e.g. under torchrun)
can prepare the same data at once.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torchvision.transforms import v2

from .io import atomic_write

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)


def checkout_root() -> Path | None:
    """The source checkout this package runs from (the folder holding pyproject.toml), or None if installed."""
    checkout = Path(__file__).resolve().parents[1]
    return checkout if (checkout / "pyproject.toml").exists() else None


def data_root() -> Path:
    """Where data sets land: $VITNB_DATA, else `data/` in the source checkout, else ./data."""
    if "VITNB_DATA" in os.environ:
        return Path(os.environ["VITNB_DATA"])
    return (checkout_root() or Path.cwd()) / "data"


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
            raise ValueError(
                f"images must be a uint8 tensor (N, C, H, W), got {self.images.dtype} "
                f"of shape {tuple(self.images.shape)}"
            )

    def __post_init__(self) -> None:
        self._check_images()
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
        if self.labels.shape != (len(self.images),):
            raise ValueError(
                f"expected {len(self.images)} labels (one per image), got shape {tuple(self.labels.shape)}"
            )
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(
                f"labels must lie in [0, {len(self.classes)}) for {len(self.classes)} classes, "
                f"got [{int(self.labels.min())}, {int(self.labels.max())}]"
            )
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise ValueError(
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
        """The same examples with images resized to `size` x `size` (torchvision's antialiased bilinear resize)."""
        images = v2.functional.resize(self.images, [size, size], antialias=True)
        return dataclasses.replace(self, images=images)

    def per_class_subset(self, per_class: int | None, seed: int = 0) -> ImageTensorDataset:
        """A fixed, seeded selection of `per_class` examples of every class (e.g. 1% of the labels).

        `per_class=None` returns the whole set, so a "labels per class" option can default to all.
        """
        if per_class is None:
            return self
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise ValueError(f"per_class must be a positive int (or None for the whole set), got {per_class!r}")
        g = torch.Generator().manual_seed(seed)
        picks = []
        for c in range(self.num_classes):
            idx = (self.labels == c).nonzero().flatten()
            if len(idx) < per_class:
                raise ValueError(
                    f"class {c} ({self.classes[c]}) has {len(idx)} examples, fewer than per_class={per_class}"
                )
            picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
        return self.subset(torch.cat(picks).sort().values)


class FloatImageDataset(ImageTensorDataset):
    """Images given as float tensors (N, C, H, W), already as the model takes them (`normalize` keeps them).

    What `as_image_dataset` makes of a data set that is not an `ImageTensorDataset`. The preprocessing
    that produced the images is unknown, so `meta()` records mean and std as None.
    """

    def _check_images(self) -> None:
        if not self.images.is_floating_point() or self.images.ndim != 4:
            raise ValueError(
                f"images must be a float tensor (N, C, H, W), got {self.images.dtype} "
                f"of shape {tuple(self.images.shape)}"
            )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return images.float()

    def meta(self) -> dict:
        return {**super().meta(), "mean": None, "std": None}


# --- any data set --------------------------------------------------------------------------------
NEEDS = "fit, evaluate and predict take a map-style data set (len() and [i]) of (image tensor (C, H, W), int label)"


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
        raise TypeError(f"{NEEDS} pairs; got images of shape {tuple(images.shape[1:])}, not (C, H, W)")
    labels = torch.as_tensor(labels, dtype=torch.int64)
    c = images.shape[1]
    return FloatImageDataset(
        images.float(), labels, _class_names(dataset, labels), (0.0,) * c, (1.0,) * c, getattr(dataset, "name", "")
    )


def _read_items(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack the (image tensor, int label) items of a map-style data set; a TypeError for anything else."""
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"{NEEDS} pairs; a {type(dataset).__name__} has no len() or [i]")
    images, labels = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], torch.Tensor)) or not (
            isinstance(item[1], int) or (isinstance(item[1], torch.Tensor) and item[1].numel() == 1)
        ):
            kinds = ", ".join(type(x).__name__ for x in item) if isinstance(item, tuple | list) else type(item).__name__
            raise TypeError(
                f"{NEEDS} pairs; item {i} of the {type(dataset).__name__} is ({kinds}). Convert PIL images with "
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
    """(C, H, W) tensors -> (N, C, H, W); a ValueError saying `fix` when their shapes differ."""
    shapes = sorted({tuple(im.shape) for im in images})
    if len(shapes) > 1:
        raise ValueError(f"the images differ in shape ({shapes[0]}, {shapes[-1]}, ...); {fix}")
    return torch.stack(list(images))


def _class_names(dataset, labels: torch.Tensor) -> list[str]:
    """The data set's `classes`, else '0', '1', ... up to the largest label."""
    names = getattr(dataset, "classes", None)
    return list(names) if names else [str(c) for c in range(int(labels.max()) + 1 if len(labels) else 0)]


# --- loading -------------------------------------------------------------------------------------
def fetch_fashion_mnist(root: Path | None = None) -> Path:
    """Make sure Fashion-MNIST is unpacked under `root` (default `data_root()`), and return `root`.

    Looks in `root/FashionMNIST/raw`, then unpacks the gz files of Debian's `dataset-fashion-mnist`
    (recompressed by Debian, so their MD5 sums differ from torchvision's list while the contents are
    the same), then lets torchvision download (and MD5-check) them. Safe to run in several processes
    at once: each writes its own temp file and renames it into place.
    """
    root = Path(root or data_root())
    raw = root / "FashionMNIST" / "raw"
    unpacked = [raw / f.removesuffix(".gz") for f in FASHION_MNIST_FILES]
    if all(p.exists() for p in unpacked):
        return root
    if all((DEBIAN_FASHION_MNIST / f).exists() for f in FASHION_MNIST_FILES):
        for f, dest in zip(FASHION_MNIST_FILES, unpacked, strict=True):
            with gzip.open(DEBIAN_FASHION_MNIST / f) as src:
                atomic_write(dest, lambda out, src=src: shutil.copyfileobj(src, out))
        return root
    try:
        torchvision.datasets.FashionMNIST(root, train=True, download=True)
    except Exception as err:
        raise RuntimeError(
            f"Fashion-MNIST is not in {raw} and could not be downloaded ({type(err).__name__}: {err}). "
            f"Get it either way: (1) offline, `sudo apt-get install dataset-fashion-mnist` (files in "
            f"{DEBIAN_FASHION_MNIST}); (2) online, rerun with internet access and torchvision downloads it. "
            f"Or set VITNB_DATA to a folder that holds FashionMNIST/raw/."
        ) from err
    return root


def fashion_mnist(train: bool = True, root: Path | None = None) -> ImageTensorDataset:
    """Fashion-MNIST (60,000 train / 10,000 test, 28x28 grayscale, 10 classes) as an in-memory set."""
    ds = torchvision.datasets.FashionMNIST(fetch_fashion_mnist(root), train=train, download=False)
    images = ds.data.unsqueeze(1).contiguous()  # (N, 1, 28, 28) uint8
    return ImageTensorDataset(
        images, ds.targets, list(ds.classes), FASHION_MNIST_MEAN, FASHION_MNIST_STD, "fashion_mnist"
    )


def from_torchvision(ds, img_size: int | None = None, mean=None, std=None, name: str = "") -> ImageTensorDataset:
    """Materialise any torchvision-style data set of (PIL image or tensor, int label) in memory.

    Images are converted to uint8 tensors and, if `img_size` is given, resized (shorter side) and
    centre-cropped to img_size x img_size. Mean/std default to the data set's own per-channel values.
    """
    steps = [v2.ToImage(), v2.ToDtype(torch.uint8, scale=True)]
    if img_size is not None:
        steps += [v2.Resize(img_size, antialias=True), v2.CenterCrop(img_size)]
    to_uint8 = v2.Compose(steps)
    images, labels = zip(
        *((to_uint8(img), int(label)) for img, label in map(ds.__getitem__, range(len(ds)))), strict=True
    )
    images = _stack_images(images, "pass img_size=... to resize them to one size")
    labels = torch.tensor(labels)
    flat = images.float().div(255).transpose(0, 1).reshape(images.shape[1], -1)
    mean = tuple(flat.mean(1).tolist()) if mean is None else mean
    std = tuple(flat.std(1).tolist()) if std is None else std
    return ImageTensorDataset(images, labels, _class_names(ds, labels), mean, std, name)


def load_dataset(name: str, train: bool = True, root: Path | None = None, img_size: int | None = None):
    """A data set by name: 'fashion_mnist', 'cifar10', 'cifar100', or 'folder:/path/to/imagefolder'.

    The data set's `name` is the name it was loaded by.
    """
    root = Path(root or data_root())
    if name == "fashion_mnist":
        return fashion_mnist(train, root)
    if name.startswith("folder:"):
        path = Path(name.split(":", 1)[1])
        if not path.is_dir():
            raise ValueError(f"image folder {path} does not exist (expected one sub-folder per class)")
        return from_torchvision(torchvision.datasets.ImageFolder(path), img_size=img_size, name=name)
    known = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}
    if name not in known:
        raise ValueError(f"unknown data set {name!r}; use 'fashion_mnist', 'cifar10', 'cifar100' or 'folder:PATH'")
    try:
        ds = known[name](root, train=train, download=True)
    except Exception as err:
        raise RuntimeError(
            f"{name} is not in {root} and could not be downloaded ({err}); put torchvision's "
            f"archive there or rerun with internet access"
        ) from err
    return from_torchvision(ds, img_size=img_size, name=name)


# --- batches -------------------------------------------------------------------------------------
def augment_params(n: int, pad: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop offsets (n, 2) in [0, 2*pad] and horizontal-flip flags (n,) for a batch."""
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return offsets, flips


def crop_and_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Per-sample random crop with zero padding, then optional horizontal flip; (B, C, H, W) in and out."""
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    rows = offsets[:, 0:1] + torch.arange(h)  # (B, H)
    cols = offsets[:, 1:2] + torch.arange(w)  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)  # flipping = reading the columns backwards
    out = padded[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


class BatchLoader:
    """Iterate over an `ImageTensorDataset` in batches of normalised float images, without workers.

    Shuffling and augmentation (random crop with `pad` pixels of padding, horizontal flip) are drawn
    from a generator seeded by (seed, epoch): call `set_epoch` so every epoch differs yet a resumed run
    sees exactly the batches an uninterrupted one would. With `world_size > 1` every global batch of
    `batch_size * world_size` examples is split between ranks, so N processes together see what one
    process with the combined batch sees.
    """

    def __init__(
        self,
        dataset: ImageTensorDataset,
        batch_size: int,
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        pad: int = 2,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(dataset) == 0:
            raise ValueError("the data set is empty; check the path, split and labels-per-class selection")
        self.dataset, self.batch_size, self.shuffle, self.augment = dataset, batch_size, shuffle, augment
        self.drop_last, self.seed, self.pad, self.rank, self.world_size = drop_last, seed, pad, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        global_batch = self.batch_size * self.world_size
        n = len(self.dataset)
        return n // global_batch if self.drop_last else math.ceil(n / global_batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.dataset)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        global_batch = self.batch_size * self.world_size
        for i in range(len(self)):
            idx = order[i * global_batch : (i + 1) * global_batch]
            if self.augment:  # drawn for the whole global batch, so every rank draws the same numbers
                offsets, flips = augment_params(len(idx), self.pad, g)
            mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
            images = self.dataset.images[idx[mine]]
            if self.augment:
                images = crop_and_flip(images, offsets[mine], flips[mine], self.pad)
            yield self.dataset.normalize(images), self.dataset.labels[idx[mine]]
