import matplotlib
import pytest
import torch

from vitnb.data import ImageTensorDataset

matplotlib.use("Agg")


def toy_images(n: int = 64, size: int = 8, classes: int = 4, seed: int = 0, in_chans: int = 1) -> ImageTensorDataset:
    """A learnable toy set: class c brightens every `classes`-th pixel row from row c, over noise.

    uint8 images (n, in_chans, size, size), labels 0, 1, ..., classes-1 in turn, class names 'a', 'b', ...
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 60, (n, in_chans, size, size), generator=g)
    for i, c in enumerate(labels.tolist()):
        images[i, :, c::classes] += 180
    names = [chr(ord("a") + c) for c in range(classes)]
    return ImageTensorDataset(images.clamp(0, 255).to(torch.uint8), labels, names, (0.3,) * in_chans, (0.3,) * in_chans)


@pytest.fixture
def toy():
    """The toy data set builder: `toy(n=20, size=8, classes=3)` (see `toy_images`)."""
    return toy_images


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
