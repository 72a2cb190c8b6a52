"""Data: Fashion-MNIST lookup order and safe unpacking, in-memory data sets, the one preprocessing path, batched
augmentation, sharded loading."""

import gzip
import multiprocessing
import os
from pathlib import Path

import pytest
import torch

from vitnb import data
from vitnb.data import BatchLoader, FloatImageDataset, ImageTensorDataset, as_image_dataset, crop_and_flip, sources
from vitnb.errors import UsageError


def test_fashion_mnist_loads_real_data():
    train, test = data.fashion_mnist(True), data.fashion_mnist(False)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.dtype == torch.uint8 and train.image_shape == (1, 28, 28) and train.name == "fashion_mnist"
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
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", fake)
    root = data.fetch_fashion_mnist(tmp_path / "data")
    raw = root / "FashionMNIST" / "raw"
    assert (raw / "train-images-idx3-ubyte").read_bytes() == b"train-images-idx3-ubyte.gz"
    assert sorted(p.name for p in raw.iterdir()) == sorted(f.removesuffix(".gz") for f in data.FASHION_MNIST_FILES)


def _unpack(debian: str, root: str, start: multiprocessing.Barrier) -> None:
    """One of several processes preparing Fashion-MNIST at the same moment (as under torchrun)."""
    sources.DEBIAN_FASHION_MNIST = Path(debian)
    start.wait()
    data.fetch_fashion_mnist(Path(root))


@pytest.mark.slow  # starts two Python processes that import torch
def test_processes_unpacking_at_once_do_not_collide(tmp_path):
    debian = tmp_path / "debian"
    debian.mkdir()
    contents = {}
    for i, name in enumerate(data.FASHION_MNIST_FILES):
        contents[name.removesuffix(".gz")] = os.urandom(4_000_000 + i)  # big enough for the writes to overlap
        with gzip.open(debian / name, "wb", compresslevel=1) as f:
            f.write(contents[name.removesuffix(".gz")])
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    workers = [ctx.Process(target=_unpack, args=(str(debian), str(tmp_path / "data"), start)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == contents  # complete files, no temp files left


def test_missing_data_names_both_ways_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    monkeypatch.setattr(sources.torchvision.datasets, "FashionMNIST", _offline_fashion_mnist)
    with pytest.raises(UsageError, match="apt-get install dataset-fashion-mnist.*internet access"):
        data.fetch_fashion_mnist(tmp_path / "data")


def _offline_fashion_mnist(*args, **kwargs):
    raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: Name or service not known")


def test_dataset_validates_its_input():
    with pytest.raises(UsageError, match="uint8"):
        ImageTensorDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2), ["a"], (0.5,), (0.5,))
    with pytest.raises(UsageError, match=r"labels must lie in \[0, 2\)"):
        ImageTensorDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 2]), ["a", "b"], (0.5,), (0.5,))
    with pytest.raises(UsageError, match="expected 2 labels"):
        ImageTensorDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0]), ["a"], (0.5,), (0.5,))


def test_per_class_subset_is_balanced_seeded_and_strict(toy):
    ds = toy(40, classes=4)
    a, b, c = ds.per_class_subset(3, seed=1), ds.per_class_subset(3, seed=1), ds.per_class_subset(3, seed=2)
    assert torch.equal(a.labels.bincount(), torch.full((4,), 3))
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert ds.per_class_subset(None) is ds
    with pytest.raises(UsageError, match="fewer than per_class=11"):
        ds.per_class_subset(11)
    with pytest.raises(UsageError, match="per_class must be a positive int .* got 0"):
        ds.per_class_subset(0)


def test_subsets_keep_the_name_and_meta(toy):
    ds = ImageTensorDataset(toy(8).images, toy(8).labels, ["a", "b", "c", "d"], (0.5,), (0.25,), name="toy")
    part = ds.subset(torch.tensor([0, 1]))
    assert part.meta() == {
        "name": "toy",
        "classes": ["a", "b", "c", "d"],
        "image_shape": [1, 8, 8],
        "mean": [0.5],
        "std": [0.25],
    }
    assert ds.per_class_subset(1).meta() == part.meta()


