"""The argument parser of `python -m vitnb` and its commands, with argument types that refuse bad values while the
arguments are parsed. Imports neither torch nor torchvision, so `--help` answers at once."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..config import PRECISIONS, PRESETS, SERIES_PRESET, TrainConfig, parse_vit_changes
from ..errors import UsageError

__all__ = ["DATASETS", "FRACTAL", "PROG", "RESNETS", "TRAIN_OPTIONS", "build_parser"]

PROG = "python -m vitnb"
DATASETS = ("fashion_mnist", "cifar10", "cifar100")  # and folder:PATH, an ImageFolder of your own
FRACTAL = "fractal"  # pretrain's formula-driven corpus, generated offline (vitnb.fractal)
# Defaults of the CLI's own choices (training hyper-parameters default to TrainConfig's).
RESNETS = {"resnet18": "ResNet-18", "resnet_small": "small ResNet"}  # --model choices besides vit: vitnb.cnn's
FRACTAL_CLASSES, FRACTAL_PER_CLASS, FRACTAL_IMG_SIZE = 1000, 40, 28  # 40,000 images, as in notebook 05


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


_positive_int = _number(int, 0, strict=True)
_positive_float = _number(float, 0, strict=True)
_non_negative_int = _number(int, 0, strict=False)
_non_negative_float = _number(float, 0, strict=False)


def _fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    value = _non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _dataset_type(*extra: str):
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


def _checkpoint_file(text: str) -> Path:
    """An argparse type: the path of an existing file (a checkpoint to read)."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no checkpoint at {path}; train one first (see `{PROG} finetune --help`)")
    return path


def _model_opt(text: str) -> str:
    """An argparse type: KEY=VALUE for a ViTConfig field, checked here and parsed by `parse_vit_changes`."""
    try:
        parse_vit_changes([text])
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


# --- options shared by the commands -------------------------------------------------------------
# TrainConfig field -> (argparse type, help). Defaults are TrainConfig's own; `augment`, `eval_flip` and
# `precision` have options of their own (--no-augment, --eval-flip, --precision).
TRAIN_OPTIONS = {
    "epochs": (_positive_float, "epochs to train; a fraction trains part of the last one"),
    "batch_size": (_positive_int, "images per optimizer step and process"),
    "lr": (_positive_float, "peak learning rate of AdamW, reached after the warmup"),
    "min_lr": (_non_negative_float, "learning rate at the end of the cosine decay"),
    "warmup_epochs": (_non_negative_float, "epochs of linear learning-rate warmup"),
    "weight_decay": (_non_negative_float, "AdamW weight decay (not on biases, norms, position embeddings)"),
    "label_smoothing": (_fraction, "label smoothing of the cross-entropy loss"),
    "grad_clip": (_non_negative_float, "largest gradient norm; 0 turns clipping off"),
    "crop_pad": (_non_negative_int, "padding in pixels of the random crop; 0 = flips only"),
    "seed": (_non_negative_int, "seed of the initialisation, the data order and the augmentation"),
    "eval_batch_size": (_positive_int, "images per batch when scoring the validation set"),
    "ema_decay": (_fraction, "decay of the moving average of the weights that is validated and saved; 0 = off"),
}


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
        type=_positive_int,
        default=None,
        metavar="K",
        help="train on a fixed, seeded selection of K labelled images per class (default: all)",
    )
    for name, (type_, help_) in TRAIN_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, type=type_, default=getattr(defaults, name), help=f"{help_} (default: %(default)s)")
    p.add_argument(
        "--no-augment", dest="augment", action="store_false", default=defaults.augment, help="no random crop and flip"
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
        type=_positive_float,
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
        help=f"ViT preset{when}; the data set sets img_size, in_chans and num_classes (default: {SERIES_PRESET})",
    )
    p.add_argument(
        "--model-opt",
        action="append",
        type=_model_opt,
        default=[],
        metavar="KEY=VALUE",
        help="change a ViTConfig field of the preset, e.g. --model-opt depth=4 (repeatable)",
    )


# --- the commands ------------------------------------------------------------------------------
def _add_fetch_data(commands) -> None:
    p = _command(commands, "fetch-data", "put Fashion-MNIST under data/ (Debian package or download)")
    p.add_argument(
        "--root", type=Path, default=None, metavar="PATH", help="target folder (default: $VITNB_DATA, else data/)"
    )


def _add_pretrain(commands) -> None:
    p = _command(
        commands,
        "pretrain",
        "pretrain a model (default: a CPU-sized ViT on fractals)",
        "Pretrain a model; its checkpoint feeds `finetune --checkpoint`. The default data set is a corpus "
        "of fractal categories generated offline and cached under data/fractal.",
    )
    names = f"{FRACTAL}, {', '.join(DATASETS)} or folder:PATH"
    p.add_argument(
        "--dataset",
        type=_dataset_type(FRACTAL),
        default=FRACTAL,
        metavar="NAME",
        help=f"{names} (default: %(default)s)",
    )
    p.add_argument(
        "--fractal-classes",
        type=_positive_int,
        default=FRACTAL_CLASSES,
        help="fractal categories (default: %(default)s)",
    )
    p.add_argument(
        "--fractal-per-class",
        type=_positive_int,
        default=FRACTAL_PER_CLASS,
        help="fractal images per category (default: %(default)s)",
    )
    p.add_argument(
        "--img-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"image size: fractals are drawn at it (default {FRACTAL_IMG_SIZE}), other images resized to it",
    )
    _add_model_options(p)
    _add_train_options(p, "runs/pretrain/model.pt")


