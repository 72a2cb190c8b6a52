"""Command line: `python -m vitnb COMMAND --help`.

    python -m vitnb fetch-data
    python -m vitnb pretrain --epochs 5 --out runs/pretrain/vit_fractal.pt          # fractals, generated offline
    python -m vitnb finetune --checkpoint runs/pretrain/vit_fractal.pt --labels-per-class 60 --epochs 20
    python -m vitnb evaluate --checkpoint runs/finetune/model.pt --shift 2
    python -m vitnb predict shoe.png shirt.jpg --checkpoint runs/finetune/model.pt --top-k 3
    python -m vitnb export --checkpoint runs/finetune/model.pt                      # -> model.safetensors

Training commands call `vitnb.train.fit`, print a summary before they start and write a run folder beside
the checkpoint (`model.pt` -> `model.run/` with `config.json` and a per-epoch `metrics.csv`). A mistake on
the command line (a bad value, a missing file, a checkpoint that does not fit the data) prints one
`error: ...` line and exits with status 2; `--debug` shows the traceback instead.
Distributed: `torchrun --nproc_per_node=2 -m vitnb finetune ...`; the processes leave together once rank 0
has written everything, and an error in one prints `error: rank R: ...` and ends the run (vitnb.distributed).

The module imports neither torch nor torchvision at the top, so `--help` answers at once; the commands
import what they need.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import sys
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

from .config import PRECISIONS, PRESETS, TrainConfig, ViTConfig

PROG = "python -m vitnb"
DATASETS = ("fashion_mnist", "cifar10", "cifar100")  # and folder:PATH, an ImageFolder of your own
FRACTAL = "fractal"  # pretrain's formula-driven corpus, generated offline (vitnb.fractal)
# Defaults of the CLI's own choices (training hyper-parameters default to TrainConfig's).
RESNETS = {"resnet18": "ResNet-18", "resnet_small": "small ResNet"}  # --model choices besides vit: vitnb.cnn's
DEFAULT_PRESET = (
    "cpu_small"  # the series' ViT: patch 4, 4 blocks of width 96, about 88% on Fashion-MNIST in 10 CPU minutes
)
FRACTAL_CLASSES, FRACTAL_PER_CLASS, FRACTAL_IMG_SIZE = 1000, 40, 28  # 40,000 images, as in notebook 05


class UsageError(Exception):
    """A mistake on the command line: reported as one `error: ...` line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise `UsageError` (so `main` prints one line) instead of exiting."""

    def error(self, message: str):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# --- argument types: bad values are refused while the arguments are parsed --------------------------
def _number(cast, low: float, strict: bool):
    """An argparse type: `cast(text)`, finite and > low (strict) or >= low."""
    kind = "an integer" if cast is int else "a number"
    bound = f"{'>' if strict else '>='} {low:g}"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind} {bound}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    parse.__name__ = f"{cast.__name__} {bound}"
    return parse


positive_int = _number(int, 0, strict=True)
positive_float = _number(float, 0, strict=True)
non_negative_int = _number(int, 0, strict=False)
non_negative_float = _number(float, 0, strict=False)


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def dataset_type(*extra: str):
    """An argparse type for --dataset: one of DATASETS (or `extra`), or folder:PATH to an existing folder."""
    names = (*extra, *DATASETS)

    def parse(text: str) -> str:
        if text.startswith("folder:"):
            path = Path(text.removeprefix("folder:")).expanduser()
            if not path.is_dir():
                raise argparse.ArgumentTypeError(
                    f"no folder {path} (folder:PATH needs a folder with one sub-folder of images per class)"
                )
            return f"folder:{path.resolve()}"
        if text not in names:
            raise argparse.ArgumentTypeError(f"unknown data set {text!r}; choose {', '.join(names)} or folder:PATH")
        return text

    parse.__name__ = "data set"
    return parse


def _cast(text: str, annotation: str):
    """`text` as the type a ViTConfig field is annotated with ('int', 'float', 'bool', 'str', 'float | None')."""
    if "None" in annotation and text.lower() == "none":
        return None
    if annotation.startswith("bool"):
        if text.lower() not in ("true", "false"):
            raise ValueError
        return text.lower() == "true"
    for name, cast in (("int", int), ("float", float)):
        if annotation.startswith(name):
            return cast(text)
    return text


def model_opt(text: str) -> tuple[str, object]:
    """An argparse type: 'depth=4' -> ('depth', 4), cast to the type of that ViTConfig field."""
    key, sep, value = text.partition("=")
    annotations = {f.name: str(f.type) for f in fields(ViTConfig)}
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if key not in annotations:
        raise argparse.ArgumentTypeError(f"{key!r} is not a ViTConfig field; fields: {', '.join(annotations)}")
    try:
        return key, _cast(value, annotations[key])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{key} takes a value of type {annotations[key]}, got {value!r}") from None


def model_opts(pairs: list) -> dict:
    """['depth=2', 'embed_dim=48'] (or the pairs `model_opt` parsed them into) -> {'depth': 2, 'embed_dim': 48}."""
    return dict(pair if isinstance(pair, tuple) else model_opt(pair) for pair in pairs)


def add_model_opt_argument(p: argparse.ArgumentParser) -> None:
    """`--model-opt KEY=VALUE` (repeatable): ViTConfig fields to change; `model_opts(args.model_opt)` -> dict."""
    p.add_argument(
        "--model-opt",
        action="append",
        type=model_opt,
        default=[],
        metavar="KEY=VALUE",
        help="change a ViTConfig field of the preset, e.g. --model-opt depth=4 (repeatable)",
    )


# --- options shared by the commands -------------------------------------------------------------
# TrainConfig field -> (argparse type, help). Defaults are TrainConfig's own; `augment`, `eval_flip` and
# `precision` have options of their own (--no-augment, --eval-flip, --precision).
TRAIN_OPTIONS = {
    "epochs": (positive_float, "epochs to train; a fraction trains part of the last one"),
    "batch_size": (positive_int, "images per optimizer step and process"),
    "lr": (positive_float, "peak learning rate of AdamW, reached after the warmup"),
    "min_lr": (non_negative_float, "learning rate at the end of the cosine decay"),
    "warmup_epochs": (non_negative_float, "epochs of linear learning-rate warmup"),
    "weight_decay": (non_negative_float, "AdamW weight decay (not on biases, norms, position embeddings)"),
    "label_smoothing": (fraction, "label smoothing of the cross-entropy loss"),
    "grad_clip": (non_negative_float, "largest gradient norm; 0 turns clipping off"),
    "crop_pad": (non_negative_int, "padding in pixels of the random crop; 0 = flips only"),
    "seed": (non_negative_int, "seed of the initialisation, the data order and the augmentation"),
    "eval_batch_size": (positive_int, "images per batch when scoring the validation set"),
    "ema_decay": (fraction, "decay of the moving average of the weights that is validated and saved; 0 = off"),
}


def _add_common(p: argparse.ArgumentParser) -> None:
    """--debug on every command (also accepted before the command name)."""
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: $VITNB_DEVICE, else the best)")


def _add_precision(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--precision",
        default=default,
        choices=PRECISIONS,
        help="auto: AMP on CUDA, bf16 autocast on CPUs with AMX/AVX512-BF16, else fp32 (default: %(default)s)",
    )


def _add_train_options(p: argparse.ArgumentParser, out: str) -> None:
    """The TrainConfig options, --labels-per-class, --out and what to do with an existing one."""
    defaults = TrainConfig()
    p.add_argument(
        "--labels-per-class",
        type=positive_int,
        default=None,
        metavar="K",
        help="train on a fixed, seeded selection of K labelled images per class (default: all)",
    )
    for name, (type_, help_) in TRAIN_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, type=type_, default=getattr(defaults, name), help=f"{help_} (default: %(default)s)")
    p.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        default=defaults.augment,
        help="no random crop and flip",
    )
    p.add_argument(
        "--eval-flip",
        action="store_true",
        default=defaults.eval_flip,
        help="validate on each image and its mirror image (mean of the two softmaxes)",
    )
    _add_precision(p, defaults.precision)
    _add_device(p)
    p.add_argument(
        "--out",
        type=Path,
        default=Path(out),
        metavar="PATH",
        help="checkpoint, written after every epoch; its run folder (config.json, metrics.csv) is the same "
        "path with .run instead of the suffix (default: %(default)s)",
    )
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run saved in --out (if it exists)")
    again.add_argument("--overwrite", action="store_true", help="start afresh even if --out exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch only)")
    p.add_argument(
        "--dist-timeout",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="under torchrun: how long a process waits for the others (to start, in each exchange, at the end) "
        "before it gives up with an error (default: $VITNB_DIST_TIMEOUT, else 300)",
    )


def _add_model_options(p: argparse.ArgumentParser, when: str = "") -> None:
    p.add_argument("--model", default=None, choices=["vit", *RESNETS], help=f"architecture{when} (default: vit)")
    p.add_argument(
        "--preset",
        default=None,
        choices=list(PRESETS),
        help=f"ViT preset{when}; the data set sets img_size, in_chans and num_classes (default: {DEFAULT_PRESET})",
    )
    add_model_opt_argument(p)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `python -m vitnb` and its commands."""
    parser = Parser(prog=PROG, description="vitnb: the Vision Transformer on a CPU")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="what to do; `python -m vitnb COMMAND --help` for its options",
    )

    def command(name: str, func, help_: str, description: str | None = None) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help_, description=description or help_)
        _add_common(p)
        p.set_defaults(func=func)
        return p

    fetch = command("fetch-data", cmd_fetch_data, "put Fashion-MNIST under data/ (Debian package or download)")
    fetch.add_argument(
        "--root", type=Path, default=None, metavar="PATH", help="target folder (default: $VITNB_DATA, else data/)"
    )

    pre = command(
        "pretrain",
        cmd_pretrain,
        "pretrain a model (default: a CPU-sized ViT on fractals)",
        "Pretrain a model; its checkpoint feeds `finetune --checkpoint`. The default data set is a corpus "
        "of fractal categories generated offline and cached under data/fractal.",
    )
    names = f"{FRACTAL}, {', '.join(DATASETS)} or folder:PATH"
    pre.add_argument(
        "--dataset", type=dataset_type(FRACTAL), default=FRACTAL, metavar="NAME", help=f"{names} (default: %(default)s)"
    )
    pre.add_argument(
        "--fractal-classes",
        type=positive_int,
        default=FRACTAL_CLASSES,
        help="fractal categories (default: %(default)s)",
    )
    pre.add_argument(
        "--fractal-per-class",
        type=positive_int,
        default=FRACTAL_PER_CLASS,
        help="fractal images per category (default: %(default)s)",
    )
    pre.add_argument(
        "--img-size",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"image size: fractals are drawn at it (default {FRACTAL_IMG_SIZE}), other images resized to it",
    )
    _add_model_options(pre)
    _add_train_options(pre, "runs/pretrain/model.pt")

    fine = command(
        "finetune",
        cmd_finetune,
        "finetune a checkpoint (or train from scratch) on a labelled data set",
        "Finetune a checkpoint: a new head for the data set's classes, position embeddings resampled if "
        "the image size differs, then full finetuning or a linear probe. Without --checkpoint, train a "
        "new model from scratch.",
    )
    fine.add_argument(
        "--checkpoint", type=Path, default=None, metavar="PATH", help="pretrained checkpoint (omit: from scratch)"
    )
    names = f"{', '.join(DATASETS)} or folder:PATH"
    fine.add_argument(
        "--dataset", type=dataset_type(), metavar="NAME", default=DATASETS[0], help=f"{names} (default: %(default)s)"
    )
    fine.add_argument(
        "--mode",
        default="full",
        choices=["full", "linear"],
        help="full: train every weight; linear: only the new head (default: %(default)s)",
    )
    fine.add_argument("--img-size", type=positive_int, default=None, metavar="N", help="resize images to this size")
    fine.add_argument(
        "--val-per-class", type=positive_int, default=None, metavar="K", help="validate on K test images per class"
    )
    _add_model_options(fine, " when training from scratch")
    _add_train_options(fine, "runs/finetune/model.pt")

    ev = command(
        "evaluate",
        cmd_evaluate,
        "accuracy of a checkpoint on a data set",
        "Accuracy of a checkpoint on a data set, preprocessed as the checkpoint's training data was (image "
        "size, channels, normalisation). The data set must have the checkpoint's classes.",
    )
    ev.add_argument("--checkpoint", type=Path, required=True, metavar="PATH", help="checkpoint to score")
    ev.add_argument(
        "--dataset",
        type=dataset_type(),
        metavar="NAME",
        default=None,
        help=f"{names} (default: the checkpoint's data set)",
    )
    ev.add_argument("--split", default="test", choices=["train", "test"], help="split to score (default: %(default)s)")
    ev.add_argument(
        "--shift", type=int, default=0, metavar="PX", help="shift the images this many pixels right and down"
    )
    ev.add_argument(
        "--batch-size",
        type=positive_int,
        default=TrainConfig().eval_batch_size,
        help="images per batch (default: %(default)s)",
    )
    _add_precision(ev, "auto")
    _add_device(ev)

    pred = command(
        "predict",
        cmd_predict,
        "classify image files (PNG, JPEG) with a checkpoint",
        "Classify image files with a checkpoint, preprocessed as its training data was: converted to its "
        "channels, resized and centre-cropped to its image size, normalised with its mean and std.",
    )
    pred.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files to classify")
    pred.add_argument("--checkpoint", type=Path, required=True, metavar="PATH", help="checkpoint to classify with")
    pred.add_argument("--top-k", type=positive_int, default=5, help="classes to list per image (default: %(default)s)")
    _add_device(pred)

    exp = command(
        "export",
        cmd_export,
        "write a checkpoint's weights as .safetensors, for sharing",
        "Write a checkpoint's weights alone as a .safetensors file (config, classes and preprocessing go in "
        "its metadata).",
    )
    exp.add_argument("--checkpoint", type=Path, required=True, metavar="PATH", help="checkpoint to export")
    exp.add_argument(
        "--out", type=Path, default=None, metavar="PATH", help="output file (default: the checkpoint's, .safetensors)"
    )
    exp.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return parser


