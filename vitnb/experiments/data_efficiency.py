"""Notebook 06's protocol: test accuracy per label budget at equal compute, and robustness to translation.

`run` trains every method at every label budget for the same number of training images (so, with models
of equal cost per image, the same wall-clock time) and scores it on the test set; `results_table` and
`vitnb.plotting.plot_data_efficiency` show the outcome; `translation_robustness` scores trained models on
test images moved across a padded canvas. `load_or_train_fmnist_vit` gives later notebooks the series' ViT.
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
from ..config import preset
from ..data import ImageTensorDataset, fashion_mnist
from ..model import VisionTransformer
from ..patches import place_on_canvas
from ..train import TrainConfig, evaluate, fit, total_steps
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
    test_acc = evaluate(model, test.per_class_subset(profile.nb06_test_per_class))
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


def curve_steps(total: int, points: int) -> list[int]:
    """The optimizer steps at which a learning curve is scored: `total`, `total / 2`, `total / 4`, ... (`points`
    of them at most, each a doubling of the one before, rounded and never below step 1)."""
    if total < 1 or points < 1:
        raise ValueError(f"a learning curve needs total >= 1 steps and points >= 1, got {total} and {points}")
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
        epochs = images / len(subset)
        for name, spec in methods.items():
            for seed in seeds:
                torch.manual_seed(seed)
                model = make_model(spec["model"], train.num_classes)
                cfg = series_recipe(epochs, seed=seed, **{key: v for key, v in spec.items() if key != "model"})
                steps_per_epoch = math.ceil(len(subset) / cfg.batch_size)
                at = set(curve_steps(total_steps(cfg, steps_per_epoch), curve_points)) if curve_test else set()
                curve: list[tuple[int, float]] = []
                scoring = [0.0]  # seconds spent scoring the curve, taken out of the training time

                def score(step, seen, net, at=at, curve=curve, scoring=scoring):
                    if step in at:
                        t0 = time.perf_counter()
                        curve.append((seen, evaluate(net, curve_test)))
                        scoring[0] += time.perf_counter() - t0

                print(
                    f"--- {name}, {k} labels per class ({100 * len(subset) / len(train):.3g}% of the labels), "
                    f"{images:,} images = {epochs:.3g} epochs, seed {seed}"
                )
                start = time.perf_counter()
                history = fit(model, subset, None, cfg, progress=progress, verbose=False, step_callbacks=(score,))
                seconds = time.perf_counter() - start - scoring[0]
                acc = evaluate(model, test)
                speed = images / seconds
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
                        "curve": curve,
                        "history": list(history),
                    }
                )
                if (name, k) in keep and seed == seeds[0]:
                    kept[(name, k)] = model.eval()
    return rows, kept


def last_doubling_gain(rows: Sequence[dict]) -> dict[tuple[str, int], float]:
    """{(method, labels per class): what the last doubling of training images added to the learning curve}, in
    accuracy (0.01 = 1 point), averaged over the seeds: the curve's last point minus the one at half the images.

    Both points come from the same run, whose learning rate is still high at the half-way point and decays to
    its floor by the end, so this overstates what a second run with half the images would lose: a small gain
    here is a conservative sign that the budget has reached the model's plateau."""
    gains: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        if len(r["curve"]) < 2:
            raise ValueError(f"{r['method']} at {r['labels_per_class']}/class has no learning curve; pass curve_test")
        (_, half), (_, last) = r["curve"][-2:]
        gains.setdefault((r["method"], r["labels_per_class"]), []).append(last - half)
    return {key: statistics.fmean(g) for key, g in gains.items()}


def still_rising(rows: Sequence[dict], threshold: float = PLATEAU_GAIN) -> set[tuple[str, int]]:
    """The (method, labels per class) cells whose last doubling of images added `threshold` or more
    (`last_doubling_gain`): still climbing when their budget ended, so their accuracy is not a plateau."""
    return {key for key, gain in last_doubling_gain(rows).items() if gain >= threshold}


