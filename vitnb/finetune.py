"""From pretraining to finetuning: the fractal corpus as a data set, checkpoints -> new tasks, and the
experiment loops of notebooks 05-06 (data efficiency, translation robustness, results table).

Relative `runs/...` paths in this module are resolved against the project checkout (or $VITNB_RUNS),
so a notebook running in `notebooks/` and the CLI running in the repo root see the same files.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from torch import nn

from . import fractal
from .checkpoint import load_model, save_model
from .config import ViTConfig, preset
from .data import ImageTensorDataset, data_root, fashion_mnist
from .model import VisionTransformer
from .patches import shift_image
from .profiles import get_profile
from .train import TrainConfig, evaluate, fit

FMNIST_VIT_PATH = "runs/06_finetuning/vit_fmnist.pt"
FRACTAL_VIT_PATH = "runs/05_pretraining/vit_fractal.pt"
VIT_PRESET = "cpu_p7"  # the ViT that notebooks 05-07 pretrain, finetune and inspect (and the CLI's default)


# --- paths ---------------------------------------------------------------------------------------
def runs_root() -> Path:
    """Parent of `runs/`: $VITNB_RUNS's parent if set, else the source checkout, else the working folder."""
    if "VITNB_RUNS" in os.environ:
        return Path(os.environ["VITNB_RUNS"]).parent
    checkout = Path(__file__).resolve().parents[1]
    return checkout if (checkout / "pyproject.toml").exists() else Path.cwd()


def run_path(path: str | Path) -> Path:
    """An absolute path for `path`; relative ones are taken from `runs_root()`."""
    path = Path(path)
    if path.is_absolute():
        return path
    if "VITNB_RUNS" in os.environ and path.parts[:1] == ("runs",):
        return Path(os.environ["VITNB_RUNS"]).joinpath(*path.parts[1:])
    return runs_root() / path


# --- data ----------------------------------------------------------------------------------------
def fractal_dataset(
    num_classes: int, per_class: int, img_size: int = 28, seed: int = 0, root: str | Path | None = None
) -> ImageTensorDataset:
    """The FractalDB-style corpus (cached under data/fractal) as a data set with its own mean/std."""
    images, labels = fractal.load_or_make_corpus(
        Path(root or data_root()) / "fractal", num_classes, per_class, img_size, seed
    )
    x = images.float() / 255
    mean, std = tuple(x.mean((0, 2, 3)).tolist()), tuple(x.std((0, 2, 3)).tolist())
    return ImageTensorDataset(images, labels, [f"ifs{c}" for c in range(num_classes)], mean, std)


def label_subset(dataset: ImageTensorDataset, labels_per_class: int | None, seed: int = 0) -> ImageTensorDataset:
    """A fixed, seeded selection of `labels_per_class` examples per class (None = the whole set)."""
    return dataset if labels_per_class is None else dataset.per_class_subset(labels_per_class, seed)