# --- data --------------------------------------------------------------------------------------
@contextmanager
def _data_errors():
    """vitnb.data raises RuntimeError for a data set neither on disk nor downloadable: a usage error here."""
    try:
        yield
    except RuntimeError as err:
        raise UsageError(str(err)) from err


def _load(name: str, train: bool, img_size: int | None = None):
    """A data set by name (see `vitnb.data.load_dataset`)."""
    from .data import load_dataset

    with _data_errors():
        return load_dataset(name, train=train, img_size=img_size)


def _fractal_corpus(args):
    """The fractal corpus (cached under data/fractal) as a data set."""
    from . import fractal

    size = FRACTAL_IMG_SIZE if args.img_size is None else args.img_size
    return fractal.dataset(args.fractal_classes, args.fractal_per_class, size, args.seed, progress=not args.no_progress)


def _checkpoint_transform(image_shape):
    """The checkpoint's preprocessing of uint8 images (PIL or tensors (..., C, H, W)): convert to its
    channels, resize the shorter side to its size and centre-crop, as `vitnb.data` loads image folders."""
    from torchvision.transforms import v2

    c, h, w = image_shape
    if c not in (1, 3):
        raise ValueError(f"the checkpoint expects {c}-channel images; only 1 (grayscale) and 3 (RGB) are supported")
    return v2.Compose(
        [v2.Grayscale() if c == 1 else v2.RGB(), v2.Resize(min(h, w), antialias=True), v2.CenterCrop([h, w])]
    )


