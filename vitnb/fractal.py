"""FractalDB-style pretraining data: formula-driven supervised learning (Kataoka et al., 2020).

A *category* is a random iterated function system (IFS): K affine maps w_k(p) = A_k p + b_k. Its attractor,
the unique set S with S = w_1(S) u ... u w_K(S), is a fractal, and we draw it with the "chaos game": start
anywhere, apply a randomly chosen map again and again (map k with probability p_k), and plot every point
visited after a short burn-in. *Instances* of a category are the same IFS with slightly jittered
parameters and a random horizontal flip, so a classifier has to learn the shape rather than the pixels.

Everything is vectorised: B systems x N chains run the chaos game in lockstep, and the visited points
are splatted into B canvases with one scatter_add_. Systems are stored padded to MAX_MAPS maps (the
padding has probability 0), so systems with different K share one tensor.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import UsageError
from .io import save_tensors

__all__ = [
    "BATCH",
    "BURN_IN",
    "CLIP_STD",
    "IFS",
    "ITERATIONS",
    "JITTER",
    "MARGIN",
    "MAX_LYAPUNOV",
    "MAX_MAPS",
    "MIN_MAPS",
    "NUM_POINTS",
    "SUPERSAMPLE",
    "WHITE_DENSITY",
    "dataset",
    "load_or_make_corpus",
    "make_corpus",
    "render",
    "sample_categories",
]

MIN_MAPS, MAX_MAPS = 2, 7
MAX_LYAPUNOV = -0.3  # keep systems whose random map products shrink by >= e^0.3 per step on average
JITTER = 0.1  # instances multiply every parameter by a factor in [1 - JITTER, 1 + JITTER]
NUM_POINTS, ITERATIONS = 64, 96  # chains per system x recorded steps per chain = 6144 points per image
BURN_IN = 16  # steps per chain not drawn, while the chains fall onto the attractor
SUPERSAMPLE = 2  # render at 2x the output size, then area-downsample for anti-aliasing
MARGIN = 0.06  # empty border around the attractor, as a fraction of the canvas side
CLIP_STD = 3.0  # the framing box is at most mean +- CLIP_STD standard deviations of the points
WHITE_DENSITY = 4.0  # a supersampled pixel is white at 4x the mean number of hits per pixel
BATCH = 256  # systems rendered together; fixed, so that results do not depend on the corpus size


@dataclass(frozen=True)
class IFS:
    """An iterated function system: map k sends p to weights[k] @ p + biases[k], with probability probs[k]."""

    weights: torch.Tensor  # (K, 2, 2)
    biases: torch.Tensor  # (K, 2)
    probs: torch.Tensor  # (K,)


def _random_systems(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n random padded systems: K ~ U{2..7}, all parameters ~ U[-1, 1], p_k proportional to |det A_k|.
    Returns weights (n, MAX_MAPS, 2, 2), biases (n, MAX_MAPS, 2), probs (n, MAX_MAPS)."""
    num_maps = torch.randint(MIN_MAPS, MAX_MAPS + 1, (n,), generator=generator)  # (n,)
    used = torch.arange(MAX_MAPS) < num_maps[:, None]  # (n, MAX_MAPS)
    weights = (torch.rand(n, MAX_MAPS, 2, 2, generator=generator) * 2 - 1) * used[..., None, None]
    biases = (torch.rand(n, MAX_MAPS, 2, generator=generator) * 2 - 1) * used[..., None]
    dets = torch.linalg.det(weights).abs()  # (n, MAX_MAPS), 0 for the padding
    return weights, biases, dets / dets.sum(1, keepdim=True)


