"""Where images come from: Fashion-MNIST (data/, Debian's package, or a download), torchvision's data sets, image
folders, image files. Files are written with `atomic_write`, so several processes (e.g. under torchrun) can
prepare the same data at once."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import torch
import torchvision
from torchvision.transforms import v2

from ..errors import UsageError
from ..io import atomic_write
from .dataset import ImageTensorDataset, _class_names, _stack_images, image_transform

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "checkout_root",
    "data_root",
    "fashion_mnist",
    "fetch_fashion_mnist",
    "from_torchvision",
    "load_dataset",
    "read_image",
]

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
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "pyproject.toml").exists() else None


def data_root() -> Path:
    """Where data sets land: $VITNB_DATA, else `data/` in the source checkout, else ./data."""
    if "VITNB_DATA" in os.environ:
        return Path(os.environ["VITNB_DATA"])
    return (checkout_root() or Path.cwd()) / "data"


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
        raise UsageError(
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
    centre-cropped to img_size x img_size (`image_transform`). Mean/std default to the data set's own
    per-channel values.
    """
    to_uint8 = image_transform(size=img_size)
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

    img_size: resize (shorter side) and centre-crop the images to img_size x img_size (`image_transform`).
    The data set's `name` is the name it was loaded by. A UsageError for a data set that cannot be loaded.
    """
    root = Path(root or data_root())
    if name == "fashion_mnist":
        ds = fashion_mnist(train, root)
        return ds if img_size is None else ds.resized(img_size)
    if name.startswith("folder:"):
        return _image_folder(Path(name.split(":", 1)[1]), img_size, name)
    known = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}
    if name not in known:
        raise UsageError(f"unknown data set {name!r}; use 'fashion_mnist', 'cifar10', 'cifar100' or 'folder:PATH'")
    try:
        ds = known[name](root, train=train, download=True)
    except Exception as err:
        raise UsageError(
            f"{name} is not in {root} and could not be downloaded ({err}); put torchvision's "
            f"archive there or rerun with internet access"
        ) from err
    return from_torchvision(ds, img_size=img_size, name=name)


def _image_folder(path: Path, img_size: int | None, name: str) -> ImageTensorDataset:
    """An ImageFolder (one sub-folder of images per class) in memory; a UsageError if it holds none or a bad file."""
    if not path.is_dir():
        raise UsageError(f"image folder {path} does not exist (expected one sub-folder per class)")
    try:
        return from_torchvision(torchvision.datasets.ImageFolder(path), img_size=img_size, name=name)
    except OSError as err:  # no class folders or images (FileNotFoundError), an image PIL cannot read
        raise UsageError(f"cannot load the image folder {path}: {err}") from err


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file as a uint8 RGB tensor (3, H, W), as torchvision's ImageFolder reads it (then `preprocess`)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no image file {path}")
    try:
        with Image.open(path) as image:
            return v2.functional.pil_to_tensor(image.convert("RGB"))
    except UnidentifiedImageError:
        raise UsageError(f"{path} is not an image file PIL can read (PNG or JPEG expected)") from None