def _as_checkpoint_input(images, labels, classes, data: dict, name: str = ""):
    """uint8 images, a tensor (N, C, H, W) or a list of (C, H, W) of any sizes, as a data set prepared as
    the checkpoint's training data was: its channels, image size and normalisation."""
    import torch

    from .data import ImageTensorDataset

    transform = _checkpoint_transform(data["image_shape"])
    images = transform(images) if torch.is_tensor(images) else torch.stack([transform(image) for image in images])
    return ImageTensorDataset(images, labels, classes, data["mean"], data["std"], name=name)


# --- training ----------------------------------------------------------------------------------
def _rank0() -> bool:
    """True in the process that prints and writes files (rank 0 under torchrun, else the only one)."""
    return os.environ.get("RANK", "0") == "0"


def _say(*lines: str) -> None:
    if _rank0():
        print(*lines, sep="\n", flush=True)


def run_folder(out: Path) -> Path:
    """Where a run's config.json and metrics.csv go: `runs/x/model.pt` -> `runs/x/model.run/`."""
    return out.with_suffix(".run")


def _check_out(args) -> None:
    """Refuse to replace an existing checkpoint unless the user said --resume or --overwrite."""
    out = args.out
    if out.suffix == ".run":
        raise UsageError(f"--out {out} ends in .run, the suffix of run folders; use e.g. {out.with_suffix('.pt')}")
    if out.exists() and not (args.resume or args.overwrite):
        raise UsageError(f"{out} exists; pass --resume to continue that run or --overwrite to replace it")


