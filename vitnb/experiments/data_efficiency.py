"""Notebook 06's protocol: test accuracy per label budget at fixed compute, and robustness to translation.

`run` trains every method (ViT from scratch, fractal-pretrained ViT finetuned or probed, ResNet-18) at
every label budget for the same number of optimizer steps; `results_table` and
`vitnb.plotting.plot_data_efficiency` show the outcome; `translation_robustness` scores the trained
models on shifted test images. `load_or_train_fmnist_vit` gives later notebooks notebook 06's model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import torch
from torch import nn

from ..checkpoint import load_model, save_model
from ..cnn import resnet18
from ..config import ViTConfig, preset
from ..data import ImageTensorDataset, fashion_mnist
from ..model import VisionTransformer
from ..patches import shift_image
from ..train import TrainConfig, evaluate, fit
from .paths import FMNIST_VIT_PATH, run_path, shown_path
from .pretraining import VIT_PRESET, from_pretrained
from .profiles import get_profile
from .results import markdown_table, summarize

METHODS = ("vit_scratch", "vit_pretrained", "vit_pretrained_linear", "resnet18")
BY = ("method", "labels_per_class")  # a run's group: the summaries are over its seeds


def load_or_train_fmnist_vit(
    path: str | os.PathLike = FMNIST_VIT_PATH,
    epochs: int | None = None,
    labels_per_class: int | None = None,
    verbose: bool = True,
) -> VisionTransformer:
    """The Fashion-MNIST ViT that notebook 06 saves (eval mode, on the CPU); if it is missing, train one.

    The stand-in is a `VIT_PRESET` ViT trained for `epochs` on `labels_per_class` examples per class
    (defaults from the profile: seconds under VITNB_PROFILE=quick, minutes under full) and is saved to
    `path`. A model saved by a quick run is retrained when the profile is 'full'.
    """
    profile = get_profile()
    path = run_path(path)
    if path.exists():
        model, ckpt = load_model(path)
        if not (ckpt.get("profile") == "quick" and profile.name == "full"):
            if verbose:
                print(f"loaded {shown_path(path)} (test accuracy {ckpt.get('test_acc', float('nan')):.4f})")
            return model
    epochs = epochs or profile.fmnist_vit_fallback_epochs
    per_class = labels_per_class or profile.fmnist_vit_fallback_per_class
    if verbose:
        print(
            f"no trained model at {shown_path(path)}: "
            f"training a stand-in ({epochs} epochs, {per_class} labels per class)"
        )
    train, test = fashion_mnist(True), fashion_mnist(False)
    model = VisionTransformer(preset(VIT_PRESET))
    fit(
        model,
        train.per_class_subset(per_class),
        None,
        TrainConfig(epochs=epochs, lr=1e-3, warmup_epochs=0.5, crop_pad=0),
        progress=verbose,
        verbose=verbose,
    )
    test_acc = evaluate(model, test.per_class_subset(profile.nb06_test_per_class))
    save_model(
        path, model, dataset=train, test_acc=test_acc, profile=profile.name, labels_per_class=per_class, epochs=epochs
    )
    if verbose:
        print(f"test accuracy {test_acc:.4f}; saved to {shown_path(path)}")
    return model.eval()


def make_model(
    method: str, num_classes: int = 10, pretrained: str | os.PathLike | None = None, cfg: ViTConfig | None = None
) -> nn.Module:
    """'vit_scratch' | 'vit_pretrained' | 'vit_pretrained_linear' (from `pretrained`; full finetune or
    linear probe) | 'resnet18' -> a fresh model for the task."""
    if method == "vit_scratch":
        return VisionTransformer(cfg or preset(VIT_PRESET, num_classes=num_classes))
    if method in ("vit_pretrained", "vit_pretrained_linear"):
        if pretrained is None:
            raise ValueError(f"method {method!r} needs pretrained=PATH to a checkpoint")
        return from_pretrained(pretrained, num_classes, mode="linear" if method.endswith("linear") else "full")
    if method == "resnet18":
        return resnet18(num_classes=num_classes)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def finetune_config(profile: str | None = None) -> TrainConfig:
    """Notebook 06's finetuning recipe (the step count is `run`'s): AdamW at peak lr 1e-3, weight decay
    0.05, label smoothing 0.1, flips only, the profile's batch size."""
    return TrainConfig(
        batch_size=get_profile(profile).nb06_batch_size, lr=1e-3, weight_decay=0.05, label_smoothing=0.1, crop_pad=0
    )


