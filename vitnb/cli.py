"""Command line: `python -m vitnb COMMAND --help`.

    python -m vitnb pretrain --dataset fractal --epochs 5 --out runs/pretrain/vit_fractal.pt
    python -m vitnb finetune --checkpoint runs/pretrain/vit_fractal.pt --labels-per-class 60 --epochs 20
    python -m vitnb evaluate --checkpoint runs/finetune/fashion_mnist.pt --shift 2

The commands call the same functions as notebooks 05-06 (`vitnb.train.fit`, `vitnb.finetune`).
Distributed: `torchrun --nproc_per_node=2 -m vitnb pretrain ...`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import data
from .config import PRESETS
from .finetune import VIT_PRESET


def model_opts(pairs: list[str]) -> dict:
    """['depth=2', 'embed_dim=48'] -> {'depth': 2, 'embed_dim': 48} (ints, floats, true/false, strings)."""
    opts = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--model-opt expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        opts[key] = {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value
    return opts


def add_model_opt_argument(p: argparse.ArgumentParser) -> None:
    """`--model-opt KEY=VALUE` (repeatable): ViTConfig fields to change; parse them with `model_opts`."""
    p.add_argument(
        "--model-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a ViTConfig field of the preset, e.g. --model-opt depth=4 (repeatable)",
    )


def _train_args(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument(
        "--labels-per-class",
        type=int,
        default=None,
        metavar="K",
        help="train on a fixed, seeded selection of K labelled examples per class (default: all)",
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: from the profile)")
    p.add_argument("--batch-size", type=int, default=256, help="batch size per process (default 256)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of AdamW (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--no-augment", action="store_true", help="no random crop + flip")
    p.add_argument("--crop-pad", type=int, default=2, help="random-crop padding in pixels; 0 = flips only (default 2)")
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "amp"],
        help="auto: bf16 autocast on CPUs with AMX/AVX512-BF16, AMP on CUDA, else fp32",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--profile",
        choices=["quick", "full"],
        default=None,
        help="run profile for the defaults (default: $VITNB_PROFILE or full)",
    )
    p.add_argument("--out", default=out, help=f"checkpoint written every epoch (default {out})")
    p.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def _load(name: str, train: bool, img_size: int | None = None):
    return data.load_dataset(name, train=train, img_size=img_size)


def _train_config(args, epochs_default: int):
    from .train import TrainConfig

    return TrainConfig(
        epochs=args.epochs or epochs_default,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        augment=not args.no_augment,
        crop_pad=args.crop_pad,
        precision=args.precision,
        seed=args.seed,
    )


def _report(history, out) -> None:
    from .train import dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        final = history.final
        val = f", val acc {final['val_acc']:.4f}" if final.get("val_acc") is not None else ""
        print(
            f"done: train acc {final['train_acc']:.4f}{val} after {final['epoch']} epochs, "
            f"{final['time']:.0f} s; checkpoint {out}"
        )


def cmd_pretrain(args) -> None:
    from .finetune import fractal_dataset, label_subset
    from .profiles import get_profile, seed_everything

    P = get_profile(args.profile)
    seed_everything(args.seed)
    if args.dataset == "fractal":
        train = fractal_dataset(
            args.fractal_classes or P.nb05_corpus_classes,
            args.fractal_per_class or P.nb05_corpus_per_class,
            args.img_size or 28,
            args.seed,
        )
        val = None
    else:
        train, val = _load(args.dataset, True, args.img_size), _load(args.dataset, False, args.img_size)
    train = label_subset(train, args.labels_per_class, args.seed)
    _fit_and_report(args, _new_model(args, train), train, val, P.nb05_epochs)


def cmd_finetune(args) -> None:
    from .finetune import from_pretrained, label_subset
    from .profiles import get_profile, seed_everything

    P = get_profile(args.profile)
    seed_everything(args.seed)
    train, val = _load(args.dataset, True, args.img_size), _load(args.dataset, False, args.img_size)
    if args.val_per_class is not None:
        val = label_subset(val, args.val_per_class, args.seed)
    train = label_subset(train, args.labels_per_class, args.seed)
    if args.checkpoint:
        model = from_pretrained(args.checkpoint, train.num_classes, img_size=train.image_shape[1], mode=args.mode)
        print(f"finetuning ({args.mode}) {args.checkpoint} on {args.dataset}, {len(train)} labelled images")
    else:
        model = _new_model(args, train)
    _fit_and_report(args, model, train, val, P.cli_finetune_epochs)


def _new_model(args, train):
    """A freshly initialised model (--model, --preset, --model-opt) shaped for the training set."""
    from .cnn import resnet18
    from .config import preset
    from .model import VisionTransformer

    c, h, _ = train.image_shape
    if args.model == "resnet18":
        return resnet18(in_chans=c, num_classes=train.num_classes, img_size=h)
    opts = model_opts(args.model_opt)
    return VisionTransformer(preset(args.preset, img_size=h, in_chans=c, num_classes=train.num_classes, **opts))


def _fit_and_report(args, model, train, val, default_epochs) -> None:
    from .train import fit

    config = _train_config(args, default_epochs)
    history = fit(model, train, val, config, checkpoint=args.out, resume=args.resume, progress=not args.no_progress)
    _report(history, args.out)


def cmd_evaluate(args) -> None:
    from .finetune import load_trained
    from .patches import shift_image
    from .train import evaluate

    model, ckpt = load_trained(args.checkpoint)
    test = _load(args.dataset, args.split == "train", args.img_size)
    transform = (lambda x: shift_image(x, args.shift, args.shift)) if args.shift else None
    acc = evaluate(model, test, precision=args.precision, transform=transform)
    shift = f", images shifted by {args.shift} px" if args.shift else ""
    print(f"{args.checkpoint}: {args.dataset} {args.split} accuracy {acc:.4f} ({len(test)} images{shift})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vitnb", description="vitnb: the Vision Transformer on a CPU")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch-data", help="put Fashion-MNIST under data/ (Debian package or download)")
    fetch.add_argument("--root", default=None, help="target folder (default: data/ or $VITNB_DATA)")
    fetch.set_defaults(func=lambda args: print(f"Fashion-MNIST ready in {data.fetch_fashion_mnist(args.root)}"))

    datasets = "fractal (generated offline), fashion_mnist, cifar10, cifar100, folder:PATH"
    pre = commands.add_parser(
        "pretrain",
        help="pretrain a model (default: a CPU-sized ViT on fractals)",
        description="Pretrain a model; the checkpoint feeds `finetune --checkpoint`.",
    )
    pre.add_argument("--dataset", default="fractal", help=f"{datasets} (default fractal)")
    pre.add_argument("--fractal-classes", type=int, default=None, help="fractal categories (default: profile)")
    pre.add_argument("--fractal-per-class", type=int, default=None, help="images per category (default: profile)")
    pre.add_argument("--img-size", type=int, default=None, help="resize images to this size (default: as stored)")
    pre.add_argument("--model", default="vit", choices=["vit", "resnet18"])
    pre.add_argument("--preset", default=VIT_PRESET, help=f"ViT preset: {', '.join(PRESETS)} (default {VIT_PRESET})")
    add_model_opt_argument(pre)
    _train_args(pre, "runs/pretrain/model.pt")
    pre.set_defaults(func=cmd_pretrain)

    fine = commands.add_parser(
        "finetune",
        help="finetune a checkpoint (or train from scratch) on a labelled set",
        description="New head, position embeddings resampled if the size changes, "
        "then linear probe or full finetuning.",
    )
    fine.add_argument("--checkpoint", default=None, help="pretrained checkpoint (omit: train from scratch)")
    fine.add_argument("--dataset", default="fashion_mnist", help=f"{datasets} (default fashion_mnist)")
    fine.add_argument("--mode", default="full", choices=["full", "linear"], help="full finetune or linear probe")
    fine.add_argument("--img-size", type=int, default=None, help="resize images to this size (default: as stored)")
    fine.add_argument("--val-per-class", type=int, default=None, help="score on K test images per class")
    fine.add_argument("--model", default="vit", choices=["vit", "resnet18"], help="architecture when from scratch")
    fine.add_argument("--preset", default=VIT_PRESET, help=f"ViT preset when from scratch (default {VIT_PRESET})")
    add_model_opt_argument(fine)
    _train_args(fine, "runs/finetune/model.pt")
    fine.set_defaults(func=cmd_finetune)

    ev = commands.add_parser("evaluate", help="accuracy of a checkpoint on a data set")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--dataset", default="fashion_mnist")
    ev.add_argument("--split", default="test", choices=["train", "test"])
    ev.add_argument("--img-size", type=int, default=None)
    ev.add_argument("--shift", type=int, default=0, help="shift the images this many pixels right and down")
    ev.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "amp"])
    ev.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if getattr(args, "profile", None):
        os.environ["VITNB_PROFILE"] = args.profile
    for name in ("out", "checkpoint"):  # paths on the command line are relative to the working folder
        if getattr(args, name, None):
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    args.func(args)