def _train_config(args):
    names = [*TRAIN_OPTIONS, "augment", "eval_flip", "precision"]
    return TrainConfig(**{name: getattr(args, name) for name in names})


def _check_model_args(args) -> None:
    """Refuse model options that would be ignored or overridden, before any data is loaded."""
    opts = model_opts(args.model_opt)
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint is not None:
        given = [
            flag for flag, value in (("--model", args.model), ("--preset", args.preset), ("--model-opt", opts)) if value
        ]
        if given:
            raise UsageError(
                f"--checkpoint {checkpoint} brings its own model, so {' and '.join(given)} would be ignored; "
                f"drop one or the other"
            )
    elif getattr(args, "mode", "full") == "linear":
        raise UsageError("--mode linear trains the head of a pretrained model; pass --checkpoint")
    if args.model in RESNETS and (opts or args.preset):
        raise UsageError(f"--preset and --model-opt build a ViT; --model {args.model} takes neither")
    clash = sorted(set(opts) & {"img_size", "in_chans", "num_classes"})
    if clash:
        raise UsageError(f"--model-opt {', '.join(clash)}: set by the data set (use --img-size to resize images)")


def _new_model(args, train):
    """A freshly initialised model (--model, --preset, --model-opt) shaped for the training set, and its name."""
    from . import cnn
    from .config import preset
    from .model import VisionTransformer

    c, h, _ = train.image_shape
    if args.model in RESNETS:
        model = getattr(cnn, args.model)(in_chans=c, num_classes=train.num_classes, img_size=h)
        return model, f"new {RESNETS[args.model]}"
    name = args.preset or DEFAULT_PRESET
    cfg = preset(name, img_size=h, in_chans=c, num_classes=train.num_classes, **model_opts(args.model_opt))
    return VisionTransformer(cfg), f"new ViT (preset {name})"


