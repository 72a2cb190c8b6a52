"""Faithfulness of importance maps: do the patches a map ranks first carry the model's decision?

An importance map scores every patch of an image (B, h, w). Two curves test it (Petsiuk et al. 2018):
- deletion: replace the patches with a baseline canvas, most important first, k at a time, and track the
  model's probability of the true class; a faithful map makes it fall fast (small area under the curve);
- insertion: start from the canvas and reveal the patches, most important first; a faithful map makes the
  probability rise fast (large area).

    curves, x = faithfulness_curves(model, test_set, n_images=500)  # per method, (500, steps + 1) each
    rows = faithfulness_summary(curves, x)  # per method: mean, sem, std of both areas, n
    ranked = compare_methods(curves, x, "deletion")  # best first, paired differences, share of the gap

The maps compared (`METHODS`), all (model, images, labels) -> (B, h, w), with `images` normalised as the
model takes them and `labels` the true classes:
- 'raw attention': the last layer's attention, heads averaged, in the row the head reads (`readout_row`);
- 'rollout': attention rollout (`rollout.rollout_matrix`), same row;
- 'gradient rollout': rollout of the positive part of A * dlogit/dA for the true class, each block's weights
  scaled by that block's total relevance (`rollout.relevance`, `rollout.gradient_rollout_matrix`);
- 'gradient x (input - canvas)': (x - canvas) * dlogit/dx of the true-class logit, summed over channels and
  over each patch's pixels: the first-order estimate of how much the logit drops when that patch is replaced
  by the canvas, i.e. by what the curves do to it;
- 'integrated gradients' (Sundararajan et al. 2017): the same product with the gradient averaged along the
  straight path from the canvas to the image, so the patches' scores add up to logit(x) - logit(canvas);
- 'random': uniform random scores, i.e. a random order (seeded by a `torch.Generator`).

The two gradient maps measure each pixel against a reference, and the reference is the canvas the curves
delete to and insert on (`curve_canvas`): a patch that already looks like the canvas scores 0, as deleting
it changes nothing. Pass it as `canvas=`; `faithfulness_curves` does, for black and for blurred canvases
alike. Both use Captum (`captum.attr.Saliency`, `captum.attr.IntegratedGradients`).

The row the head reads: the cls token's row for `global_pool='token'`; for `global_pool='avg'`, where the
head reads the mean of the patch tokens, the mean of the patch tokens' rows, i.e. the mean attention each
patch RECEIVES from all patch tokens. So every map works for both kinds of pooling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from captum.attr import IntegratedGradients, Saliency
from einops import reduce, repeat
from torch import nn
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from .data import as_image_dataset
from .interface import check_data
from .rollout import fuse_heads, gradient_rollout_matrix, readout_row, rollout_matrix, token_layout
from .runtime import eval_mode, model_device

Baseline = Literal["blank", "blur"]
Importance = Callable[..., torch.Tensor]  # (model, images, labels, **options) -> (B, h, w)
IG_STEPS = 32  # points of the path integral (Gauss-Legendre) in 'integrated gradients'


# --- importance maps: (model, images, labels) -> (B, h, w) ---------------------------------------------
def _attentions(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The post-softmax attention of every block, L x (B, H, N, N), in eval mode without gradients."""
    with eval_mode(model), torch.no_grad():
        _, attentions = model(images, return_attention=True)
    return list(attentions)


def raw_attention_importance(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, h, w): the last block's attention, heads averaged, in the row the head reads. `labels` is unused."""
    return readout_row(fuse_heads(_attentions(model, images)[-1]), model)


def rollout_importance(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, h, w): attention rollout (heads averaged, no discarding) in the row the head reads. `labels` is unused."""
    layout = token_layout(model)
    matrix = rollout_matrix(_attentions(model, images), num_prefix_tokens=layout["num_prefix_tokens"])  # (B, N, N)
    return readout_row(matrix, model)


def gradient_rollout_importance(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, h, w): gradient rollout for the true classes `labels` (B,), in the row the head reads.

    For a cls-pooled model this is exactly `rollout.gradient_rollout(model, images, labels)`.
    """
    return readout_row(gradient_rollout_matrix(model, images, labels), model)