def plot_class_samples(dataset: ImageTensorDataset, num_classes: int = 8, per_class: int = 6, title: str = ""):
    """A grid: one row per class (the first `num_classes`), `per_class` examples in each; returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(num_classes, per_class, figsize=(per_class * 0.9, num_classes * 0.95), dpi=80)
    for c in range(num_classes):
        idx = (dataset.labels == c).nonzero().flatten()[:per_class]
        for j, ax in enumerate(axes[c]):
            ax.axis("off")
            if j < len(idx):
                ax.imshow(dataset.images[idx[j]].permute(1, 2, 0).squeeze(-1), cmap="gray", vmin=0, vmax=255)
        axes[c, 0].set_title(dataset.classes[c], fontsize=8, loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- pretraining (notebook 05) -------------------------------------------------------------------
def pretrain_fractal(
    path: str | Path = FRACTAL_VIT_PATH,
    num_classes: int | None = None,
    per_class: int | None = None,
    val_per_class: int | None = None,
    epochs: float | None = None,
    cfg: ViTConfig | None = None,
    train_cfg: TrainConfig | None = None,
    progress: bool = True,
):
    """Pretrain a CPU-sized ViT to classify fractal categories; the checkpoint goes to `path`.

    Sizes default to the profile (nb05_*). Returns (model, history, (train, validation) data sets).
    """
    P = get_profile()
    num_classes = num_classes or P.nb05_corpus_classes
    corpus = fractal_dataset(num_classes, per_class or P.nb05_corpus_per_class)
    train, val = train_val_split(corpus, val_per_class or P.nb05_val_per_class)
    model = VisionTransformer(cfg or preset(VIT_PRESET, num_classes=num_classes))
    train_cfg = train_cfg or TrainConfig(
        epochs=epochs or P.nb05_epochs, batch_size=128, lr=1e-3, warmup_epochs=0.5, crop_pad=0
    )
    history = fit(model, train, val, train_cfg, checkpoint=run_path(path), progress=progress)
    return model, history, (train, val)


def load_or_pretrain_fractal_vit(path: str | Path = FRACTAL_VIT_PATH) -> Path:
    """The path of notebook 05's pretrained checkpoint, pretraining one first (profile sizes) if it is missing."""
    path = run_path(path)
    if not path.exists():
        print(f"no pretrained checkpoint at {path}: pretraining one now (notebook 05 does the same)")
        pretrain_fractal(path)
    return path


# --- finetuning ----------------------------------------------------------------------------------
def freeze_all_but_head(model: nn.Module) -> nn.Module:
    """Linear probe: only the classifier head (`head`, or `fc` for the ResNet) stays trainable."""
    head = model.head if hasattr(model, "head") else model.fc
    for p in model.parameters():
        p.requires_grad = False
    for p in head.parameters():
        p.requires_grad = True
    return model


def from_pretrained(path: str | Path, num_classes: int, img_size: int | None = None, mode: str = "full") -> nn.Module:
    """A pretrained model (ViT or ResNet) ready for a new task: a fresh head for `num_classes`, position
    embeddings resampled if `img_size` differs, and for mode='linear' everything but the head frozen."""
    if mode not in ("full", "linear"):
        raise ValueError(f"mode must be 'full' (finetune everything) or 'linear' (probe), got {mode!r}")
    model, _ = load_trained(path)
    model.reset_classifier(num_classes)
    if img_size is not None and img_size != model.cfg.img_size and hasattr(model, "set_input_size"):
        model.set_input_size(img_size)
    if mode == "linear":
        freeze_all_but_head(model)
    return model.train()


