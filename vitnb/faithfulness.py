"""Faithfulness of importance maps: do the patches a map ranks first carry the model's decision?

An importance map (`vitnb.importance`) scores every patch of an image (B, h, w). Two curves test it
(Petsiuk et al. 2018):
- deletion: replace the patches with a baseline canvas, most important first, k at a time, and track the
  model's probability of the true class; a faithful map makes it fall fast (small area under the curve);
- insertion: start from the canvas and reveal the patches, most important first; a faithful map makes the
  probability rise fast (large area).

    curves, x = faithfulness_curves(model, test_set, n_images=500)  # per method, (500, steps + 1) each
    rows = faithfulness_summary(curves, x)  # per method: mean, sem, std of both areas, n
    ranked = compare_methods(curves, x, "deletion")  # best first, paired differences, share of the gap

The gradient maps measure each pixel against the canvas the curves delete to and insert on (`curve_canvas`);
`faithfulness_curves` passes it to them as `canvas=`, for black and for blurred canvases alike.
Two numbers measured on the same images are compared image by image: `paired_difference(a, b)` gives the mean
of a - b and its standard error, `versus_reference` does so for every map against the random order, and
`more_than_chance` says whether a per-image share (e.g. of background among a map's top patches) clearly
differs from its chance level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from einops import reduce, repeat
from torch import nn
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from .data import as_image_dataset
from .errors import UsageError
from .importance import METHODS, importance_map
from .interface import check_data
from .rollout import TokenLayout
from .runtime import eval_mode, model_device

__all__ = [
    "CURVES",
    "Baseline",
    "Curve",
    "PairedDifference",
    "area_under_curve",
    "baseline_canvas",
    "compare_methods",
    "curve_canvas",
    "end_probabilities",
    "faithfulness_curves",
    "faithfulness_summary",
    "faithfulness_table",
    "foreground_patches",
    "foreground_share",
    "fractions",
    "more_than_chance",
    "paired_difference",
    "perturbation_curve",
    "versus_reference",
]

Baseline = Literal["blank", "blur"]
Curve = Literal["deletion", "insertion"]
CURVES: tuple[Curve, ...] = ("deletion", "insertion")


def _check_curve(curve: str) -> None:
    if curve not in CURVES:
        raise UsageError(f"curve must be 'deletion' or 'insertion', got {curve!r}")


# --- deletion and insertion curves ---------------------------------------------------------------------
def foreground_patches(images: torch.Tensor, grid_size: tuple[int, int], threshold: float = 0.1) -> torch.Tensor:
    """(B, h * w) bool: which patches of `images` (B, C, H, W), scaled to [0, 1] on a black background (as
    Fashion-MNIST's), hold foreground, i.e. a pixel brighter than `threshold`. Patches in row-major order."""
    gh, gw = grid_size
    if images.shape[-2] % gh or images.shape[-1] % gw:
        raise UsageError(f"a {gh}x{gw} grid does not tile images {tuple(images.shape)} into whole patches")
    return reduce(images, "b c (h p1) (w p2) -> b (h w)", "max", h=gh, w=gw) > threshold


def foreground_share(maps: torch.Tensor, images: torch.Tensor, k: int, threshold: float = 0.1) -> torch.Tensor:
    """Per image, the share of a map's `k` top-ranked patches that hold foreground (`foreground_patches`:
    a pixel brighter than `threshold`, with `images` (B, C, H, W) scaled to [0, 1] on a black background).

    `maps` (B, h, w) on the images' patch grid. Returns (B,) in [0, 1]. A map that ranks background patches first
    scores low, and deleting or revealing such patches on a black canvas changes nothing.
    """
    b, gh, gw = maps.shape
    if images.shape[0] != b or images.shape[-2] % gh or images.shape[-1] % gw:
        raise UsageError(f"maps {tuple(maps.shape)} do not tile images {tuple(images.shape)} into whole patches")
    ink = foreground_patches(images, (gh, gw), threshold)  # (B, N)
    top = maps.flatten(1).topk(k, dim=1).indices  # (B, k)
    return ink.gather(1, top).float().mean(dim=1)


def baseline_canvas(
    images: torch.Tensor, baseline: Baseline, *, blank: float | Sequence[float] = 0.0, sigma: float = 4.0
) -> torch.Tensor:
    """The canvas (B, C, H, W) that deleted patches show and inserted patches are revealed on.

    'blank': every pixel is `blank`, one value or one per channel: pass the normalised value of a black
    pixel (`dataset.normalize` of 0), so the canvas is a black image as the model sees it.
    'blur': a Gaussian blur of each image, `sigma` in pixels; the curves use one patch's side, which wipes
    out detail at the scale of a patch. The kernel spans +-3 sigma, cut to fit the image.
    """
    if baseline == "blank":
        value = torch.as_tensor(blank, dtype=images.dtype, device=images.device).reshape(1, -1, 1, 1)
        if value.shape[1] not in (1, images.shape[1]):
            raise UsageError(f"blank needs one value or one per channel ({images.shape[1]}), got {value.shape[1]}")
        return value.expand_as(images).clone()
    if baseline == "blur":
        size = min(2 * math.ceil(3 * sigma) + 1, 2 * min(images.shape[-2:]) - 1)  # odd, fits the image
        return TF.gaussian_blur(images, kernel_size=[size, size], sigma=[float(sigma)] * 2)
    raise UsageError(
        f"baseline must be 'blank' or 'blur' (or a canvas tensor shaped like the images), got {baseline!r}"
    )


def curve_canvas(
    model: nn.Module,
    images: torch.Tensor,
    baseline: Baseline | torch.Tensor = "blank",
    *,
    blank: float | Sequence[float] = 0.0,
) -> torch.Tensor:
    """The canvas (B, C, H, W) that `perturbation_curve` deletes to and inserts on, for `model`'s patch grid.

    `baseline_canvas(images, baseline, blank=blank, sigma=<one patch's side in pixels>)`, or a canvas tensor
    as given (broadcast to the images). Pass it as `canvas=` to the gradient maps, so they measure the
    image against the same reference the curves use.
    """
    if isinstance(baseline, torch.Tensor):
        return baseline.to(images.device).expand_as(images)
    gh, gw = TokenLayout.of(model).grid_size
    if images.shape[-2] % gh or images.shape[-1] % gw:
        raise UsageError(
            f"images of {images.shape[-2]}x{images.shape[-1]} pixels do not split into the model's {gh}x{gw} patch grid"
        )
    return baseline_canvas(images, baseline, blank=blank, sigma=images.shape[-2] // gh)


def fractions(num_patches: int, k: int) -> torch.Tensor:
    """x positions of the curves (steps + 1,): the fraction of patches changed at steps 0, k, 2k, ..., N."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"k (patches changed per step) must be a positive int, got {k!r}")
    counts = list(range(0, num_patches, k)) + [num_patches]
    return torch.tensor(counts, dtype=torch.float64) / num_patches


def _true_class_probability(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, chunk_size: int):
    """softmax(model(images))[label] (B,), with the model run on chunks of `chunk_size` images."""
    probs = []
    for i in range(0, len(images), chunk_size):
        logits = model(images[i : i + chunk_size])  # (chunk, classes)
        probs.append(logits.softmax(dim=-1).gather(1, labels[i : i + chunk_size, None])[:, 0])
    return torch.cat(probs)


def perturbation_curve(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor,
    curve: Curve,
    *,
    k: int = 1,
    baseline: Baseline | torch.Tensor = "blank",
    blank: float | Sequence[float] = 0.0,
    chunk_size: int = 256,
    ends: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probability of the true class as the most important patches are deleted or inserted, k per step.

    curve='deletion': the patches are replaced by the baseline canvas (step 0: the image; last: the canvas).
    curve='insertion': they are revealed on the canvas (step 0: the canvas; last: the whole image).
    `images` (B, C, H, W) normalised, `labels` (B,), `scores` (B, h, w) or (B, N) on the model's
    patch grid. Patches go in descending order of importance (ties: lower index first). `baseline` is
    'blank', 'blur' (see `baseline_canvas`, with `blank` the normalised black) or a canvas tensor
    broadcastable to `images`. Returns curves (B, steps + 1), at steps 0, k, 2k, ..., N patches changed,
    and x (steps + 1,), the fraction of patches changed. All variants of a chunk of steps are built
    with one `torch.where`; the model runs on chunks of `chunk_size` images, in eval mode, without gradients.
    `ends` = (probability on the images, probability on the canvas), each (B,), when already known (they
    are the same for every map, see `end_probabilities`): the curve's first and last steps, not recomputed.
    """
    _check_curve(curve)
    insert = curve == "insertion"
    b, c, height, width = images.shape
    gh, gw = TokenLayout.of(model).grid_size
    if height % gh or width % gw:
        raise UsageError(f"images of {height}x{width} pixels do not split into the model's {gh}x{gw} patch grid")
    ph, pw = height // gh, width // gw
    scores = scores.reshape(b, -1)  # (B, N)
    if scores.shape[1] != gh * gw:
        raise UsageError(f"importance maps have {scores.shape[1]} entries per image, the model {gh}x{gw} patches")
    labels = torch.as_tensor(labels, device=images.device)
    canvas = curve_canvas(model, images, baseline, blank=blank)  # (B, C, H, W)
    # place of each patch in its image's order, most important first (ties: lower patch index first)
    order = scores.argsort(dim=1, descending=True, stable=True)  # (B, N)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(gh * gw, device=order.device).expand(b, -1))
    pixel_rank = repeat(rank, "b (h w) -> b 1 (h ph) (w pw)", h=gh, ph=ph, pw=pw)  # (B, 1, H, W)
    x = fractions(gh * gw, k)
    counts = (x * gh * gw).round().long().to(images.device)  # (S,) patches changed at each step
    if ends is not None:
        counts = counts[1:-1]  # the first and last steps are known
    steps_per_chunk = max(1, chunk_size // b)
    probs = []
    with eval_mode(model), torch.inference_mode():
        for start in range(0, len(counts), steps_per_chunk):
            changed = pixel_rank < counts[start : start + steps_per_chunk, None, None, None, None]  # (s, B, 1, H, W)
            variants = torch.where(changed, images, canvas) if insert else torch.where(changed, canvas, images)
            p = _true_class_probability(model, variants.flatten(0, 1), labels.repeat(len(variants)), chunk_size)
            probs.append(p.reshape(-1, b))  # (s, B)
    if ends is not None:
        on_images, on_canvas = (e.to(images.device).reshape(1, b) for e in ends)
        first, last = (on_canvas, on_images) if insert else (on_images, on_canvas)
        probs = [first, *probs, last]
    return torch.cat(probs).T, x  # (B, S), (S,)


def end_probabilities(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    baseline: Baseline | torch.Tensor = "blank",
    blank: float | Sequence[float] = 0.0,
    chunk_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(probability of the true class on the images, on the baseline canvas), each (B,): the two ends that
    every deletion and insertion curve shares, whatever the map; pass them to `perturbation_curve(ends=...)`."""
    canvas = curve_canvas(model, images, baseline, blank=blank)  # (B, C, H, W)
    labels = torch.as_tensor(labels, device=images.device)
    with eval_mode(model), torch.inference_mode():
        both = _true_class_probability(model, torch.cat([images, canvas]), labels.repeat(2), chunk_size)
    return both[: len(images)], both[len(images) :]


def area_under_curve(curves: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, S) curves over x (S,) in [0, 1] -> (B,) trapezoid areas; in [0, 1] for probabilities."""
    return torch.trapezoid(curves.double(), x.double().to(curves.device), dim=-1)


# --- over a data set -----------------------------------------------------------------------------------
def faithfulness_curves(
    model: nn.Module,
    data,
    methods: Sequence[str] = tuple(METHODS),
    *,
    n_images: int | None = 500,
    batch_size: int = 100,
    k: int = 1,
    baseline: Baseline = "blank",
    seed: int = 0,
    chunk_size: int = 256,
    progress: bool = True,
) -> tuple[dict[str, dict[str, torch.Tensor]], torch.Tensor]:
    """Deletion and insertion curves of every method on the first `n_images` images of `data` (None: all).

    `data`: an `ImageTensorDataset` (its `normalize` prepares the images; blank = its normalised black
    pixel), or (images, labels) tensors / any data set `as_image_dataset` takes (images used as given;
    blank = 0). `baseline` 'blank' or 'blur' (`curve_canvas`): the canvas is built once per batch, and the
    gradient maps use it as their reference. Returns `({method: {"deletion": (n, S), "insertion": (n, S)}},
    x (S,))` on the CPU; `seed` seeds the 'random' order. A tqdm bar counts the batches when `progress` is set.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(f"methods must be a non-empty selection of {list(METHODS)}, got {list(methods)}")
    dataset = as_image_dataset(torch.utils.data.TensorDataset(*data) if isinstance(data, tuple | list) else data)
    check_data(model, dataset, "data set")
    n = len(dataset) if n_images is None else n_images
    if not 1 <= n <= len(dataset):
        raise UsageError(f"n_images={n_images} but the data set has {len(dataset)} images; pass 1..{len(dataset)}")
    device = model_device(model)
    black = dataset.normalize(torch.zeros((1, dataset.images.shape[1], 1, 1), dtype=dataset.images.dtype))
    blank = black.flatten().tolist()
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, dict[str, list[torch.Tensor]]] = {m: {curve: [] for curve in CURVES} for m in methods}
    x = None
    for start in tqdm(range(0, n, batch_size), desc="faithfulness", unit="batch", disable=not progress):
        stop = min(start + batch_size, n)
        images = dataset.normalize(dataset.images[start:stop]).to(device)  # (B, C, H, W)
        labels = dataset.labels[start:stop].to(device)  # (B,)
        canvas = curve_canvas(model, images, baseline, blank=blank)  # (B, C, H, W): the curves' reference
        ends = end_probabilities(model, images, labels, baseline=canvas, chunk_size=chunk_size)  # same for every map
        for method in methods:
            scores = importance_map(method, model, images, labels, canvas=canvas, generator=generator)  # (B, h, w)
            for curve in CURVES:
                curves, x = perturbation_curve(
                    model, images, labels, scores, curve, k=k, baseline=canvas, chunk_size=chunk_size, ends=ends
                )  # (B, S)
                parts[method][curve].append(curves.cpu())
    curves_by_method = {m: {curve: torch.cat(c) for curve, c in both.items()} for m, both in parts.items()}
    return curves_by_method, x


def faithfulness_summary(curves_by_method: dict[str, dict[str, torch.Tensor]], x: torch.Tensor) -> list[dict]:
    """One plain dict per method: mean, standard error and standard deviation (n - 1) over the images of the
    areas under the deletion and insertion curves, and n, the number of images.

    Keys: method, deletion_auc_mean, deletion_auc_sem, deletion_auc_std, insertion_auc_mean,
    insertion_auc_sem, insertion_auc_std, n. Deletion: lower is more faithful; insertion: higher.
    """
    rows = []
    for method, curves in curves_by_method.items():
        row: dict = {"method": method}
        for curve in CURVES:
            areas = area_under_curve(curves[curve], x)  # (n,)
            std = areas.std().item() if len(areas) > 1 else float("nan")
            row |= {
                f"{curve}_auc_mean": areas.mean().item(),
                f"{curve}_auc_sem": std / math.sqrt(len(areas)),
                f"{curve}_auc_std": std,
            }
        row["n"] = len(curves["deletion"])
        rows.append(row)
    return rows


def faithfulness_table(model: nn.Module, data, methods: Sequence[str] = tuple(METHODS), **options) -> list[dict]:
    """`faithfulness_summary` of `faithfulness_curves` (same arguments: n_images, batch_size, k, baseline,
    seed, chunk_size, progress): one row per method, when the curves themselves are not needed."""
    return faithfulness_summary(*faithfulness_curves(model, data, methods, **options))


def compare_methods(
    curves_by_method: dict[str, dict[str, torch.Tensor]],
    x: torch.Tensor,
    curve: Curve,
    reference: str | None = "random",
) -> list[dict]:
    """The methods ranked for one curve, most faithful first (deletion: smallest area; insertion: largest).

    One dict per method: `method`, `area` (mean over the images), `behind` (how far its area is from the
    best method's, in the unfaithful direction: >= 0), `behind_sem` (standard error of that difference,
    paired: both areas come from the same images, so image-to-image spread cancels; nan for the best and
    for a single image) and `gap_closed` (the share of the distance from `reference`'s area to the best
    area that the method covers: 1 for the best, 0 for no better than the reference; None without one).
    """
    _check_curve(curve)
    if reference is not None and reference not in curves_by_method:
        raise UsageError(f"reference {reference!r} is not among the methods {list(curves_by_method)}")
    sign = 1.0 if curve == "deletion" else -1.0  # lower deletion area, higher insertion area is better
    areas = {m: area_under_curve(c[curve], x) for m, c in curves_by_method.items()}  # method -> (n,)
    ranked = sorted(areas, key=lambda m: sign * areas[m].mean().item())
    best = areas[ranked[0]]
    rows = []
    for method in ranked:
        row = {"method": method, "area": areas[method].mean().item(), "behind": 0.0, "behind_sem": float("nan")}
        if method != ranked[0]:
            if len(best) > 1:  # paired per image, in the unfaithful direction
                behind = paired_difference(sign * areas[method], sign * best)
                row |= {"behind": behind.mean, "behind_sem": behind.sem}
            else:
                row["behind"] = sign * (areas[method] - best).item()
        gap_closed = None
        if reference is not None:
            span = sign * (areas[reference].mean() - best.mean()).item()
            gap_closed = 1.0 - row["behind"] / span if span > 0 else float("nan")
        rows.append(row | {"gap_closed": gap_closed})
    return rows


@dataclass(frozen=True)
class PairedDifference:
    """The mean of a per-image difference a - b over n images and its standard error (`paired_difference`).

    The standard error is the differences' standard deviation (n - 1) over sqrt(n): roughly how far the mean
    would move on another n images. `str()` gives '+0.046 ± 0.023'.
    """

    mean: float
    sem: float
    n: int

    def direction(self, z: float = 2.0) -> int:
        """+1 or -1 when the mean lies clearly above or below 0, by more than `z` standard errors; else 0."""
        return 1 if self.mean > z * self.sem else (-1 if self.mean < -z * self.sem else 0)

    @property
    def z(self) -> float:
        """The mean in standard errors (inf when the differences do not vary and the mean is not 0)."""
        if self.sem > 0:
            return self.mean / self.sem
        return 0.0 if self.mean == 0 else math.copysign(math.inf, self.mean)

    def __str__(self) -> str:
        return f"{self.mean:+.3f} ± {self.sem:.3f}"


def paired_difference(a: torch.Tensor, b: torch.Tensor) -> PairedDifference:
    """Mean and standard error of a - b, where `a` and `b` (n,) are measured on the same n images, n >= 2.

    Pairing takes the difference image by image before averaging, so what the two share (an image that is
    hard for both) cancels and the standard error is that of the difference alone.
    """
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise UsageError(
            f"the two must be paired per image, each (n,) with n >= 2; got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    d = a.double() - b.double()  # (n,), paired per image
    return PairedDifference(d.mean().item(), d.std().item() / math.sqrt(len(d)), len(d))


def versus_reference(
    curves_by_method: dict[str, dict[str, torch.Tensor]], x: torch.Tensor, curve: Curve, reference: str = "random"
) -> dict[str, PairedDifference]:
    """For every method but `reference`: how much more faithful than `reference` it is by `curve`, paired.

    The `paired_difference` of the two areas over the same images, signed so that > 0 is more faithful
    (deletion: the reference's area minus the method's; insertion: the method's minus the reference's).
    """
    _check_curve(curve)
    if reference not in curves_by_method:
        raise UsageError(f"reference {reference!r} is not among the methods {list(curves_by_method)}")
    areas = {m: area_under_curve(c[curve], x) for m, c in curves_by_method.items()}  # method -> (n,)
    base = areas[reference]
    return {
        m: paired_difference(base, a) if curve == "deletion" else paired_difference(a, base)
        for m, a in areas.items()
        if m != reference
    }


def more_than_chance(share: torch.Tensor, chance: torch.Tensor, *, z: float = 2.0) -> int:
    """+1, -1 or 0: whether a per-image share lies clearly above, clearly below or level with its chance level.

    `share` and `chance` are (n,), paired per image: e.g. the share of background among a map's top patches,
    and background's share of the whole image (what a random choice of patches would give). Clearly: the mean
    of the paired differences is more than `z` standard errors of that mean away from 0
    (`paired_difference(share, chance).direction(z)`).
    """
    return paired_difference(share, chance).direction(z)