def _summary(args, model, train, val, device, precision, source: str) -> list[str]:
    """What a run is about to do, in four lines: model, data, device and precision, output."""
    from .checkpoint import model_kind
    from .model import num_params

    total, trainable = num_params(model, trainable_only=False), num_params(model)
    params = f"{total:,} parameters" + (f" ({trainable:,} trainable)" if trainable != total else "")
    sizes = f"{len(train):,} training images" + (f" / {len(val):,} validation" if val else ", no validation set")
    shape = "x".join(map(str, train.image_shape))
    return [
        f"model     {model_kind(model)}, {params}, {source}",
        f"data      {train.name}: {sizes} ({shape}, {train.num_classes} classes)",
        f"device    {device}, precision {precision}",
        f"output    {args.out} (run folder {run_folder(args.out)})",
    ]


def _write_config(folder: Path, args, model, train, val, cfg, device, precision, source: str) -> None:
    """config.json: the command line, model, training configuration, data set and device of a run."""
    from .checkpoint import model_kind
    from .model import num_params

    config = {
        "command": shlex.join([*PROG.split(), *args.argv]),
        "model": {"kind": model_kind(model), "config": model.cfg.to_dict(), "parameters": num_params(model, False)},
        "init": source,
        "train": cfg.to_dict(),
        "data": {
            **train.meta(),
            "train_size": len(train),
            "val_size": None if val is None else len(val),
            "labels_per_class": args.labels_per_class,
        },
        "device": str(device),
        "precision": precision,
        "checkpoint": str(args.out.resolve()),
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


class MetricsWriter:
    """A `fit` callback appending one row per finished epoch to metrics.csv (header from the first record)."""

    def __init__(self, path: Path, history: list[dict]):
        self.path = path
        path.unlink(missing_ok=True)
        for record in history:  # a resumed run starts with the epochs its checkpoint holds
            self(record["epoch"], record, None)

    def __call__(self, epoch: int, record: dict, model) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(record))
            if new:
                writer.writeheader()
            writer.writerow(record)