def summary(rows: Sequence[dict]) -> list[dict]:
    """One dict per (method, label budget) over its seeds: n, mean/min/max test accuracy, fraction of the
    labels, training images, mean training time and images/s (see `results.summarize`)."""
    return summarize(rows, by=BY, metric="test_acc", also=("fraction", "images", "train_time", "images_per_s"))


def results_table(rows: Sequence[dict], rising: set[tuple[str, int]] = frozenset()) -> str:
    """A markdown table: one line per method, one column per label budget (mean test accuracy in %, with the
    seeds' min-max when there are several, and a dagger on the cells in `rising`), then the method's time per
    step of 128 images and the seconds of its longest run. The header names each budget's training images."""
    groups = summary(rows)
    budgets = sorted({(s["labels_per_class"], s["fraction"], s["images"]) for s in groups})
    names = list(dict.fromkeys(s["method"] for s in groups))
    by = {(s["method"], s["labels_per_class"]): s for s in groups}
    cells = []
    for name in names:
        line = [name]
        for k, _, _ in budgets:
            s = by.get((name, k))
            spread = f" ({100 * s['min']:.1f}-{100 * s['max']:.1f})" if s and s["n"] > 1 else ""
            mark = " †" if (name, k) in rising else ""
            line.append(f"{100 * s['mean']:.1f}{spread}{mark}" if s else "-")
        mine = [s for s in groups if s["method"] == name]
        speed = statistics.fmean(s["images_per_s"] for s in mine)
        line += [f"{1000 * 128 / speed:.0f} ms", f"{max(s['train_time'] for s in mine):.0f} s"]
        cells.append(line)
    seeds = sorted({(s["labels_per_class"], s["n"]) for s in groups})
    header = ["method", *(f"{100 * f:.3g}% ({k}/class, {n:,} images)" for k, f, n in budgets)]
    header += ["per step of 128", "longest run"]
    runs = ", ".join(f"{n} at {k}/class" for k, n in seeds) if len({n for _, n in seeds}) > 1 else seeds[0][1]
    notes = [f"test accuracy (%) of the final weights; seeds per cell: {runs}; brackets: the seeds' min-max"]
    if rising:
        notes.append(f"† still rising: the last doubling of images added {100 * PLATEAU_GAIN:.0f} point or more")
    return markdown_table(header, cells) + "\n\n" + "; ".join(notes)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _pts(a: float, b: float) -> str:
    """a - b in points, computed from the values as printed (one decimal), so the text adds up."""
    return f"{round(100 * a, 1) - round(100 * b, 1):.1f}"


def gap_share(rows: Sequence[dict], name: str, k: int, scratch: str, cnn: str, rising=frozenset()) -> float | None:
    """The share of the CNN's lead over the ViT from scratch at `k` labels per class that `name`'s gain over scratch
    covers, or None when it means nothing: no lead, or a cell of the three still rising (a lower bound)."""
    groups = {(s["method"], s["labels_per_class"]): s["mean"] for s in summary(rows)}
    cells = [(name, k), (scratch, k), (cnn, k)]
    if any(c not in groups for c in cells) or any(c in rising for c in cells):
        return None
    gap = groups[(cnn, k)] - groups[(scratch, k)]
    return (groups[(name, k)] - groups[(scratch, k)]) / gap if gap > 0 else None


