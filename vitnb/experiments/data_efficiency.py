"""Notebook 06's protocol: test accuracy per label budget at equal compute, and robustness to translation.

`run` trains every method at every label budget for the same number of training images (so, with models
of equal cost per image, the same wall-clock time) and scores it on the test set; `results_table` and
`vitnb.plotting.plot_data_efficiency` show the outcome; `translation_robustness` scores trained models on
test images moved across a padded canvas. `load_or_train_fmnist_vit` gives later notebooks the series' ViT.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from ..checkpoint import load_model, save_model
from ..cnn import PixelClassifier, resnet18, resnet_small
from ..config import preset
from ..data import ImageTensorDataset, fashion_mnist
from ..model import VisionTransformer
from ..patches import place_on_canvas
from ..train import TrainConfig, evaluate, fit
from .paths import FMNIST_VIT_PATH, run_path, shown_path
from .pretraining import VIT_PRESET, from_pretrained, load_or_pretrain
from .profiles import get_profile
from .results import markdown_table, summarize

# model name -> a builder of a new model for `num_classes`: the series' ViT, fresh or initialised from one of
# notebook 05's pretraining routes (pretrained first if its checkpoint is missing, with a new head), or a baseline
BUILDERS = {
    "pixels": lambda num_classes: PixelClassifier(num_classes=num_classes),
    "resnet_small": lambda num_classes: resnet_small(num_classes=num_classes),
    "resnet18": lambda num_classes: resnet18(num_classes=num_classes),
    "vit_scratch": lambda num_classes: VisionTransformer(preset(VIT_PRESET, num_classes=num_classes)),
    "vit_mae": lambda num_classes: from_pretrained(load_or_pretrain("mae"), num_classes),
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
# one colour per contender, the same in every figure (plotting.plot_data_efficiency, plot_translation)
COLORS = {
    "pixels (logistic regression)": "tab:gray",
    "small ResNet": "tab:red",
    "ViT from scratch": "tab:blue",
    "ViT + fractal pretraining": "tab:purple",
    "ViT + MAE pretraining": "tab:green",
}
BY = ("method", "labels_per_class")  # a run's group: the summaries are over its seeds


def series_recipe(epochs: float, **changes) -> TrainConfig:
    """The series' training recipe (benchmarks/fmnist_time_to_accuracy.py measures it): AdamW at peak lr 2e-3
    after a warmup over the first 5% of the run, cosine decay, weight decay 0.05, label smoothing 0.1,
    batch 128, horizontal flips only (no crops), and scoring each test image with its mirror image."""
    cfg = dict(batch_size=128, lr=2e-3, warmup_epochs=0.05 * epochs, weight_decay=0.05, label_smoothing=0.1)
    return TrainConfig(epochs=epochs, **{**cfg, "crop_pad": 0, "eval_flip": True, **changes})


def load_or_train_fmnist_vit(path: str | os.PathLike = FMNIST_VIT_PATH, verbose: bool = True) -> VisionTransformer:
    """The series' ViT that notebook 06 saves (eval mode, on the CPU); if it is missing, train a stand-in.

    The stand-in is a `VIT_PRESET` ViT trained by `series_recipe` for `fmnist_vit_fallback_epochs` on
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
    model = VisionTransformer(preset(VIT_PRESET))
    fit(model, train.per_class_subset(per_class), None, series_recipe(epochs), progress=verbose, verbose=False)
    test_acc = evaluate(model, test.per_class_subset(profile.nb06_test_per_class), flip=True)
    save_model(path, model, dataset=train, test_acc=test_acc, profile=profile.name, stand_in=True, epochs=epochs)
    if verbose:
        print(f"stand-in test accuracy {test_acc:.4f}; saved to {shown_path(path)}")
    return model.eval()


