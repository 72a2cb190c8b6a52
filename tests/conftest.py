import matplotlib
import pytest
import torch
from helpers import tiny_vit as _tiny_vit
from helpers import toy_images

matplotlib.use("Agg")


@pytest.fixture
def toy():
    """The toy data set builder: `toy(n=20, size=8, classes=3)` (see `helpers.toy_images`)."""
    return toy_images


@pytest.fixture
def tiny_vit():
    """The tiny ViT builder: `tiny_vit(classes=3, depth=3)` (see `helpers.tiny_vit`)."""
    return _tiny_vit


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread: no OpenMP hand-off per op, no spinning on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
