"""Notebook 06's protocol: test accuracy per label budget at equal compute, and robustness to translation.

`run` trains every method at every label budget for the same number of training images (so, with models
of equal cost per image, the same wall-clock time) and scores it on the test set; `data_efficiency_report`
(table and paragraphs) and `figures.plot_data_efficiency` show the outcome; `translation_robustness` scores
trained models on test images moved across a padded canvas. `load_or_train_fmnist_vit` gives later notebooks
the series' ViT.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from ..checkpoint import load_model, save_model
from ..cnn import PixelClassifier, resnet18, resnet_small
from ..config import SERIES_PRESET, TrainConfig, preset
from ..data import ImageTensorDataset, fashion_mnist
from ..errors import UsageError
from ..evaluation import evaluate
from ..model import VisionTransformer
from ..optim import total_steps
from ..patches import place_on_canvas
from ..train import fit
from .paths import FMNIST_VIT_PATH, run_path, shown_path
from .pretraining import from_pretrained, load_or_pretrain
from .profiles import get_profile
from .results import summarize

__all__ = [
    "BUILDERS",
    "BY",
    "COLORS",
    "METHODS",
    "MODELS",
    "PLATEAU_GAIN",
    "curve_steps",
    "gap_share",
    "last_doubling_gain",
    "load_or_train_fmnist_vit",
    "make_model",
    "run",
    "series_recipe",
    "still_rising",
    "summary",
    "translation_robustness",
]

# model name -> a builder of a new model for `num_classes`: the series' ViT, fresh or initialised from one of
# notebook 05's pretraining routes (pretrained first if its checkpoint is missing, with a new head), or a baseline
BUILDERS = {
    "pixels": lambda num_classes: PixelClassifier(num_classes=num_classes),
    "resnet_small": lambda num_classes: resnet_small(num_classes=num_classes),
    "resnet18": lambda num_classes: resnet18(num_classes=num_classes),
    "vit_scratch": lambda num_classes: VisionTransformer(preset(SERIES_PRESET, num_classes=num_classes)),
    "vit_mae": lambda num_classes: from_pretrained(load_or_pretrain("mae"), num_classes),
    # a linear probe: the masked autoencoder's encoder frozen, only the new head trained
    "vit_mae_probe": lambda num_classes: from_pretrained(load_or_pretrain("mae"), num_classes, mode="linear"),
    "vit_fractal": lambda num_classes: from_pretrained(load_or_pretrain("fractal"), num_classes),
}
MODELS = tuple(BUILDERS)
# notebook 06's contenders: {display name: {'model': one of MODELS, `series_recipe` changes}}
METHODS = {
    "pixels (logistic regression)": {"model": "pixels"},
    "small ResNet": {"model": "resnet_small"},
    "ViT from scratch": {"model": "vit_scratch"},
    "ViT + fractal pretraining": {"model": "vit_fractal", "lr": 1e-3},
    "ViT + MAE pretraining": {"model": "vit_mae", "lr": 1e-3},
}
# one colour per contender, the same in every figure (figures.plot_data_efficiency, plot_translation)
COLORS = {
    "pixels (logistic regression)": "tab:gray",
    "small ResNet": "tab:red",
    "ViT from scratch": "tab:blue",
    "ViT + fractal pretraining": "tab:purple",
    "ViT + MAE pretraining": "tab:green",
}
BY = ("method", "labels_per_class")  # a run's group: the summaries are over its seeds
# a budget has reached its plateau when the last doubling of training images adds less than this accuracy
PLATEAU_GAIN = 0.01


def series_recipe(epochs: float, **changes) -> TrainConfig:
    """The series' training recipe (benchmarks/fmnist_time_to_accuracy.py measures it): AdamW at peak lr 2e-3
    after a warmup over the first 5% of the run, cosine decay, weight decay 0.05, label smoothing 0.1,
    batch 128, horizontal flips only (no crops). Notebook 06 scores plain top-1 accuracy (no test-time flips)."""
    cfg = dict(batch_size=128, lr=2e-3, warmup_epochs=0.05 * epochs, weight_decay=0.05, label_smoothing=0.1)
    return TrainConfig(epochs=epochs, **{**cfg, "crop_pad": 0, **changes})


def load_or_train_fmnist_vit(path: str | os.PathLike = FMNIST_VIT_PATH, verbose: bool = True) -> VisionTransformer:
    """The series' ViT that notebook 06 saves (eval mode, on the CPU); if it is missing, train a stand-in.

    The stand-in is a `SERIES_PRESET` ViT trained by `series_recipe` for `fmnist_vit_fallback_epochs` on
    `fmnist_vit_fallback_per_class` images per class (seconds in the quick profile, minutes in the full
    one), saved to `path`. A model saved by a quick run is retrained when the profile is 'full'.
    """
    profile = get_profile()
    path = run_path(path)
    if path.exists():
        model, ckpt = load_model(path)
        if not (ckpt.get("profile") == "quick" and profile.name == "full"):
            if verbose:
                print(f"loaded {shown_path(path)} (test accuracy {ckpt.get('test_acc', float('nan')):.4f})")
            return model
    epochs, per_class = profile.fmnist_vit_fallback_epochs, profile.fmnist_vit_fallback_per_class
    if verbose:
        print(
            f"no trained model at {shown_path(path)}: "
            f"training a stand-in ({epochs} epochs, {per_class} labels per class)"
        )
    train, test = fashion_mnist(True), fashion_mnist(False)
    model = VisionTransformer(preset(SERIES_PRESET))
    fit(model, train.per_class_subset(per_class), None, series_recipe(epochs), progress=verbose, verbose=False)
    test_acc = evaluate(model, test.per_class_subset(profile.nb06_test_per_class))
    save_model(path, model, dataset=train, test_acc=test_acc, profile=profile.name, stand_in=True, epochs=epochs)
    if verbose:
        print(f"stand-in test accuracy {test_acc:.4f}; saved to {shown_path(path)}")
    return model.eval()


def make_model(name: str, num_classes: int = 10) -> nn.Module:
    """A fresh model for a 28x28 grayscale task: one of `MODELS` ('pixels' is logistic regression; 'vit_mae' and
    'vit_fractal' are the series' ViT initialised from notebook 05's pretraining routes; 'vit_mae_probe' is the
    masked autoencoder's encoder frozen under a new head, a linear probe)."""
    if name not in BUILDERS:
        raise UsageError(f"unknown model {name!r}; choose from {MODELS}")
    return BUILDERS[name](num_classes)


def curve_steps(total: int, points: int) -> list[int]:
    """The optimizer steps at which a learning curve is scored: `total`, `total / 2`, `total / 4`, ... (`points`
    of them at most, each a doubling of the one before, rounded and never below step 1)."""
    if total < 1 or points < 1:
        raise UsageError(f"a learning curve needs total >= 1 steps and points >= 1, got {total} and {points}")
    return sorted({max(1, round(total / 2**i)) for i in range(points)})


def run(
    methods: dict[str, dict],
    train: ImageTensorDataset,
    test: ImageTensorDataset,
    budgets: Sequence[tuple[int, int]],
    seeds: Sequence[int] = (0, 1),
    keep: Sequence[tuple[str, int]] = (),
    progress: bool = True,
    curve_test: ImageTensorDataset | None = None,
    curve_points: int = 8,
) -> tuple[list[dict], dict]:
    """Train every method at every label budget, on the same number of training images, and score it on `test`.

    methods: {display name: {'model': one of MODELS, optional `series_recipe` changes such as 'lr'}}.
    budgets: (labels per class, training images per run) pairs. Within a budget every method sees the same
        number of images, in batches of 128, under a warmup-then-cosine schedule that ends with the run; the
        final weights are scored (no early stopping, nothing chosen on the test set). A budget with fewer
        labels cycles over its images more often. The table reports each run's seconds.
    curve_test: if given, a learning curve is scored on it during every run, at `curve_points` steps that
        double from one to the next and end with the run (`curve_steps`); the curve's points are (training
        images seen, accuracy). Scoring is plain top-1 accuracy everywhere (no test-time augmentation).
    The labelled subset is the same for every seed (seeded selection 0); a seed changes the initialisation
    (of the new head, for pretrained models), the batch order and the flips.
    keep: (display name, labels per class) pairs whose trained models (first seed) to return.
    Returns (rows, kept models): one row per run with seed, accuracy, wall time, images/s, the learning curve
    (empty without `curve_test`) and the history.
    """
    rows, kept = [], {}
    for k, images in budgets:
        subset = train.per_class_subset(k, seed=0)
        for name, spec in methods.items():
            for seed in seeds:
                print(
                    f"--- {name}, {k} labels per class ({100 * len(subset) / len(train):.3g}% of the labels), "
                    f"{images:,} images = {images / len(subset):.3g} epochs, seed {seed}"
                )
                model, row = _train_and_score(spec, subset, images, test, seed, progress, curve_test, curve_points)
                rows.append({"method": name, "labels_per_class": k, "fraction": len(subset) / len(train)} | row)
                if (name, k) in keep and seed == seeds[0]:
                    kept[(name, k)] = model.eval()
    return rows, kept


def _train_and_score(
    spec: dict,
    subset: ImageTensorDataset,
    images: int,
    test: ImageTensorDataset,
    seed: int,
    progress: bool,
    curve_test: ImageTensorDataset | None,
    curve_points: int,
) -> tuple[nn.Module, dict]:
    """One run of `run`: a new model of `spec` trained on `images` images of `subset` and scored on `test`."""
    epochs = images / len(subset)
    torch.manual_seed(seed)
    model = make_model(spec["model"], subset.num_classes)
    cfg = series_recipe(epochs, seed=seed, **{key: v for key, v in spec.items() if key != "model"})
    steps_per_epoch = math.ceil(len(subset) / cfg.batch_size)
    at = set(curve_steps(total_steps(cfg, steps_per_epoch), curve_points)) if curve_test else set()
    curve: list[tuple[int, float]] = []
    scoring = [0.0]  # seconds spent scoring the curve, taken out of the training time

    def score(step, seen, net):
        if step in at:
            t0 = time.perf_counter()
            curve.append((seen, evaluate(net, curve_test)))
            scoring[0] += time.perf_counter() - t0

    start = time.perf_counter()
    history = fit(model, subset, None, cfg, progress=progress, verbose=False, step_callbacks=(score,))
    seconds = time.perf_counter() - start - scoring[0]
    acc = evaluate(model, test)
    speed = images / seconds
    print(f"    test accuracy {acc:.4f}, {seconds:.0f} s training ({speed:.0f} img/s)")
    row = {"seed": seed, "images": images, "test_acc": acc, "train_time": seconds, "images_per_s": speed}
    return model, row | {"batch_size": cfg.batch_size, "curve": curve, "history": list(history)}


def last_doubling_gain(rows: Sequence[dict]) -> dict[tuple[str, int], float]:
    """{(method, labels per class): what the last doubling of training images added to the learning curve}, in
    accuracy (0.01 = 1 point), averaged over the seeds: the curve's last point minus the one at half the images.

    Both points come from the same run, whose learning rate is still high at the half-way point and decays to
    its floor by the end, so this overstates what a second run with half the images would lose: a small gain
    here is a conservative sign that the budget has reached the model's plateau."""
    gains: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        if len(r["curve"]) < 2:
            raise UsageError(f"{r['method']} at {r['labels_per_class']}/class has no learning curve; pass curve_test")
        (_, half), (_, last) = r["curve"][-2:]
        gains.setdefault((r["method"], r["labels_per_class"]), []).append(last - half)
    return {key: statistics.fmean(g) for key, g in gains.items()}


def still_rising(rows: Sequence[dict], threshold: float = PLATEAU_GAIN) -> set[tuple[str, int]]:
    """The (method, labels per class) cells whose last doubling of images added `threshold` or more
    (`last_doubling_gain`): still climbing when their budget ended, so their accuracy is not a plateau."""
    return {key for key, gain in last_doubling_gain(rows).items() if gain >= threshold}


def summary(rows: Sequence[dict]) -> list[dict]:
    """One dict per (method, label budget) over its seeds: n, mean/min/max test accuracy, fraction of the
    labels, training images, mean training time and images/s, and the batch size (see `results.summarize`)."""
    also = ("fraction", "images", "train_time", "images_per_s", "batch_size")
    return summarize(rows, by=BY, metric="test_acc", also=also)


def gap_share(rows: Sequence[dict], name: str, k: int, scratch: str, cnn: str, rising=frozenset()) -> float | None:
    """The share of the CNN's lead over the ViT from scratch at `k` labels per class that `name`'s gain over scratch
    covers, or None when it means nothing: no lead, or a cell of the three still rising (a lower bound)."""
    groups = {(s["method"], s["labels_per_class"]): s["mean"] for s in summary(rows)}
    cells = [(name, k), (scratch, k), (cnn, k)]
    if any(c not in groups for c in cells) or any(c in rising for c in cells):
        return None
    gap = groups[(cnn, k)] - groups[(scratch, k)]
    return (groups[(name, k)] - groups[(scratch, k)]) / gap if gap > 0 else None


def translation_robustness(
    models: dict[str, nn.Module], test: ImageTensorDataset, pad: int = 4
) -> dict[str, list[float]]:
    """Test accuracy of every model on a canvas `pad` pixels wider and taller than the images, with the image
    placed at (s, s) for every shift s = 0..pad: no shift crops anything, and s = pad moves a patch-`pad` ViT's
    tokens by exactly one grid cell. ViTs score the canvas with their position grid extended (sin-cos
    embeddings recomputed, or learned ones resampled). {name: [accuracy per shift]}."""
    canvases = [dataclasses.replace(test, images=place_on_canvas(test.images, pad, s, s)) for s in range(pad + 1)]
    out = {}
    for name, model in models.items():
        if isinstance(model, VisionTransformer):
            model = copy.deepcopy(model)
            model.set_input_size(test.image_shape[-1] + pad)
        out[name] = [evaluate(model, canvas) for canvas in canvases]
    return out