def _add_finetune(commands) -> None:
    p = _command(
        commands,
        "finetune",
        "finetune a checkpoint (or train from scratch) on a labelled data set",
        "Finetune a checkpoint: a new head for the data set's classes, position embeddings resampled if "
        "the image size differs, then full finetuning or a linear probe. Without --checkpoint, train a "
        "new model from scratch.",
    )
    p.add_argument(
        "--checkpoint",
        type=_checkpoint_file,
        default=None,
        metavar="PATH",
        help="pretrained checkpoint (omit: from scratch)",
    )
    _add_dataset(p, DATASETS[0])
    p.add_argument(
        "--mode",
        default="full",
        choices=["full", "linear"],
        help="full: train every weight; linear: only the new head (default: %(default)s)",
    )
    p.add_argument("--img-size", type=_positive_int, default=None, metavar="N", help="resize images to this size")
    p.add_argument(
        "--val-per-class", type=_positive_int, default=None, metavar="K", help="validate on K test images per class"
    )
    _add_model_options(p, " when training from scratch")
    _add_train_options(p, "runs/finetune/model.pt")


def _add_evaluate(commands) -> None:
    p = _command(
        commands,
        "evaluate",
        "accuracy of a checkpoint on a data set",
        "Accuracy of a checkpoint on a data set, preprocessed as the checkpoint's training data was (image "
        "size, channels, normalisation). The data set must have the checkpoint's classes.",
    )
    p.add_argument("--checkpoint", type=_checkpoint_file, required=True, metavar="PATH", help="checkpoint to score")
    _add_dataset(p)
    p.add_argument("--split", default="test", choices=["train", "test"], help="split to score (default: %(default)s)")
    p.add_argument(
        "--shift", type=int, default=0, metavar="PX", help="shift the images this many pixels right and down"
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=TrainConfig().eval_batch_size,
        help="images per batch (default: %(default)s)",
    )
    _add_precision(p, "auto")
    _add_device(p)


def _add_predict(commands) -> None:
    p = _command(
        commands,
        "predict",
        "classify image files (PNG, JPEG) with a checkpoint",
        "Classify image files with a checkpoint, preprocessed as its training data was: converted to its "
        "channels, resized and centre-cropped to its image size, normalised with its mean and std.",
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files to classify")
    p.add_argument(
        "--checkpoint", type=_checkpoint_file, required=True, metavar="PATH", help="checkpoint to classify with"
    )
    p.add_argument("--top-k", type=_positive_int, default=5, help="classes to list per image (default: %(default)s)")
    _add_device(p)


def _add_export(commands) -> None:
    p = _command(
        commands,
        "export",
        "write a checkpoint's weights as .safetensors, for sharing",
        "Write a checkpoint's weights alone as a .safetensors file (config, classes and preprocessing go in "
        "its metadata).",
    )
    p.add_argument("--checkpoint", type=_checkpoint_file, required=True, metavar="PATH", help="checkpoint to export")
    p.add_argument(
        "--out", type=Path, default=None, metavar="PATH", help="output file (default: the checkpoint's, .safetensors)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def _add_explore(commands) -> None:
    p = _command(
        commands,
        "explore",
        "write a ViT's attention explorer as one HTML page (no kernel, no network needed)",
        "Write the attention explorer of a ViT checkpoint as one self-contained HTML page: every map (raw attention "
        "per block and head, rollout, gradient rollout per class, every query) of a few images, precomputed, with "
        "the controls of the notebook's explorer. Open it in any browser.",
    )
    p.add_argument("--checkpoint", type=_checkpoint_file, required=True, metavar="PATH", help="a ViT checkpoint")
    p.add_argument(
        "--out", type=Path, default=Path("explorer.html"), metavar="PATH", help="page to write (default: %(default)s)"
    )
    p.add_argument(
        "--images", type=_positive_int, default=12, metavar="N", help="images on the page (default: %(default)s)"
    )
    _add_dataset(p)
    p.add_argument("--split", default="test", choices=["train", "test"], help="split to show (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def _add_dataset(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """--dataset NAME (a named data set or folder:PATH); without a default, the checkpoint's own data set."""
    shown = "%(default)s" if default else "the checkpoint's data set"
    p.add_argument(
        "--dataset",
        type=_dataset_type(),
        metavar="NAME",
        default=default,
        help=f"{', '.join(DATASETS)} or folder:PATH (default: {shown})",
    )


def _command(commands, name: str, help_: str, description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command's parser, with --debug (also accepted before the command name)."""
    p = commands.add_parser(name, help=help_, description=description or help_)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The parser of `python -m vitnb` and its commands; `args.command` names the command to run."""
    parser = Parser(prog=PROG, description="vitnb: the Vision Transformer on a CPU")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="what to do; `python -m vitnb COMMAND --help` for its options",
    )
    for add in (_add_fetch_data, _add_pretrain, _add_finetune, _add_evaluate, _add_predict, _add_export, _add_explore):
        add(commands)
    return parser