def _train(args, model, source: str, train, val) -> None:
    """Print the summary, write the run folder, train with `fit`, report the result."""
    from .checkpoint import load_checkpoint
    from .runtime import pick_device, resolve_precision
    from .train import fit

    cfg = _train_config(args)
    device = pick_device(args.device)
    precision = resolve_precision(cfg.precision, device)
    _say(*_summary(args, model, train, val, device, precision, source))
    callbacks = ()
    if _rank0():
        folder = run_folder(args.out)
        _write_config(folder, args, model, train, val, cfg, device, precision, source)
        history = load_checkpoint(args.out).get("history", []) if args.resume and args.out.exists() else []
        callbacks = (MetricsWriter(folder / "metrics.csv", history),)
    history = fit(
        model,
        train,
        val,
        cfg,
        checkpoint=args.out,
        resume=args.resume,
        device=device,
        progress=not args.no_progress,
        callbacks=callbacks,
    )
    final = history.final
    val_acc = f", val acc {final['val_acc']:.4f}" if final.get("val_acc") is not None else ""
    _say(
        f"done: train acc {final['train_acc']:.4f}{val_acc} after {final['epoch']} epochs, "
        f"{final['time']:.0f} s; checkpoint {args.out}"
    )


# --- commands ----------------------------------------------------------------------------------
def cmd_fetch_data(args) -> None:
    from .data import fetch_fashion_mnist

    with _data_errors():
        print(f"Fashion-MNIST ready in {fetch_fashion_mnist(args.root)}")


def cmd_pretrain(args) -> None:
    from .runtime import seed_everything

    _check_out(args)
    _check_model_args(args)
    seed_everything(args.seed)
    if args.dataset == FRACTAL:
        train, val = _fractal_corpus(args), None
    else:
        train, val = _load(args.dataset, True, args.img_size), _load(args.dataset, False, args.img_size)
    train = train.per_class_subset(args.labels_per_class, args.seed)
    _train(args, *_new_model(args, train), train, val)


def cmd_finetune(args) -> None:
    from .runtime import seed_everything
    from .train import freeze_all_but_head

    _check_out(args)
    _check_model_args(args)
    seed_everything(args.seed)
    train, val = _load(args.dataset, True, args.img_size), _load(args.dataset, False, args.img_size)
    val = val.per_class_subset(args.val_per_class, args.seed)
    train = train.per_class_subset(args.labels_per_class, args.seed)
    if args.checkpoint is None:
        model, source = _new_model(args, train)
    else:
        from .checkpoint import load_model

        model, _ = load_model(args.checkpoint, num_classes=train.num_classes, img_size=train.image_shape[1])
        if args.mode == "linear":
            freeze_all_but_head(model)
        source = f"{'linear probe' if args.mode == 'linear' else 'finetuning'} of {args.checkpoint}"
    _train(args, model.train(), source, train, val)


def _preprocessing(path: Path, ckpt: dict) -> dict:
    """The checkpoint's data record (name, classes, image_shape, mean, std); a UsageError if it lacks one."""
    data = ckpt.get("data") or {}
    missing = [key for key in ("classes", "image_shape", "mean", "std") if data.get(key) is None]
    if missing:
        raise UsageError(
            f"{path} records no {', '.join(missing)} of its training data, so its images cannot be prepared; "
            f"save it with vitnb.save_model(path, model, dataset=train_set)"
        )
    return data


def cmd_evaluate(args) -> None:
    from .checkpoint import check_compatible, load_model
    from .patches import shift_image
    from .train import evaluate

    model, ckpt = load_model(args.checkpoint)
    data = _preprocessing(args.checkpoint, ckpt)
    name = args.dataset or data["name"]
    if not (name in DATASETS or name.startswith("folder:")):
        trained_on = f"the data set {name!r}" if name else "a data set without a name"
        raise UsageError(f"{args.checkpoint} was trained on {trained_on}, which evaluate cannot load; pass --dataset")
    test = _load(name, args.split == "train", data["image_shape"][-1])
    test = _as_checkpoint_input(test.images, test.labels, test.classes, data, test.name)
    check_compatible(ckpt, test)
    transform = (lambda x: shift_image(x, args.shift, args.shift)) if args.shift else None
    acc = evaluate(
        model, test, batch_size=args.batch_size, precision=args.precision, device=args.device, transform=transform
    )
    shift = f", images shifted by {args.shift} px" if args.shift else ""
    print(f"{args.checkpoint}: {name} {args.split} accuracy {acc:.4f} ({len(test):,} images{shift})")