def _per_patch(attribution: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """(B, C, H, W) pixel attributions -> (B, h, w): summed over channels and over each patch's pixels."""
    h, w = token_layout(model)["grid_size"]
    return reduce(attribution, "b c (h ph) (w pw) -> b h w", "sum", h=h, w=w)


def _reference(images: torch.Tensor, canvas: torch.Tensor | None, method: str) -> torch.Tensor:
    """`canvas` as a (B, C, H, W) tensor on the images' device; a clear error when it is missing."""
    if canvas is None:
        raise ValueError(
            f"{method!r} measures the image against the canvas the curves delete to; pass canvas= "
            "(e.g. curve_canvas(model, images, 'blank', blank=<the normalised black pixel>))"
        )
    return canvas.to(device=images.device, dtype=images.dtype).expand_as(images)


def gradient_input_importance(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, canvas: torch.Tensor
) -> torch.Tensor:
    """(B, h, w): (images - canvas) * dlogit/dimages of the true-class logit, summed per patch (signed).

    `canvas` (broadcastable to `images`) is the reference, the image the curves delete to; a patch equal to
    it scores 0. The sum over a patch is the first-order change of the logit when that patch is replaced by
    the canvas. The gradient comes from `captum.attr.Saliency` (abs=False), taken w.r.t. the input only: the
    model runs in eval mode and no parameter gets a `.grad`.
    """
    reference = _reference(images, canvas, "gradient x (input - canvas)")
    targets = torch.as_tensor(labels, device=images.device)
    with eval_mode(model), torch.enable_grad():
        inputs = images.detach().requires_grad_()  # a fresh leaf: `images` itself stays untouched
        grad = Saliency(model).attribute(inputs, target=targets, abs=False)  # (B, C, H, W)
    return _per_patch((images.detach() - reference) * grad.detach(), model)


def integrated_gradients_importance(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    canvas: torch.Tensor,
    steps: int = IG_STEPS,
    internal_batch_size: int = 1024,
) -> torch.Tensor:
    """(B, h, w): integrated gradients of the true-class logit from `canvas` to `images`, summed per patch.

    Per pixel: (x - canvas) times the gradient averaged along the straight path canvas -> x (`steps` points,
    Gauss-Legendre; `captum.attr.IntegratedGradients`). Completeness: each image's scores add up to
    logit(x) - logit(canvas), up to the quadrature error. A patch equal to the canvas scores 0. The model
    runs in eval mode on at most `internal_batch_size` path points at a time; no parameter gets a `.grad`.
    """
    reference = _reference(images, canvas, "integrated gradients")
    targets = torch.as_tensor(labels, device=images.device)
    with eval_mode(model), torch.enable_grad():
        attribution = IntegratedGradients(model).attribute(
            images.detach(),
            baselines=reference,
            target=targets,
            n_steps=steps,
            internal_batch_size=max(internal_batch_size, len(images)),
        )  # (B, C, H, W)
    return _per_patch(attribution.detach(), model)


def random_importance(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, h, w) uniform random scores from `generator` (on the CPU): a random order of the patches."""
    h, w = token_layout(model)["grid_size"]
    return torch.rand(images.shape[0], h, w, generator=generator).to(images.device)


METHODS: dict[str, Importance] = {
    "raw attention": raw_attention_importance,
    "rollout": rollout_importance,
    "gradient rollout": gradient_rollout_importance,
    "gradient x (input - canvas)": gradient_input_importance,
    "integrated gradients": integrated_gradients_importance,
    "random": random_importance,
}
REFERENCED = ("gradient x (input - canvas)", "integrated gradients")  # the methods that take `canvas=`


def importance(
    method: str,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    canvas: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, h, w) map of `METHODS[method]`.

    `canvas` is the reference of the methods in `REFERENCED` (required there; pass the canvas the curves use,
    `curve_canvas`); `generator` seeds the 'random' method. Methods ignore what they do not use.
    """
    if method not in METHODS:
        raise ValueError(f"unknown importance method {method!r}; choose from {list(METHODS)}")
    if method == "random":
        return random_importance(model, images, labels, generator=generator)
    if method in REFERENCED:
        return METHODS[method](model, images, labels, canvas=_reference(images, canvas, method))
    return METHODS[method](model, images, labels)


# --- deletion and insertion curves ---------------------------------------------------------------------
def foreground_patches(images: torch.Tensor, grid_size: tuple[int, int], threshold: float = 0.1) -> torch.Tensor:
    """(B, h * w) bool: which patches of `images` (B, C, H, W), scaled to [0, 1] on a black background (as
    Fashion-MNIST's), hold foreground, i.e. a pixel brighter than `threshold`. Patches in row-major order."""
    gh, gw = grid_size
    if images.shape[-2] % gh or images.shape[-1] % gw:
        raise ValueError(f"a {gh}x{gw} grid does not tile images {tuple(images.shape)} into whole patches")
    return reduce(images, "b c (h p1) (w p2) -> b (h w)", "max", h=gh, w=gw) > threshold


def foreground_share(maps: torch.Tensor, images: torch.Tensor, k: int, threshold: float = 0.1) -> torch.Tensor:
    """Per image, the share of a map's `k` top-ranked patches that hold foreground (`foreground_patches`:
    a pixel brighter than `threshold`, with `images` (B, C, H, W) scaled to [0, 1] on a black background).

    `maps` (B, h, w) on the images' patch grid. Returns (B,) in [0, 1]. A map that ranks background patches first
    scores low, and deleting or revealing such patches on a black canvas changes nothing.
    """
    b, gh, gw = maps.shape
    if images.shape[0] != b or images.shape[-2] % gh or images.shape[-1] % gw:
        raise ValueError(f"maps {tuple(maps.shape)} do not tile images {tuple(images.shape)} into whole patches")
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
            raise ValueError(f"blank needs one value or one per channel ({images.shape[1]}), got {value.shape[1]}")
        return value.expand_as(images).clone()
    if baseline == "blur":
        size = min(2 * math.ceil(3 * sigma) + 1, 2 * min(images.shape[-2:]) - 1)  # odd, fits the image
        return TF.gaussian_blur(images, kernel_size=[size, size], sigma=[float(sigma)] * 2)
    raise ValueError(
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
    gh, gw = token_layout(model)["grid_size"]
    if images.shape[-2] % gh or images.shape[-1] % gw:
        raise ValueError(
            f"images of {images.shape[-2]}x{images.shape[-1]} pixels do not split into the model's {gh}x{gw} patch grid"
        )
    return baseline_canvas(images, baseline, blank=blank, sigma=images.shape[-2] // gh)


def fractions(num_patches: int, k: int) -> torch.Tensor:
    """x positions of the curves (steps + 1,): the fraction of patches changed at steps 0, k, 2k, ..., N."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (patches changed per step) must be a positive int, got {k!r}")
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
    importance_map: torch.Tensor,
    kind: Literal["deletion", "insertion"],
    *,
    k: int = 1,
    baseline: Baseline | torch.Tensor = "blank",
    blank: float | Sequence[float] = 0.0,
    chunk_size: int = 256,
    ends: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probability of the true class as the most important patches are deleted or inserted, k per step.

    kind='deletion': the patches are replaced by the baseline canvas (step 0: the image; last: the canvas).
    kind='insertion': they are revealed on the canvas (step 0: the canvas; last: the whole image).
    `images` (B, C, H, W) normalised, `labels` (B,), `importance_map` (B, h, w) or (B, N) on the model's
    patch grid. Patches go in descending order of importance (ties: lower index first). `baseline` is
    'blank', 'blur' (see `baseline_canvas`, with `blank` the normalised black) or a canvas tensor
    broadcastable to `images`. Returns curves (B, steps + 1), at steps 0, k, 2k, ..., N patches changed,
    and x (steps + 1,), the fraction of patches changed. All variants of a chunk of steps are built
    with one `torch.where`; the model runs on chunks of `chunk_size` images, in eval mode, without gradients.
    `ends` = (probability on the images, probability on the canvas), each (B,), when already known (they
    are the same for every map, see `end_probabilities`): the curve's first and last steps, not recomputed.
    """
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
    insert = kind == "insertion"
    b, c, height, width = images.shape
    gh, gw = token_layout(model)["grid_size"]
    if height % gh or width % gw:
        raise ValueError(f"images of {height}x{width} pixels do not split into the model's {gh}x{gw} patch grid")
    ph, pw = height // gh, width // gw
    scores = importance_map.reshape(b, -1)  # (B, N)
    if scores.shape[1] != gh * gw:
        raise ValueError(f"importance maps have {scores.shape[1]} entries per image, the model {gh}x{gw} patches")
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
        raise ValueError(f"methods must be a non-empty selection of {list(METHODS)}, got {list(methods)}")
    dataset = as_image_dataset(torch.utils.data.TensorDataset(*data) if isinstance(data, tuple | list) else data)
    check_data(model, dataset, "data set")
    n = len(dataset) if n_images is None else n_images
    if not 1 <= n <= len(dataset):
        raise ValueError(f"n_images={n_images} but the data set has {len(dataset)} images; pass 1..{len(dataset)}")
    device = model_device(model)
    black = dataset.normalize(torch.zeros((1, dataset.images.shape[1], 1, 1), dtype=dataset.images.dtype))
    blank = black.flatten().tolist()
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, dict[str, list[torch.Tensor]]] = {m: {"deletion": [], "insertion": []} for m in methods}
    x = None
    for start in tqdm(range(0, n, batch_size), desc="faithfulness", unit="batch", disable=not progress):
        stop = min(start + batch_size, n)
        images = dataset.normalize(dataset.images[start:stop]).to(device)  # (B, C, H, W)
        labels = dataset.labels[start:stop].to(device)  # (B,)
        canvas = curve_canvas(model, images, baseline, blank=blank)  # (B, C, H, W): the curves' reference
        ends = end_probabilities(model, images, labels, baseline=canvas, chunk_size=chunk_size)  # same for every map
        for method in methods:
            scores = importance(method, model, images, labels, canvas=canvas, generator=generator)  # (B, h, w)
            for kind in ("deletion", "insertion"):
                curves, x = perturbation_curve(
                    model, images, labels, scores, kind, k=k, baseline=canvas, chunk_size=chunk_size, ends=ends
                )  # (B, S)
                parts[method][kind].append(curves.cpu())
    curves_by_method = {m: {kind: torch.cat(c) for kind, c in kinds.items()} for m, kinds in parts.items()}
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
        for kind in ("deletion", "insertion"):
            areas = area_under_curve(curves[kind], x)  # (n,)
            std = areas.std().item() if len(areas) > 1 else float("nan")
            row |= {
                f"{kind}_auc_mean": areas.mean().item(),
                f"{kind}_auc_sem": std / math.sqrt(len(areas)),
                f"{kind}_auc_std": std,
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
    kind: Literal["deletion", "insertion"],
    reference: str | None = "random",
) -> list[dict]:
    """The methods ranked for one curve, most faithful first (deletion: smallest area; insertion: largest).

    One dict per method: `method`, `area` (mean over the images), `behind` (how far its area is from the
    best method's, in the unfaithful direction: >= 0), `behind_sem` (standard error of that difference,
    paired: both areas come from the same images, so image-to-image spread cancels; nan for the best and
    for a single image) and `gap_closed` (the share of the distance from `reference`'s area to the best
    area that the method covers: 1 for the best, 0 for no better than the reference; None without one).
    """
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
    if reference is not None and reference not in curves_by_method:
        raise ValueError(f"reference {reference!r} is not among the methods {list(curves_by_method)}")
    sign = 1.0 if kind == "deletion" else -1.0  # lower deletion area, higher insertion area is better
    areas = {m: area_under_curve(c[kind], x) for m, c in curves_by_method.items()}  # method -> (n,)
    ranked = sorted(areas, key=lambda m: sign * areas[m].mean().item())
    best = areas[ranked[0]]
    rows = []
    for method in ranked:
        behind = sign * (areas[method] - best)  # (n,), per image
        n = len(behind)
        sem = behind.std().item() / math.sqrt(n) if n > 1 and method != ranked[0] else float("nan")
        row = {"method": method, "area": areas[method].mean().item(), "behind": behind.mean().item(), "behind_sem": sem}
        gap_closed = None
        if reference is not None:
            span = sign * (areas[reference].mean() - best.mean()).item()
            gap_closed = 1.0 - row["behind"] / span if span > 0 else float("nan")
        rows.append(row | {"gap_closed": gap_closed})
    return rows
