"""Data: Fashion-MNIST lookup order, in-memory data sets, batched augmentation, sharded loading."""

import gzip

import pytest
import torch

from vitnb import data
from vitnb.data import BatchLoader, ImageTensorDataset, crop_and_flip


def toy(n=20, classes=4, size=6) -> ImageTensorDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g)
    return ImageTensorDataset(images, torch.arange(n) % classes, [str(c) for c in range(classes)], (0.5,), (0.25,))


def test_fashion_mnist_loads_real_data():
    train, test = data.fashion_mnist(True), data.fashion_mnist(False)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.dtype == torch.uint8 and train.image_shape == (1, 28, 28)
    assert torch.equal(train.labels.bincount(), torch.full((10,), 6000))
    image, label = train[0]
    assert image.dtype == torch.float32 and image.shape == (1, 28, 28) and isinstance(label, int)
    # standardised with the data set's own statistics: the whole train set has mean 0 and std 1
    x = train.normalize(train.images[:10000])
    assert abs(x.mean().item()) < 0.02 and abs(x.std().item() - 1) < 0.02


def test_fetch_prefers_the_debian_package_and_unpacks_it(tmp_path, monkeypatch):
    fake = tmp_path / "debian"
    fake.mkdir()
    for name in data.FASHION_MNIST_FILES:
        with gzip.open(fake / name, "wb") as f:
            f.write(name.encode())
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", fake)
    root = data.fetch_fashion_mnist(tmp_path / "data")
    raw = root / "FashionMNIST" / "raw"
    assert (raw / "train-images-idx3-ubyte").read_bytes() == b"train-images-idx3-ubyte.gz"
    assert not list(raw.glob("*.tmp"))


def test_missing_data_names_both_ways_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    monkeypatch.setattr(data.torchvision.datasets, "FashionMNIST", _offline_fashion_mnist)
    with pytest.raises(RuntimeError, match="apt-get install dataset-fashion-mnist.*internet access"):
        data.fetch_fashion_mnist(tmp_path / "data")


def _offline_fashion_mnist(*args, **kwargs):
    raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: Name or service not known")


def test_dataset_validates_its_input():
    with pytest.raises(ValueError, match="uint8"):
        ImageTensorDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2), ["a"], (0.5,), (0.5,))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        ImageTensorDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 2]), ["a", "b"], (0.5,), (0.5,))
    with pytest.raises(ValueError, match="expected 2 labels"):
        ImageTensorDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0]), ["a"], (0.5,), (0.5,))


def test_per_class_subset_is_balanced_seeded_and_strict():
    ds = toy(40, classes=4)
    a, b, c = ds.per_class_subset(3, seed=1), ds.per_class_subset(3, seed=1), ds.per_class_subset(3, seed=2)
    assert torch.equal(a.labels.bincount(), torch.full((4,), 3))
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    with pytest.raises(ValueError, match="fewer than per_class=11"):
        ds.per_class_subset(11)


def test_crop_and_flip_matches_a_per_sample_reference():
    x = torch.randint(0, 256, (5, 2, 6, 7), dtype=torch.uint8)
    offsets = torch.tensor([[0, 0], [4, 4], [2, 2], [1, 3], [0, 4]])
    flips = torch.tensor([False, True, False, True, True])
    out = crop_and_flip(x, offsets, flips, pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(5):
        oy, ox = offsets[i].tolist()
        expected = padded[i, :, oy : oy + 6, ox : ox + 7]
        assert torch.equal(out[i], expected.flip(-1) if flips[i] else expected)
    assert torch.equal(crop_and_flip(x, torch.full((5, 2), 2), torch.zeros(5, dtype=torch.bool), 2), x)


def test_batch_loader_with_pad_0_only_flips():
    ds = toy(24)
    x, y = next(iter(BatchLoader(ds, batch_size=24, shuffle=False, augment=True, pad=0, seed=1)))
    plain = ds.normalize(ds.images)
    same = (x == plain).flatten(1).all(1)
    flipped = (x == plain.flip(-1)).flatten(1).all(1)
    assert bool((same | flipped).all()) and 0 < int(flipped.sum()) < 24 and torch.equal(y, ds.labels)


def test_batch_loader_covers_every_example_once_and_is_seeded():
    ds = toy(23)
    loader = BatchLoader(ds, batch_size=5, shuffle=True, seed=3)
    labels = torch.cat([y for _, y in loader])
    assert len(loader) == 5 and torch.equal(labels.sort().values, ds.labels.sort().values)
    first = [x for x, _ in loader]
    assert all(torch.equal(a, b) for a, b in zip(first, [x for x, _ in loader], strict=True))  # same epoch
    loader.set_epoch(1)
    assert not torch.equal(first[0], next(iter(loader))[0])  # another epoch, another order
    assert len(BatchLoader(ds, 5, drop_last=True)) == 4


def test_sharded_batches_together_equal_the_combined_batch():
    ds = toy(24)
    whole = BatchLoader(ds, batch_size=8, shuffle=True, augment=True, seed=5)
    shards = [BatchLoader(ds, batch_size=4, shuffle=True, augment=True, seed=5, rank=r, world_size=2) for r in (0, 1)]
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *shards, strict=True):
        assert torch.equal(x, torch.cat([x0, x1])) and torch.equal(y, torch.cat([y0, y1]))


def test_from_torchvision_materialises_pil_images():
    from PIL import Image

    class Pictures(torch.utils.data.Dataset):
        classes = ["dark", "bright"]

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return Image.new("RGB", (10, 8), (60 * i, 0, 0)), i % 2

    ds = data.from_torchvision(Pictures(), img_size=6)
    assert ds.images.shape == (4, 3, 6, 6) and ds.classes == ["dark", "bright"]
    assert ds.images[3, 0, 0, 0] == 180 and torch.equal(ds.labels, torch.tensor([0, 1, 0, 1]))


def test_unknown_dataset_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown data set 'mnist3d'"):
        data.load_dataset("mnist3d")
