import math

import pytest
import torch

from vitnb import fractal
from vitnb.fractal import IFS, load_or_make_corpus, make_corpus, render, sample_categories


@pytest.fixture(scope="module")
def categories() -> list[IFS]:
    return sample_categories(40, seed=0)


def lit_fraction(images: torch.Tensor) -> torch.Tensor:
    return (images > 0).flatten(1).float().mean(1)  # (B,)


def correlations(images: torch.Tensor) -> torch.Tensor:
    """Pearson correlation between every pair of images: (B, 1, H, W) -> (B, B)."""
    z = images.flatten(1).float()
    z = z - z.mean(1, keepdim=True)
    z = z / z.norm(dim=1, keepdim=True)
    return z @ z.T


def test_category_search_is_deterministic_and_extends(categories):
    shorter = sample_categories(12, seed=0)  # the same search, stopped earlier
    for a, b in zip(categories[:12], shorter, strict=True):
        assert torch.equal(a.weights, b.weights) and torch.equal(a.biases, b.biases)
        assert torch.equal(a.probs, b.probs)


def test_different_seeds_give_different_data(categories):
    assert not torch.equal(categories[0].weights, sample_categories(1, seed=1)[0].weights)
    images0, _ = make_corpus(3, 4, seed=0, progress=False)
    images1, _ = make_corpus(3, 4, seed=1, progress=False)
    assert not torch.equal(images0, images1)


def test_category_parameters(categories):
    assert len(categories) == 40
    assert len({len(c.probs) for c in categories}) > 1  # the number of maps varies
    for c in categories:
        K = len(c.probs)
        assert 2 <= K <= 7
        assert c.weights.shape == (K, 2, 2) and c.biases.shape == (K, 2)
        assert c.weights.abs().max() <= 1 and c.biases.abs().max() <= 1
        dets = torch.linalg.det(c.weights).abs()
        assert c.probs.sum().item() == pytest.approx(1, abs=1e-6)
        torch.testing.assert_close(c.probs, dets / dets.sum())


def test_lyapunov_exponent_of_known_systems():
    # isotropic maps stretch every vector by s_k, so the exponent is sum_k p_k log s_k
    weights = torch.stack([torch.eye(2) * 0.5, torch.eye(2) * 1.2, torch.tensor([[1.0, 1.0], [-1.0, 1.0]])])
    probs = torch.tensor([[0.7, 0.3, 0.0], [0.2, 0.8, 0.0], [0.0, 0.0, 1.0]])
    expected = torch.tensor(
        [
            0.7 * math.log(0.5) + 0.3 * math.log(1.2),
            0.2 * math.log(0.5) + 0.8 * math.log(1.2),
            math.log(math.sqrt(2)),  # a rotation scaled by sqrt(2) blows up
        ]
    )
    found = fractal._lyapunov(weights.expand(3, 3, 2, 2), probs, torch.Generator().manual_seed(0), chains=256)
    torch.testing.assert_close(found, expected, atol=0.02, rtol=0)


def test_categories_converge(categories):
    weights, _, probs = fractal._stack(categories)
    found = fractal._lyapunov(weights, probs, torch.Generator().manual_seed(1), chains=128)
    assert (found < fractal.MAX_LYAPUNOV + 0.1).all()


def test_every_category_meets_min_fill():
    categories = sample_categories(30, seed=2, min_fill=0.2)
    # a fresh chaos game (with more points, to see the whole attractor) can still miss a few stray pixels
    images = render(categories, num_points=256, generator=torch.Generator().manual_seed(0))
    assert (lit_fraction(images) >= 0.2 - 0.02).all()


def test_render_output(categories):
    images = render(categories[:10], img_size=20, generator=torch.Generator().manual_seed(0))
    assert images.dtype == torch.uint8 and images.shape == (10, 1, 20, 20)
    assert (images.flatten(1).amax(1) >= 128).all()  # every image has a bright part ...
    assert (images.flatten(1).amin(1) == 0).all()  # ... and a black background