def run(
    methods: dict[str, dict],
    train: ImageTensorDataset,
    test: ImageTensorDataset,
    labels_per_class: Sequence[int],
    steps: int,
    train_cfg: TrainConfig,
    pretrained: str | os.PathLike | None = None,
    keep: tuple = (),
    seeds: Sequence[int] = (0,),
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Train every method at every label budget for the same number of optimizer `steps`, score it on `test`.

    The compute is fixed (steps x batch size images per run), so a budget with fewer labels cycles
    over its images more often: what changes between budgets is only how many *different* labelled
    images the model sees. The labelled subset is the same for every seed (seeded selection 0); a seed
    changes the initialisation (of the new head, for pretrained models), the batch order and the augmentation.
    methods: {display name: {'method': one of METHODS, optional TrainConfig overrides such as 'lr'}}.
    keep: (display name, labels per class) pairs whose trained models (first seed) to return.
    Returns (rows, kept models): one row per run with seed, accuracy, wall time and the history.
    """
    rows, kept = [], {}
    total = len(train)
    for k in labels_per_class:
        subset = train.per_class_subset(k, seed=0)
        epochs = steps * train_cfg.batch_size / len(subset)
        for name, spec in methods.items():
            for seed in seeds:
                overrides = {key: v for key, v in spec.items() if key != "method"}
                warmup = 0.1 * epochs  # the first 10% of the steps, whatever the budget
                cfg = TrainConfig(
                    **{**train_cfg.to_dict(), "epochs": epochs, "warmup_epochs": warmup, "seed": seed, **overrides}
                )
                torch.manual_seed(seed)
                model = make_model(spec["method"], train.num_classes, pretrained)
                print(
                    f"--- {name}, {k} labels per class ({100 * len(subset) / total:.3g}% of the labels), "
                    f"{steps} steps = {epochs:.3g} epochs, seed {seed}"
                )
                start = time.perf_counter()
                history = fit(model, subset, None, cfg, progress=progress, verbose=False)
                train_seconds = time.perf_counter() - start
                acc = evaluate(model, test)
                print(
                    f"    test accuracy {acc:.4f}, {train_seconds:.0f} s training "
                    f"({history.final['images_per_s']:.0f} img/s)"
                )
                rows.append(
                    {
                        "method": name,
                        "labels_per_class": k,
                        "fraction": len(subset) / total,
                        "seed": seed,
                        "epochs": epochs,
                        "test_acc": acc,
                        "train_time": train_seconds,
                        "history": list(history),
                    }
                )
                if (name, k) in keep and seed == seeds[0]:
                    kept[(name, k)] = model
    return rows, kept


def summary(rows: Sequence[dict]) -> list[dict]:
    """One dict per (method, label budget) over its seeds: n, mean/min/max test accuracy, fraction of
    the labels, mean training time (see `results.summarize`)."""
    return summarize(rows, by=BY, metric="test_acc", also=("fraction", "train_time"))


def results_table(rows: Sequence[dict]) -> str:
    """A markdown table of the runs: one line per method, one column per label budget; a cell holds the
    mean test accuracy (with the seeds' min-max when there are several) and the mean training time."""
    groups = summary(rows)
    budgets = sorted({(s["labels_per_class"], s["fraction"]) for s in groups})
    names = list(dict.fromkeys(s["method"] for s in groups))
    seeds = max(s["n"] for s in groups)
    by = {(s["method"], s["labels_per_class"]): s for s in groups}
    cells = []
    for name in names:
        line = [name]
        for k, _ in budgets:
            s = by.get((name, k))
            spread = f" ({s['min']:.3f}-{s['max']:.3f})" if s and s["n"] > 1 else ""
            line.append(f"{s['mean']:.3f}{spread} in {s['train_time']:.0f} s" if s else "-")
        cells.append(line)
    table = markdown_table(["method", *(f"{100 * f:.3g}% ({k}/class)" for k, f in budgets)], cells)
    if seeds > 1:
        table += f"\n\nmean test accuracy over {seeds} seeds (min-max in brackets), mean training time per run"
    return table


def translation_robustness(
    models: dict[str, nn.Module], test: ImageTensorDataset, shifts: Sequence[int] = (0, 1, 2, 3, 4)
) -> dict[str, list[float]]:
    """Test accuracy of every model when the test images move right and down by each shift (pixels),
    the uncovered border filled with background (0 before normalisation). {name: [acc per shift]}."""
    return {
        name: [evaluate(model, test, transform=lambda x, s=s: shift_image(x, s, s)) for s in shifts]
        for name, model in models.items()
    }