def findings(
    rows: Sequence[dict],
    robustness: dict[str, Sequence[float]],
    rising: set[tuple[str, int]] = frozenset(),
    scratch: str = "ViT from scratch",
    cnn: str = "small ResNet",
    floor: str = "pixels (logistic regression)",
) -> str:
    """Notebook 06's results paragraphs, written from its numbers: a markdown list with one point each for the
    plateaus, the CNN against the ViT at the label budgets below 100%, pretraining, all the labels, translation
    and cost. Every number and every comparison word ("ahead", "below", "falls further") is computed here.

    rows: `run`'s rows (with learning curves); robustness: `translation_robustness` of `scratch` and `cnn` on the
    canvas; rising: `still_rising(rows)`.
    """
    groups = {(s["method"], s["labels_per_class"]): s for s in summary(rows)}
    budgets = sorted({(s["labels_per_class"], s["fraction"], s["n"], s["images"]) for s in groups.values()})
    (k_full, _, n_full, images_full), low = budgets[-1], budgets[:-1]
    share = lambda k: f"{100 * next(b[1] for b in budgets if b[0] == k):.3g}%"
    acc = lambda name, k: groups[(name, k)]["mean"]
    apart = lambda a, b, k: groups[(a, k)]["min"] > groups[(b, k)]["max"]  # every seed of a above every seed of b
    gains = last_doubling_gain(rows)
    out = []

    flat_budgets = [k for k, *_ in budgets if not any(key[1] == k and key in rising for key in gains)]
    late = sorted((key for key in gains if key in rising), key=lambda key: (key[0] != scratch, key[1], key[0]))
    flat_text = ""
    if flat_budgets:
        most = max(gains[key] for key in gains if key[1] in flat_budgets)
        where = " and ".join(share(k) for k in flat_budgets)
        flat_text = (
            f"At {where} of the labels every curve had flattened (the last doubling of images added at most "
            f"{100 * most:.1f} points), so {'that column measures' if len(flat_budgets) == 1 else 'those measure'} "
            "what each model learns from its labels. "
        )
    late_text = (
        "Still rising when their budget ended: "
        + "; ".join(f"{name} at {share(k)} ({100 * gains[(name, k)]:+.1f} points)" for name, k in late)
        + ". Their accuracies are lower bounds on what their labels allow."
        if late
        else "No curve was still rising when its budget ended."
    )
    out.append(f"**Plateaus.** {flat_text}{late_text}")

    for k, _, n, _ in low:
        gap = acc(cnn, k) - acc(scratch, k)
        if n == 1:
            clear = "in its one seed"
        else:
            clear = "on every seed" if apart(cnn, scratch, k) else "though the seeds' ranges overlap"
        lead = (
            f"The small ResNet wins, {clear}: {_pct(acc(cnn, k))} against {_pct(acc(scratch, k))} for the ViT from "
            f"scratch, {_pts(acc(cnn, k), acc(scratch, k))} points ahead"
            if gap > 0
            else f"The ViT from scratch wins, {clear}: {_pct(acc(scratch, k))} against {_pct(acc(cnn, k))} for the "
            f"small ResNet, {_pts(acc(scratch, k), acc(cnn, k))} points ahead"
        )
        side = "even below" if acc(scratch, k) < acc(floor, k) else "above"
        still = [name for name in (cnn, scratch) if (name, k) in rising]
        caveat = (
            "" if not still else f" The {still[0]} was still rising." if len(still) == 1 else " Both were still rising."
        )
        out.append(
            f"**{share(k)} of the labels ({k} per class).** {lead}; the ViT from scratch is {side} logistic "
            f"regression on the pixels ({_pct(acc(floor, k))}).{caveat}"
        )

    seed_spread = {k: groups[(scratch, k)]["max"] - groups[(scratch, k)]["min"] for k, _, n, _ in budgets if n > 1}
    pretrained = [name for name in dict.fromkeys(r["method"] for r in rows) if name not in (scratch, cnn, floor)]
    for name in pretrained:
        parts, doubtful = [], []
        for k, _, n, _ in budgets:
            if (name, k) not in groups:
                continue
            gain = acc(name, k) - acc(scratch, k)
            closed = gap_share(rows, name, k, scratch, cnn, rising)
            closed = f", {100 * closed:.0f}% of the gap to the ResNet" if closed is not None else ""
            over = _pts(acc(name, k), acc(scratch, k))
            parts.append(f"{_pct(acc(name, k))} at {share(k)} ({over} points over scratch{closed})")
            reasons = []
            if n == 1 and seed_spread and abs(gain) < max(seed_spread.values()):
                k_spread = max(seed_spread, key=seed_spread.get)
                reasons.append(
                    f"one seed, and a gain smaller than the {100 * seed_spread[k_spread]:.1f}-point spread of two "
                    f"seeds of the ViT from scratch at {share(k_spread)}"
                )
            if (scratch, k) in rising and gains[(scratch, k)] > gains[(name, k)]:
                reasons.append("the ViT from scratch was still rising faster")
            if reasons:
                doubtful.append(f"at {share(k)} ({'; '.join(reasons)})")
        beats = [share(k) for k, *_ in budgets if (name, k) in groups and acc(name, k) > acc(cnn, k)]
        versus = f"it beats the ResNet at {', '.join(beats)}" if beats else "it does not reach the ResNet at any budget"
        note = f" The gain is not established {' and '.join(doubtful)}." if doubtful else ""
        out.append(f"**{name}:** {'; '.join(parts)}; {versus}.{note}")

    ranked = sorted((s for s in groups.values() if s["labels_per_class"] == k_full), key=lambda s: -s["mean"])
    listing = ", ".join(f"{s['method']} {_pct(s['mean'])}" for s in ranked)
    full_rising = [s["method"] for s in ranked if (s["method"], k_full) in rising]
    seeds = "one seed" if n_full == 1 else f"{n_full} seeds"
    still = (
        f"; still rising when the budget ended: {', '.join(full_rising)}, so those accuracies are not plateaus"
        if full_rising
        else "; every curve had flattened"
    )
    out.append(f"**All the labels** ({seeds}, {images_full:,} images per run{still}): {listing}.")

    vit, res = robustness[scratch], robustness[cnn]
    pad = len(vit) - 1
    mid = pad // 2
    if _pct(vit[pad]) == _pct(vit[pad - 1]):
        aligned = f"does not recover ({_pct(vit[pad])} there, as at {pad - 1} pixels)"
    elif vit[pad] > vit[pad - 1]:
        aligned = f"recovers part of its loss ({_pct(vit[pad])} against {_pct(vit[pad - 1])} at {pad - 1} pixels)"
    else:
        aligned = f"does not recover: it falls to {_pct(vit[pad])} from {_pct(vit[pad - 1])} at {pad - 1} pixels"
    worst = min(range(1, pad + 1), key=lambda s: res[s])
    res_worst = f"The ResNet is worst at a shift of {worst} pixel{'s' if worst != 1 else ''} ({_pct(res[worst])})"
    if worst < pad:
        res_worst += f" and {'recovers a little' if res[pad] > res[worst] else 'stays low'} at {pad} ({_pct(res[pad])})"
    out.append(
        f"**Translation.** Neither model is invariant. Moving the image {mid} pixels on the canvas costs the ResNet "
        f"{_pts(res[0], res[mid])} points ({_pct(res[0])} to {_pct(res[mid])}) and the ViT {_pts(vit[0], vit[mid])} "
        f"({_pct(vit[0])} to {_pct(vit[mid])}). {res_worst}. At the patch-aligned shift of {pad} pixels, where every "
        f"token holds the same content one grid cell on, the ViT {aligned}: its decision depends on where a token "
        f"is as well as on what it holds. The bigger canvas alone, at shift 0, costs the ViT "
        f"{_pts(acc(scratch, k_full), vit[0])} points against its score on the plain test images "
        f"({_pct(acc(scratch, k_full))}), and the ResNet {_pts(acc(cnn, k_full), res[0])}."
    )

    speed = {name: statistics.fmean(r["images_per_s"] for r in rows if r["method"] == name) for name in (scratch, cnn)}
    ratio = speed[cnn] / speed[scratch]
    cost = "longer" if ratio > 1 else "shorter"
    out.append(
        f"**Cost.** A ViT step takes {abs(ratio - 1) * 100:.0f}% {cost} than a ResNet step of the same batch "
        f"({1000 * 128 / speed[scratch]:.0f} ms against {1000 * 128 / speed[cnn]:.0f} ms for 128 images), so at equal "
        "images the ResNet also trained for less time. The pretrained ViT's time leaves out its pretraining "
        "(notebook 05)."
    )
    return "\n".join(f"* {line}" for line in out)


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