def load_trained(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild any model the trainer or `save_model` wrote (ViT or ResNet-18); (model in eval mode, checkpoint)."""
    from .checkpoint import load_checkpoint
    from .cnn import CNNConfig, ResNet18

    ckpt = load_checkpoint(run_path(path))
    if "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path} holds no model (keys: {sorted(ckpt)}); expected a vitnb checkpoint")
    kind = ckpt.get("kind", "vit")
    if kind == "vit":
        model = VisionTransformer(ViTConfig.from_dict(ckpt["config"]))
    elif kind == "resnet18":
        model = ResNet18(CNNConfig(**ckpt["config"]))
    else:
        raise ValueError(f"{path} holds a model of unknown kind {kind!r}")
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def load_or_train_fmnist_vit(
    path: str | Path = FMNIST_VIT_PATH,
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
                print(f"loaded {path} (test accuracy {ckpt.get('test_acc', float('nan')):.4f})")
            return model
    epochs = epochs or profile.fmnist_vit_fallback_epochs
    per_class = labels_per_class or profile.fmnist_vit_fallback_per_class
    if verbose:
        print(f"no trained model at {path}: training a stand-in ({epochs} epochs, {per_class} labels per class)")
    train, test = fashion_mnist(True), fashion_mnist(False)
    model = VisionTransformer(preset(VIT_PRESET))
    fit(
        model,
        label_subset(train, per_class),
        None,
        TrainConfig(epochs=epochs, lr=1e-3, warmup_epochs=0.5, crop_pad=0),
        progress=verbose,
        verbose=verbose,
    )
    test_acc = evaluate(model, label_subset(test, profile.nb06_test_per_class))
    save_model(path, model, test_acc=test_acc, profile=profile.name, labels_per_class=per_class, epochs=epochs)
    if verbose:
        print(f"test accuracy {test_acc:.4f}; saved to {path}")
    return model.eval()


# --- experiments (notebook 06) -------------------------------------------------------------------
def make_model(
    method: str, num_classes: int = 10, pretrained: str | Path | None = None, cfg: ViTConfig | None = None
) -> nn.Module:
    """'vit_scratch' | 'vit_pretrained' | 'vit_pretrained_linear' (from `pretrained`; full finetune or
    linear probe) | 'resnet18' -> a fresh model for the task."""
    from .cnn import resnet18

    if method == "vit_scratch":
        return VisionTransformer(cfg or preset(VIT_PRESET, num_classes=num_classes))
    if method in ("vit_pretrained", "vit_pretrained_linear"):
        if pretrained is None:
            raise ValueError(f"method {method!r} needs pretrained=PATH to a checkpoint")
        return from_pretrained(pretrained, num_classes, mode="linear" if method.endswith("linear") else "full")
    if method == "resnet18":
        return resnet18(num_classes=num_classes)
    raise ValueError(f"unknown method {method!r}; use vit_scratch, vit_pretrained(_linear) or resnet18")


def finetune_config(profile: str | None = None) -> TrainConfig:
    """Notebook 06's finetuning recipe (the step count is `data_efficiency`'s): AdamW at peak lr 1e-3,
    weight decay 0.05, label smoothing 0.1, flips only, the profile's batch size."""
    return TrainConfig(
        batch_size=get_profile(profile).nb06_batch_size, lr=1e-3, weight_decay=0.05, label_smoothing=0.1, crop_pad=0
    )