def make_model(name: str, num_classes: int = 10) -> nn.Module:
    """A fresh model for a 28x28 grayscale task: one of `MODELS` ('pixels' is logistic regression; 'vit_mae' and
    'vit_fractal' are the series' ViT initialised from notebook 05's pretraining routes)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
    return BUILDERS[name](num_classes)


def run(
    methods: dict[str, dict],
    train: ImageTensorDataset,
    test: ImageTensorDataset,
    budgets: Sequence[tuple[int, int]],
    seeds: Sequence[int] = (0, 1),
    keep: Sequence[tuple[str, int]] = (),
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Train every method at every label budget, on the same number of training images, and score it on `test`.

    methods: {display name: {'model': one of MODELS, optional `series_recipe` changes such as 'lr'}}.
    budgets: (labels per class, training images per run) pairs. Within a budget every method sees the same
        number of images, in batches of 128, under a warmup-then-cosine schedule that ends with the run; the
        final weights are scored (no early stopping, nothing chosen on the test set). A budget with fewer
        labels cycles over its images more often. Models of equal cost per image (the series' ViT and the
        small ResNet) therefore train for the same wall-clock time; the table reports each run's seconds.
    The labelled subset is the same for every seed (seeded selection 0); a seed changes the initialisation
    (of the new head, for pretrained models), the batch order and the flips.
    keep: (display name, labels per class) pairs whose trained models (first seed) to return.
    Returns (rows, kept models): one row per run with seed, accuracy, wall time, images/s and the history.
    """
    rows, kept = [], {}
    for k, images in budgets:
        subset = train.per_class_subset(k, seed=0)
        epochs = images / len(subset)
        for name, spec in methods.items():
            for seed in seeds:
                torch.manual_seed(seed)
                model = make_model(spec["model"], train.num_classes)
                cfg = series_recipe(epochs, seed=seed, **{key: v for key, v in spec.items() if key != "model"})
                print(
                    f"--- {name}, {k} labels per class ({100 * len(subset) / len(train):.3g}% of the labels), "
                    f"{images:,} images = {epochs:.3g} epochs, seed {seed}"
                )
                start = time.perf_counter()
                history = fit(model, subset, None, cfg, progress=progress, verbose=False)
                seconds = time.perf_counter() - start
                acc = evaluate(model, test, flip=True)
                speed = history.final["images_per_s"]
                print(f"    test accuracy {acc:.4f}, {seconds:.0f} s training ({speed:.0f} img/s)")
                rows.append(
                    {
                        "method": name,
                        "labels_per_class": k,
                        "fraction": len(subset) / len(train),
                        "seed": seed,
                        "images": images,
                        "test_acc": acc,
                        "train_time": seconds,
                        "images_per_s": speed,
                        "history": list(history),
                    }
                )
                if (name, k) in keep and seed == seeds[0]:
                    kept[(name, k)] = model.eval()
    return rows, kept


def summary(rows: Sequence[dict]) -> list[dict]:
    """One dict per (method, label budget) over its seeds: n, mean/min/max test accuracy, fraction of the
    labels, mean training time and images/s (see `results.summarize`)."""
    return summarize(rows, by=BY, metric="test_acc", also=("fraction", "train_time", "images_per_s"))


def results_table(rows: Sequence[dict]) -> str:
    """A markdown table: one line per method, one column per label budget (mean test accuracy in %, with
    the seeds' min-max), then the method's training speed and the seconds of its largest run."""
    groups = summary(rows)
    budgets = sorted({(s["labels_per_class"], s["fraction"]) for s in groups})
    names = list(dict.fromkeys(s["method"] for s in groups))
    by = {(s["method"], s["labels_per_class"]): s for s in groups}
    cells = []
    for name in names:
        line = [name]
        for k, _ in budgets:
            s = by.get((name, k))
            spread = f" ({100 * s['min']:.1f}-{100 * s['max']:.1f})" if s and s["n"] > 1 else ""
            line.append(f"{100 * s['mean']:.1f}{spread}" if s else "-")
        mine = [s for s in groups if s["method"] == name]
        speed = statistics.fmean(s["images_per_s"] for s in mine)
        line += [f"{1000 * 128 / speed:.0f} ms", f"{max(s['train_time'] for s in mine):.0f} s"]
        cells.append(line)
    seeds = max(s["n"] for s in groups)
    header = ["method", *(f"{100 * f:.3g}% ({k}/class)" for k, f in budgets), "per step of 128", "longest run"]
    return markdown_table(header, cells) + (
        f"\n\ntest accuracy (%), mean over {seeds} seeds (min-max in brackets)" if seeds > 1 else ""
    )


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
