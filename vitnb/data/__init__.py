"""Data: labelled image sets held in memory as uint8 tensors, one preprocessing path, and a batch loader that
augments in torch.

Every data set here yields `(image float tensor (C, H, W), int label)`. Fashion-MNIST is found in `data/` (or
$VITNB_DATA), then in Debian's `dataset-fashion-mnist` package, then via torchvision's download; any other
torchvision data set (CIFAR-10, an ImageFolder of your own) goes through `from_torchvision`, and any other
map-style data set of (image tensor, int label) through `as_image_dataset`.

One preprocessing path: `image_transform` converts, resizes and centre-crops the images of the data sets loaded
here and, through `preprocess`, images scored later against a data set's record (`ImageTensorDataset.meta()`,
a checkpoint's "data"), so training, evaluation and prediction prepare images alike.

    dataset.py   ImageTensorDataset (uint8 images, labels, classes, preprocessing), as_image_dataset, preprocess
    sources.py   where images come from: Fashion-MNIST, torchvision data sets, image folders, image files
    loader.py    BatchLoader: shuffled, augmented, sharded batches for the trainer
"""

from .dataset import FloatImageDataset, ImageTensorDataset, as_image_dataset, image_transform, preprocess
from .loader import BatchLoader, crop_and_flip
from .sources import (
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST_FILES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    checkout_root,
    data_root,
    fashion_mnist,
    fetch_fashion_mnist,
    from_torchvision,
    load_dataset,
    read_image,
)

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "BatchLoader",
    "FloatImageDataset",
    "ImageTensorDataset",
    "as_image_dataset",
    "checkout_root",
    "crop_and_flip",
    "data_root",
    "fashion_mnist",
    "fetch_fashion_mnist",
    "from_torchvision",
    "image_transform",
    "load_dataset",
    "preprocess",
    "read_image",
]