def data_efficiency(
    methods: dict[str, dict],
    train: ImageTensorDataset,
    test: ImageTensorDataset,
    labels_per_class: list[int],
    steps: int,
    train_cfg: TrainConfig,
    pretrained: str | Path | None = None,
    keep: tuple = (),
    seeds: tuple[int, ...] = (0,),
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Train every method at every label budget for the same number of optimizer `steps`, score it on `test`.

    The compute is fixed (steps x batch size images per run), so a budget with fewer labels cycles
    over its images more often: what changes between budgets is only how many *different* labelled
    images the model sees. The labelled subset is the same for every seed (seeded selection 0); a seed
    changes the initialisation (of the new head, for pretrained models), the batch order and the augmentation.
    methods: {display name: {'method': 'vit_scratch'|'vit_pretrained'|'resnet18', optional TrainConfig
        overrides such as 'lr'}}.
    keep: (display name, labels per class) pairs whose trained models (first seed) to return.
    Returns (rows, kept models): one row per run with seed, accuracy, wall time and the history.
    """
    rows, kept = [], {}
    total = len(train)
    for k in labels_per_class:
        subset = label_subset(train, k, seed=0)
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


def summarize(rows: list[dict]) -> list[dict]:
    """One row per (method, label budget) over its seeds: mean, min and max test accuracy, mean wall time."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["labels_per_class"]), []).append(r)
    out = []
    for (method, k), runs in groups.items():
        accs = [r["test_acc"] for r in runs]
        out.append(
            {
                "method": method,
                "labels_per_class": k,
                "fraction": runs[0]["fraction"],
                "seeds": len(runs),
                "test_acc": sum(accs) / len(accs),
                "acc_min": min(accs),
                "acc_max": max(accs),
                "train_time": sum(r["train_time"] for r in runs) / len(runs),
            }
        )
    return out


def train_val_split(
    dataset: ImageTensorDataset, val_per_class: int, seed: int = 0
) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """Hold out a fixed, seeded `val_per_class` examples of every class; returns (train, validation)."""
    g = torch.Generator().manual_seed(seed)
    held = torch.zeros(len(dataset), dtype=torch.bool)
    for c in range(dataset.num_classes):
        idx = (dataset.labels == c).nonzero().flatten()
        held[idx[torch.randperm(len(idx), generator=g)[:val_per_class]]] = True
    return dataset.subset((~held).nonzero().flatten()), dataset.subset(held.nonzero().flatten())


def plot_data_efficiency(rows: list[dict], title: str = "Fashion-MNIST test accuracy vs labelled examples"):
    """Mean test accuracy per method against the % of labels used; bars span the seeds' min to max."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=80)
    summary = summarize(rows)
    for name in dict.fromkeys(r["method"] for r in summary):
        mine = sorted((r for r in summary if r["method"] == name), key=lambda r: r["fraction"])
        acc = [r["test_acc"] for r in mine]
        spread = [
            [a - r["acc_min"] for a, r in zip(acc, mine, strict=True)],
            [r["acc_max"] - a for a, r in zip(acc, mine, strict=True)],
        ]
        ax.errorbar([100 * r["fraction"] for r in mine], acc, yerr=spread, fmt="o-", capsize=3, label=name)
    ax.set(xscale="log", xlabel="% of the training labels used", ylabel="test accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def translation_robustness(
    models: dict[str, nn.Module], test: ImageTensorDataset, shifts: tuple[int, ...] = (0, 1, 2, 3, 4)
) -> dict[str, list[float]]:
    """Test accuracy of every model when the test images move right and down by each shift (pixels),
    the uncovered border filled with background (0 before normalisation). {name: [acc per shift]}."""
    return {
        name: [evaluate(model, test, transform=lambda x, s=s: shift_image(x, s, s)) for s in shifts]
        for name, model in models.items()
    }


def plot_translation(results: dict[str, list[float]], shifts: tuple[int, ...] = (0, 1, 2, 3, 4)):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=80)
    for name, accs in results.items():
        ax.plot(shifts, accs, "o-", label=name)
    ax.set(
        xlabel="shift of the test images (pixels right and down)",
        ylabel="test accuracy",
        title="translation robustness",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def results_table(rows: list[dict]) -> str:
    """Mean test accuracy (with the seeds' min-max range when there are several) and mean training wall
    time, per method (rows) and label budget (columns), as text."""
    summary = summarize(rows)
    budgets = sorted({(r["labels_per_class"], r["fraction"]) for r in summary})
    names = list(dict.fromkeys(r["method"] for r in summary))
    width = max(len(n) for n in names) + 2
    seeds = max(r["seeds"] for r in summary)
    cell = 32 if seeds > 1 else 22  # a cell with a seed range is 29+ characters wide
    head = "".join(f"{f'{100 * f:.3g}% ({k}/class)':>{cell}}" for k, f in budgets)
    lines = [f"{'method':<{width}}{head}"]
    for name in names:
        cells = []
        for k, _ in budgets:
            r = next((r for r in summary if r["method"] == name and r["labels_per_class"] == k), None)
            if r is None:
                cells.append("-")
                continue
            spread = f" ({r['acc_min']:.3f}-{r['acc_max']:.3f})" if r["seeds"] > 1 else ""
            cells.append(f"{r['test_acc']:.3f}{spread} in {r['train_time']:4.0f} s")
        lines.append(f"{name:<{width}}" + "".join(f"{c:>{cell}}" for c in cells))
    if seeds > 1:
        lines.append(f"mean test accuracy over {seeds} seeds (min-max in brackets), mean training time per run")
    return "\n".join(lines)