def _stack(systems: list[IFS]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """list of IFS -> padded weights (B, MAX_MAPS, 2, 2), biases (B, MAX_MAPS, 2), probs (B, MAX_MAPS)."""
    pad = [MAX_MAPS - len(s.probs) for s in systems]
    weights = torch.stack([F.pad(s.weights, (0, 0, 0, 0, 0, p)) for s, p in zip(systems, pad, strict=True)])
    biases = torch.stack([F.pad(s.biases, (0, 0, 0, p)) for s, p in zip(systems, pad, strict=True)])
    probs = torch.stack([F.pad(s.probs, (0, p)) for s, p in zip(systems, pad, strict=True)])
    return weights, biases, probs


def _lyapunov(
    weights: torch.Tensor, probs: torch.Tensor, generator: torch.Generator, chains: int = 32, steps: int = 100
) -> torch.Tensor:
    """Estimate each system's top Lyapunov exponent: the mean log-stretch per step of a random product
    A_{k_t} ... A_{k_1}, k ~ probs. Below 0 the chains contract onto a bounded attractor; above 0 they
    drift off to infinity. weights (B, K, 2, 2), probs (B, K) -> (B,)."""
    B = weights.shape[0]
    v = torch.full((B, chains, 2), 2**-0.5)  # (B, C, 2) unit vectors
    log_stretch = torch.zeros(B, chains)  # (B, C)
    for _ in range(steps):
        k = torch.multinomial(probs, chains, replacement=True, generator=generator)  # (B, C)
        v = (weights[torch.arange(B)[:, None], k] @ v[..., None]).squeeze(-1)  # (B, C, 2)
        norm = v.norm(dim=-1).clamp_min(1e-30)  # (B, C); the floor keeps a collapsed vector finite
        log_stretch += norm.log()
        v = v / norm[..., None]
    return log_stretch.mean(1) / steps


def _render(
    weights: torch.Tensor,
    biases: torch.Tensor,
    probs: torch.Tensor,
    img_size: int,
    num_points: int,
    iterations: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The chaos game for B padded systems -> uint8 images (B, 1, img_size, img_size); see render()."""
    B, K, N = *probs.shape, num_points
    # x' = a x + b y + e, y' = c x + d y + f: column k of system b holds its map k
    coef = torch.cat([weights.flatten(2), biases], 2).permute(2, 0, 1).reshape(6, B * K)  # (6, B*K)
    # Pick maps by inverse CDF, k = number of cdf edges <= u: a few compares per point, cheaper than
    # torch.multinomial. The last edge is exactly 1 > u, so zero-probability padding is never chosen.
    cdf = probs.cumsum(1)
    cdf = (cdf / cdf[:, -1:])[:, :-1].contiguous()  # (B, K-1)
    first_map = (torch.arange(B, dtype=torch.int32) * K)[:, None].expand(B, N)  # (B, N) column of map 0

    # positions after every step; step t reads row t - 1, and all chains start at the origin
    points = torch.empty(1 + BURN_IN + iterations, 2, B, N)
    points[0] = 0
    for t in range(1, len(points)):
        u = torch.rand(B, N, generator=generator)  # (B, N)
        k = first_map.clone()  # (B, N)
        for j in range(K - 1):
            k += u >= cdf[:, j : j + 1]
        a, b, c, d, e, f = coef.index_select(1, k.view(-1)).view(6, B, N)  # each (B, N)
        x, y = points[t - 1]
        torch.addcmul(torch.addcmul(e, a, x), b, y, out=points[t, 0])  # x' = a x + b y + e
        torch.addcmul(torch.addcmul(f, c, x), d, y, out=points[t, 1])  # y' = c x + d y + f
    points = points[1 + BURN_IN :]  # (T, 2, B, N)

    # Fit each point cloud into its canvas, keeping the aspect ratio. The raw bounding box is set by a few
    # rare points at the tips of thin spikes, so it changes from run to run; clipping it to mean +- 3 std
    # frames every rendering of a system alike. Clipped points land on a 1-pixel frame around the
    # canvas, which is cropped away at the end.
    S, W = img_size * SUPERSAMPLE, img_size * SUPERSAMPLE + 2  # canvas side, side with the frame
    std, mean = torch.std_mean(points[::4], (0, 3))  # (2, B); every 4th step is plenty for these
    lo = torch.maximum(points.amin((0, 3)), mean - CLIP_STD * std)  # (2, B)
    hi = torch.minimum(points.amax((0, 3)), mean + CLIP_STD * std)  # (2, B)
    scale = (1 - 2 * MARGIN) * (S - 1) / (hi - lo).amax(0).clamp_min(1e-8)  # (B,)
    shift = W / 2 - (lo + hi) / 2 * scale  # (2, B) moves the box centre to the canvas centre
    points.mul_(scale[:, None]).add_(shift[..., None]).clamp_(0, W - 1)  # in place: points is large
    pixel = points[:, 1].floor() * W + points[:, 0].floor_()  # (T, B, N) row-major index in a canvas
    pixel = pixel.long() + torch.arange(B)[:, None] * W * W  # index into B canvases laid end to end
    hits = torch.zeros(B * W * W).scatter_add_(0, pixel.view(-1), torch.ones(()).expand(pixel.numel()))
    hits = hits.view(B, 1, W, W)[..., 1:-1, 1:-1]  # (B, 1, S, S) without the frame
    canvas = (hits / (WHITE_DENSITY * iterations * N / S**2)).clamp_(max=1)  # hit density, saturated
    return (F.avg_pool2d(canvas, SUPERSAMPLE) * 255).round_().to(torch.uint8)


def render(
    systems: list[IFS],
    img_size: int = 28,
    num_points: int = NUM_POINTS,
    iterations: int = ITERATIONS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw the attractor of every system with the chaos game, BATCH systems at a time.

    Each system runs num_points chains for BURN_IN + iterations steps; the num_points * iterations points
    after the burn-in are counted on a SUPERSAMPLE x larger canvas, which is area-downsampled. The shade of
    a pixel is its hit density, saturated. Returns uint8 images (B, 1, img_size, img_size) in 0..255.
    """
    images = [
        _render(*_stack(systems[i : i + BATCH]), img_size, num_points, iterations, generator)
        for i in range(0, len(systems), BATCH)
    ]
    return torch.cat(images)


def sample_categories(
    num_classes: int,
    seed: int | torch.Generator,
    min_fill: float = 0.1,
    max_tries: int = 100_000,
    img_size: int = 28,
) -> list[IFS]:
    """Search for num_classes random IFS that converge (estimated Lyapunov exponent < MAX_LYAPUNOV) and
    whose img_size rendering lights at least a min_fill fraction of the pixels.

    Candidates come in fixed-size batches from a generator seeded with seed (or from seed itself, if it
    is a torch.Generator), so the result is deterministic and a longer search extends a shorter one.
    Raises RuntimeError after max_tries candidates.
    """
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    categories: list[IFS] = []
    tries = 0
    while len(categories) < num_classes:
        if tries >= max_tries:
            raise RuntimeError(f"found only {len(categories)}/{num_classes} categories in {tries} tries")
        weights, biases, probs = _random_systems(BATCH, generator)
        tries += BATCH
        ok = _lyapunov(weights, probs, generator) < MAX_LYAPUNOV  # (BATCH,)
        weights, biases, probs = weights[ok], biases[ok], probs[ok]
        images = _render(weights, biases, probs, img_size, NUM_POINTS, ITERATIONS, generator)
        ok = (images > 0).flatten(1).float().mean(1) >= min_fill
        for w, b, p in zip(weights[ok], biases[ok], probs[ok], strict=True):
            K = int((p > 0).sum())  # the padding comes last
            categories.append(IFS(w[:K].clone(), b[:K].clone(), p[:K].clone()))
    return categories[:num_classes]


def make_corpus(
    num_classes: int, per_class: int, img_size: int = 28, seed: int = 0, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """per_class jittered, randomly flipped instances of each of num_classes categories.

    An instance multiplies every weight and bias of its category by its own factor in
    [1 - JITTER, 1 + JITTER]; the map probabilities are part of the category and stay fixed.
    Returns images uint8 (N, 1, img_size, img_size) and labels int64 (N,), ordered by class.
    """
    _check_args(num_classes=num_classes, per_class=per_class, img_size=img_size, seed=seed)
    generator = torch.Generator().manual_seed(seed)  # the category search, then the instances
    weights, biases, probs = _stack(sample_categories(num_classes, generator, img_size=img_size))
    labels = torch.arange(num_classes).repeat_interleave(per_class)  # (N,)
    images = []
    for i in tqdm(range(0, len(labels), BATCH), desc="fractals", disable=not progress):
        y = labels[i : i + BATCH]  # (B,)
        w = weights[y] * (1 + JITTER * (2 * torch.rand(len(y), MAX_MAPS, 2, 2, generator=generator) - 1))
        b = biases[y] * (1 + JITTER * (2 * torch.rand(len(y), MAX_MAPS, 2, generator=generator) - 1))
        x = _render(w, b, probs[y], img_size, NUM_POINTS, ITERATIONS, generator)  # (B, 1, H, W)
        flip = torch.rand(len(y), generator=generator) < 0.5  # (B,)
        images.append(torch.where(flip[:, None, None, None], x.flip(-1), x))
    return torch.cat(images), labels


def _check_args(**args: int) -> None:
    """Raise a UsageError unless every argument is a positive int (seed may also be 0)."""
    for name, value in args.items():
        smallest = 0 if name == "seed" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < smallest:
            raise UsageError(f"{name} must be an int >= {smallest}, got {value!r}")


def load_or_make_corpus(
    root: str | os.PathLike, num_classes: int, per_class: int, img_size: int = 28, seed: int = 0, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """make_corpus(), cached in root/fractal_{num_classes}x{per_class}_{img_size}px_seed{seed}.pt."""
    _check_args(num_classes=num_classes, per_class=per_class, img_size=img_size, seed=seed)
    path = Path(root) / f"fractal_{num_classes}x{per_class}_{img_size}px_seed{seed}.pt"
    if path.exists():
        data = torch.load(path, weights_only=True)
        return data["images"], data["labels"]
    images, labels = make_corpus(num_classes, per_class, img_size, seed, progress)
    save_tensors(path, {"images": images, "labels": labels})  # atomic, and safe from several processes at once
    return images, labels


def dataset(
    num_classes: int,
    per_class: int,
    img_size: int = 28,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    progress: bool = True,
):
    """The corpus (cached under `root`/fractal, default the data root) as an `ImageTensorDataset` named
    'fractal', with classes 'ifs0', 'ifs1', ... and normalised by its own per-channel mean and std."""
    from .data import ImageTensorDataset, data_root

    root = Path(root) if root is not None else data_root()
    images, labels = load_or_make_corpus(root / "fractal", num_classes, per_class, img_size, seed, progress)
    x = images.float() / 255  # (N, 1, H, W)
    mean, std = tuple(x.mean((0, 2, 3)).tolist()), tuple(x.std((0, 2, 3)).tolist())
    return ImageTensorDataset(images, labels, [f"ifs{c}" for c in range(num_classes)], mean, std, "fractal")