def _read_image(path: Path):
    """An image file as a uint8 RGB tensor (3, H, W), as torchvision's ImageFolder reads it."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import v2

    if not path.is_file():
        raise UsageError(f"no image file {path}")
    try:
        with Image.open(path) as image:
            return v2.functional.pil_to_tensor(image.convert("RGB"))
    except UnidentifiedImageError:
        raise UsageError(f"{path} is not an image file PIL can read (PNG or JPEG expected)") from None


def cmd_predict(args) -> None:
    import torch

    from .checkpoint import load_model
    from .runtime import pick_device

    model, ckpt = load_model(args.checkpoint)
    data = _preprocessing(args.checkpoint, ckpt)
    images = [_read_image(path) for path in args.images]
    batch = _as_checkpoint_input(images, torch.zeros(len(images)), data["classes"], data)
    x = batch.normalize(batch.images)  # (N, C, H, W)
    device = pick_device(args.device)
    with torch.inference_mode():
        probs = model.to(device)(x.to(device)).float().softmax(-1).cpu()  # (N, num_classes)
    top = probs.topk(min(args.top_k, probs.shape[1]))
    for path, values, indices in zip(args.images, top.values, top.indices, strict=True):
        print(path)
        for p, i in zip(values.tolist(), indices.tolist(), strict=True):
            print(f"  {p:7.2%}  {data['classes'][i]}")


def cmd_export(args) -> None:
    from .checkpoint import export_safetensors

    out = args.out or args.checkpoint.with_suffix(".safetensors")
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it")
    export_safetensors(args.checkpoint, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


# --- entry point -------------------------------------------------------------------------------
def _one_line(err: BaseException) -> str:
    """The message of an error on one line (OSErrors as 'file: reason')."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).splitlines()) or type(err).__name__


def _join_group(args) -> bool:
    """Under torchrun, join the process group before a training command loads anything; True if joined.

    `main` leaves it: every process at a final barrier once rank 0 has written the checkpoint and the run
    folder, or, on an error, at once after printing its error line, so the others stop instead of waiting for
    it (see vitnb.distributed)."""
    if not hasattr(args, "dist_timeout") or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    from .distributed import init_distributed
    from .runtime import pick_device

    init_distributed(pick_device(args.device), args.dist_timeout)
    return True


def _leave_group(ok: bool) -> None:
    from .distributed import leave

    leave(ok)


def _error(message: str, cause: bool = True) -> None:
    """Print `error: MESSAGE` to stderr. Under torchrun the line reads `error: rank R: MESSAGE`, so it says which
    process failed, and a process that failed by itself (`cause`) also hands the line to torchrun's summary."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        print(f"error: {message}", file=sys.stderr, flush=True)
        return
    line = f"error: rank {os.environ.get('RANK', '0')}: {message}"
    # One write for the line and its newline: the ranks share stderr, and print's two writes can interleave.
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    if cause:
        from .distributed import report_to_torchrun

        report_to_torchrun(line)


def _lost_contact(err: BaseException, args) -> str | None:
    """The message for an error of the process group itself (a peer gone, a timeout), else None."""
    if "vitnb.distributed" not in sys.modules:  # no process group was joined (and --help stays torch-free)
        return None
    from .distributed import is_distributed_error, lost_contact

    return lost_contact(err, getattr(args, "dist_timeout", None)) if is_distributed_error(err) else None


def main(argv: list[str] | None = None) -> int:
    """Run `python -m vitnb ARGV`; returns the exit status (0 done, 1 training failed, 2 a usage error,
    130 interrupted).

    Usage errors (bad arguments, missing or unsuitable files and data) print one `error: ...` line to
    stderr; so do a diverged training run (non-finite loss) and, under torchrun, a process that lost the
    others (one failed or timed out): then the line starts `error: rank R:`. With --debug they raise, with
    their traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    args, joined = None, False
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        joined = _join_group(args)
        args.func(args)
        if joined:
            joined = False
            _leave_group(ok=True)  # the final barrier: its errors are reported below like any other
    except SystemExit as exit_:  # --help
        return exit_.code or 0
    except (UsageError, ValueError, OSError) as err:
        if debug:
            raise
        _error(_one_line(err))
        return 2
    except FloatingPointError as err:  # training diverged: every rank stops at the same step (see vitnb.train)
        if debug:
            raise
        _error(_one_line(err))
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        _error("interrupted")
        return 130
    except Exception as err:
        message = None if debug else _lost_contact(err, args)
        if message is None:
            raise
        _error(message, cause=False)
        return 1
    finally:
        if joined:  # after the error line is printed: the others learn of the failure when the group closes
            _leave_group(ok=False)
    return 0