def test_render_sierpinski_triangle():
    # p -> (p + v) / 2 for the corners v of a triangle draws the Sierpinski triangle
    corners = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 1.0]])
    sierpinski = IFS(torch.eye(2).expand(3, 2, 2) / 2, corners / 2, torch.full((3,), 1 / 3))
    image = render([sierpinski], img_size=64, generator=torch.Generator().manual_seed(0))[0, 0]  # (H, W)

    def pixel(x: float, y: float) -> int:
        # the box [0, 1]^2 is centred on the canvas and scaled to 1 - 2 MARGIN of it; rows follow y
        S = 64 * fractal.SUPERSAMPLE
        to_px = lambda v: int((S / 2 + (v - 0.5) * (1 - 2 * fractal.MARGIN) * (S - 1)) / fractal.SUPERSAMPLE)
        return int(image[to_px(y), to_px(x)])

    assert pixel(0.5, 1 / 3) == 0  # the big hole in the middle
    assert pixel(0.25, 1 / 6) == pixel(0.75, 1 / 6) == pixel(0.5, 2 / 3) == 0  # the three smaller holes
    assert pixel(0.01, 0.005) > 0 and pixel(0.99, 0.005) > 0 and pixel(0.5, 0.99) > 0  # the corners
    # the triangle covers (1 - 2 MARGIN)^2 / 2 = 39% of the canvas and its holes more than a quarter of that
    assert 0.1 < lit_fraction(image[None, None]).item() < 0.75 * 0.39


def test_corpus_is_deterministic_with_sorted_labels():
    images, labels = make_corpus(5, 6, img_size=24, seed=3, progress=False)
    again, _ = make_corpus(5, 6, img_size=24, seed=3, progress=False)
    assert images.dtype == torch.uint8 and images.shape == (30, 1, 24, 24)
    assert labels.dtype == torch.int64 and torch.equal(labels, torch.arange(5).repeat_interleave(6))
    assert torch.equal(images, again)


def test_instances_resemble_their_category():
    images, labels = make_corpus(12, 10, seed=0, progress=False)
    same = labels[:, None] == labels[None]
    other = torch.eye(len(labels), dtype=torch.bool)
    corr = correlations(images)
    assert corr[same & ~other].mean() > corr[~same].mean() + 0.1
    # nearest neighbour (up to the random flip) is nearly always an instance of the same category
    flipped = correlations(torch.cat([images, images.flip(-1)]))[: len(images), len(images) :]  # (N, N)
    corr = torch.maximum(corr, flipped)
    nearest = corr.masked_fill(other, -2).argmax(1)
    assert (labels[nearest] == labels).float().mean() >= 0.9


def test_cache_round_trip(tmp_path, monkeypatch):
    images, labels = load_or_make_corpus(tmp_path, 3, 4, img_size=16, seed=5)
    assert [p.name for p in tmp_path.iterdir()] == ["fractal_3x4_16px_seed5.pt"]  # no temp file left over

    def fail(*args, **kwargs):
        raise AssertionError("the second call should load the cache")

    monkeypatch.setattr(fractal, "make_corpus", fail)
    cached_images, cached_labels = load_or_make_corpus(tmp_path, 3, 4, img_size=16, seed=5)
    assert torch.equal(images, cached_images) and torch.equal(labels, cached_labels)


BAD_ARGS = [
    {"num_classes": 0},
    {"per_class": -3},
    {"img_size": 2.5},
    {"num_classes": "4"},
    {"per_class": True},
    {"seed": -1},
]


@pytest.mark.parametrize("bad", BAD_ARGS)
def test_bad_arguments_raise(tmp_path, bad):
    args = {"num_classes": 3, "per_class": 4, "img_size": 16, "seed": 0} | bad
    ((name, value),) = bad.items()
    with pytest.raises(ValueError, match=f"{name}.*{value!r}"):
        load_or_make_corpus(tmp_path, **args)
    assert not any(tmp_path.iterdir())