def test_checkout_root_is_the_folder_with_pyproject(monkeypatch):
    root = data.checkout_root()
    assert root == Path(__file__).resolve().parents[1] and (root / "pyproject.toml").is_file()
    monkeypatch.delenv("VITNB_DATA", raising=False)
    assert data.data_root() == root / "data"
    monkeypatch.setenv("VITNB_DATA", "/somewhere/else")
    assert data.data_root() == Path("/somewhere/else")


def test_tensor_datasets_are_wrapped_without_copying(toy):
    images = torch.rand(6, 2, 5, 5)
    ds = as_image_dataset(torch.utils.data.TensorDataset(images, torch.tensor([0, 1, 2, 0, 1, 2])))
    assert isinstance(ds, FloatImageDataset) and ds.images.data_ptr() == images.data_ptr()
    assert ds.classes == ["0", "1", "2"] and ds.image_shape == (2, 5, 5)
    assert torch.equal(ds.normalize(ds.images), images) and torch.equal(ds[3][0], images[3])
    assert ds.meta()["mean"] is None and ds.meta()["std"] is None
    original = toy(4)
    assert as_image_dataset(original) is original


def test_other_data_sets_are_read_once_with_their_class_names():
    class Named(torch.utils.data.Dataset):
        classes = ["zero", "one"]

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.full((1, 4, 4), float(i)), torch.tensor(i % 2)

    ds = as_image_dataset(Named())
    assert ds.classes == ["zero", "one"] and torch.equal(ds.labels, torch.tensor([0, 1, 0]))
    assert torch.equal(ds.images[:, 0, 0, 0], torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(UsageError, match=r"images differ in shape \(\(1, 4, 4\), \(1, 5, 5\), ...\)"):
        as_image_dataset([(torch.zeros(1, 4, 4), 0), (torch.zeros(1, 5, 5), 1)])


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


def test_batch_loader_with_pad_0_only_flips(toy):
    ds = toy(24)
    x, y = next(iter(BatchLoader(ds, batch_size=24, shuffle=False, augment=True, pad=0, seed=1)))
    plain = ds.normalize(ds.images)
    same = (x == plain).flatten(1).all(1)
    flipped = (x == plain.flip(-1)).flatten(1).all(1)
    assert bool((same | flipped).all()) and 0 < int(flipped.sum()) < 24 and torch.equal(y, ds.labels)


def test_batch_loader_covers_every_example_once_and_is_seeded(toy):
    ds = toy(23)
    loader = BatchLoader(ds, batch_size=5, shuffle=True, seed=3)
    labels = torch.cat([y for _, y in loader])
    assert len(loader) == 5 and torch.equal(labels.sort().values, ds.labels.sort().values)
    first = [x for x, _ in loader]
    assert all(torch.equal(a, b) for a, b in zip(first, [x for x, _ in loader], strict=True))  # same epoch
    loader.set_epoch(1)
    assert not torch.equal(first[0], next(iter(loader))[0])  # another epoch, another order
    assert len(BatchLoader(ds, 5, drop_last=True)) == 4


def test_sharded_batches_together_equal_the_combined_batch(toy):
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

    ds = data.from_torchvision(Pictures(), img_size=6, name="pictures")
    assert ds.images.shape == (4, 3, 6, 6) and ds.classes == ["dark", "bright"] and ds.name == "pictures"
    assert ds.images[3, 0, 0, 0] == 180 and torch.equal(ds.labels, torch.tensor([0, 1, 0, 1]))


def test_load_dataset_names_the_set_it_loaded(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (5, 5)).save(tmp_path / cls / "1.png")
    ds = data.load_dataset(f"folder:{tmp_path}")
    assert ds.name == f"folder:{tmp_path}" and ds.classes == ["cat", "dog"] and ds.meta()["image_shape"] == [3, 5, 5]


def test_unknown_dataset_name_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="unknown data set 'mnist3d'"):
        data.load_dataset("mnist3d")
    with pytest.raises(UsageError, match="image folder .* does not exist"):
        data.load_dataset(f"folder:{tmp_path / 'nowhere'}")
    with pytest.raises(UsageError, match=f"cannot load the image folder {tmp_path}"):
        data.load_dataset(f"folder:{tmp_path}")  # no class folders
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "1.png").write_text("not an image")
    with pytest.raises(UsageError, match=f"cannot load the image folder {tmp_path}"):
        data.load_dataset(f"folder:{tmp_path}")


def test_resized_keeps_labels_classes_and_brightness(toy):
    data = toy(n=8, size=8)
    big = data.resized(16)
    assert big.images.shape == (8, 1, 16, 16) and big.images.dtype == torch.uint8
    assert torch.equal(big.labels, data.labels) and big.classes == data.classes and big.mean == data.mean
    assert abs(big.images.float().mean() - data.images.float().mean()) < 2  # a resize, not a crop or a rescale


def test_resized_is_the_resize_of_a_plain_square_image(toy):
    """`resized` goes through `image_transform`; on square images that is torchvision's antialiased resize."""
    from torchvision.transforms import v2

    images = toy(n=4, size=28).images
    for size in (12, 32):
        assert torch.equal(data.image_transform(size=size)(images), v2.functional.resize(images, [size, size]))


def test_fashion_mnist_by_name_takes_an_image_size():
    ds = data.load_dataset("fashion_mnist", train=False, img_size=32)
    assert ds.image_shape == (1, 32, 32) and torch.equal(
        ds.images[:5], data.fashion_mnist(False).resized(32).images[:5]
    )


def test_image_transform_converts_resizes_and_centre_crops():
    from PIL import Image

    rgb = torch.randint(0, 256, (3, 10, 16), dtype=torch.uint8)
    gray = data.image_transform(channels=1, size=8)(rgb)
    assert gray.shape == (1, 8, 8) and gray.dtype == torch.uint8  # shorter side 10 -> 8, then the middle 8 columns
    assert data.image_transform(channels=3)(torch.zeros(1, 5, 5, dtype=torch.uint8)).shape == (3, 5, 5)
    assert data.image_transform(size=(4, 6))(Image.new("L", (12, 12))).shape == (1, 4, 6)
    with pytest.raises(UsageError, match="1 \\(grayscale\\) or 3 \\(RGB\\) channels, not 2"):
        data.image_transform(channels=2)


def test_preprocess_prepares_images_as_the_record_says(toy, tmp_path):
    """Image files of any size and mode, prepared like a data set's images: its channels, size, mean, std, classes."""
    from PIL import Image

    record = ImageTensorDataset(toy(3, size=6).images, [0, 1, 2], ["a", "b", "c"], (0.5,), (0.25,)).meta()
    Image.new("RGB", (9, 12), (200, 100, 0)).save(tmp_path / "x.png")
    Image.new("L", (6, 6), 50).save(tmp_path / "y.png")
    batch = data.preprocess([data.read_image(tmp_path / "x.png"), data.read_image(tmp_path / "y.png")], record)
    assert batch.meta() == record and batch.images.shape == (2, 1, 6, 6) and type(batch.images) is torch.Tensor
    assert torch.equal(batch.labels, torch.zeros(2, dtype=torch.int64))
    assert (batch.images[1].int() - 50).abs().max() <= 1  # gray -> RGB (read_image) -> gray
    same = data.preprocess(batch.images, record, batch.labels, ["p", "q", "r"], name="again")
    assert torch.equal(same.images, batch.images) and same.classes == ["p", "q", "r"] and same.name == "again"
    with pytest.raises(UsageError, match="no image file"):
        data.read_image(tmp_path / "z.png")
    (tmp_path / "notes.png").write_text("text")
    with pytest.raises(UsageError, match="not an image file PIL can read"):
        data.read_image(tmp_path / "notes.png")
