"""The commands of `python -m vitnb`: each takes the parsed arguments and does its work through the library.

Training commands print a summary, write a run folder beside the checkpoint (vitnb.runs) and call
`vitnb.train.fit`; evaluate and predict prepare images as the checkpoint's training data was (vitnb.data's
`preprocess`). The module imports torch only inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

import os
import shlex

from ..config import SERIES_PRESET, TrainConfig, parse_vit_changes
from ..errors import UsageError
from .parser import DATASETS, FRACTAL, FRACTAL_IMG_SIZE, PROG, RESNETS, TRAIN_OPTIONS

__all__ = ["COMMANDS"]


def _rank0() -> bool:
    """True in the process that prints and writes files (rank 0 under torchrun, else the only one)."""
    return os.environ.get("RANK", "0") == "0"


def _say(*lines: str) -> None:
    if _rank0():
        print(*lines, sep="\n", flush=True)


# --- data --------------------------------------------------------------------------------------
def _load(name: str, train: bool, img_size: int | None = None):
    """A data set by name (see `vitnb.data.load_dataset`)."""
    from ..data import load_dataset

    return load_dataset(name, train=train, img_size=img_size)


def _fractal_corpus(args):
    """The fractal corpus (cached under data/fractal) as a data set."""
    from .. import fractal

    size = FRACTAL_IMG_SIZE if args.img_size is None else args.img_size
    return fractal.dataset(args.fractal_classes, args.fractal_per_class, size, args.seed, progress=not args.no_progress)


def _recorded_preprocessing(path, ckpt: dict) -> dict:
    """The checkpoint's data record (name, classes, image_shape, mean, std); a UsageError if it lacks one."""
    data = ckpt.get("data") or {}
    missing = [key for key in ("classes", "image_shape", "mean", "std") if data.get(key) is None]
    if missing:
        raise UsageError(
            f"{path} records no {', '.join(missing)} of its training data, so its images cannot be prepared; "
            f"save it with vitnb.save_model(path, model, dataset=train_set)"
        )
    return data


# --- training ----------------------------------------------------------------------------------
def _check_out(args) -> None:
    """Refuse to replace an existing checkpoint unless the user said --resume or --overwrite."""
    from ..runs import RunFolder

    RunFolder(args.out)  # refuses a checkpoint path that is a run folder's
    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; name the checkpoint file, e.g. {args.out / 'model.pt'}")
    if args.out.exists() and not (args.resume or args.overwrite):
        raise UsageError(f"{args.out} exists; pass --resume to continue that run or --overwrite to replace it")


def _train_config(args) -> TrainConfig:
    names = [*TRAIN_OPTIONS, "augment", "eval_flip", "precision"]
    return TrainConfig(**{name: getattr(args, name) for name in names})


def _check_model_args(args) -> None:
    """Refuse model options that would be ignored or overridden, before any data is loaded."""
    opts = parse_vit_changes(args.model_opt)
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
    from .. import cnn
    from ..config import preset
    from ..model import VisionTransformer

    c, h, _ = train.image_shape
    if args.model in RESNETS:
        model = getattr(cnn, args.model)(in_chans=c, num_classes=train.num_classes, img_size=h)
        return model, f"new {RESNETS[args.model]}"
    name = args.preset or SERIES_PRESET
    cfg = preset(name, img_size=h, in_chans=c, num_classes=train.num_classes, **parse_vit_changes(args.model_opt))
    return VisionTransformer(cfg), f"new ViT (preset {name})"


def _summary(args, model, train, val, config: dict, source: str, folder) -> list[str]:
    """What a run is about to do, in four lines: model, data, device and precision, output."""
    from ..model import num_params

    total, trainable = config["model"]["parameters"], num_params(model)
    params = f"{total:,} parameters" + (f" ({trainable:,} trainable)" if trainable != total else "")
    sizes = f"{len(train):,} training images" + (f" / {len(val):,} validation" if val else ", no validation set")
    shape = "x".join(map(str, train.image_shape))
    return [
        f"model     {config['model']['kind']}, {params}, {source}",
        f"data      {train.name}: {sizes} ({shape}, {train.num_classes} classes)",
        f"device    {config['device']}, precision {config['precision']}",
        f"output    {args.out} (run folder {folder})",
    ]


def _train(args, model, source: str, train, val) -> None:
    """Print the summary, write the run folder's config.json, train with `fit` (metrics.csv), report the result."""
    from ..runs import RunFolder
    from ..runtime import pick_device
    from ..train import fit

    cfg, device, run = _train_config(args), pick_device(args.device), RunFolder(args.out)
    config = run.config(model, train, val, cfg, device)
    config["data"]["labels_per_class"] = args.labels_per_class
    _say(*_summary(args, model, train, val, config, source, run.path))
    command = shlex.join([*PROG.split(), *args.argv])
    run.write_config({"command": command, "model": config.pop("model"), "init": source, **config})
    history = fit(
        model,
        train,
        val,
        cfg,
        checkpoint=run.checkpoint,
        resume=args.resume,
        device=device,
        progress=not args.no_progress,
        callbacks=(run.metrics_csv(args.resume),),
    )
    final = history.final
    val_acc = f", val acc {final['val_acc']:.4f}" if final.get("val_acc") is not None else ""
    _say(
        f"done: train acc {final['train_acc']:.4f}{val_acc} after {final['epoch']} epochs, "
        f"{final['time']:.0f} s; checkpoint {args.out}"
    )


# --- commands ----------------------------------------------------------------------------------
def cmd_fetch_data(args) -> None:
    from ..data import fetch_fashion_mnist

    print(f"Fashion-MNIST ready in {fetch_fashion_mnist(args.root)}")


def cmd_pretrain(args) -> None:
    from ..runtime import seed_everything

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
    from ..optim import freeze_all_but_head
    from ..runtime import seed_everything

    _check_out(args)
    _check_model_args(args)
    seed_everything(args.seed)
    train, val = _load(args.dataset, True, args.img_size), _load(args.dataset, False, args.img_size)
    val = val.per_class_subset(args.val_per_class, args.seed)
    train = train.per_class_subset(args.labels_per_class, args.seed)
    if args.checkpoint is None:
        model, source = _new_model(args, train)
    else:
        from ..checkpoint import load_model

        model, _ = load_model(args.checkpoint, num_classes=train.num_classes, img_size=train.image_shape[1])
        if args.mode == "linear":
            freeze_all_but_head(model)
        source = f"{'linear probe' if args.mode == 'linear' else 'finetuning'} of {args.checkpoint}"
    _train(args, model.train(), source, train, val)


def _checkpoint_data(args, ckpt: dict):
    """The --dataset (default: the checkpoint's own) --split, prepared as the checkpoint's training data was, and
    its name; a UsageError if it cannot be loaded or its classes, channels or size do not fit the checkpoint."""
    from ..checkpoint import check_compatible
    from ..data import preprocess

    data = _recorded_preprocessing(args.checkpoint, ckpt)
    name = args.dataset or data["name"]
    if not (name in DATASETS or name.startswith("folder:")):
        trained_on = f"the data set {name!r}" if name else "a data set without a name"
        raise UsageError(
            f"{args.checkpoint} was trained on {trained_on}, which {args.command} cannot load; pass --dataset"
        )
    test = _load(name, args.split == "train", data["image_shape"][-1])
    test = preprocess(test.images, data, test.labels, test.classes, test.name)
    check_compatible(ckpt, test)
    return test, name


def cmd_evaluate(args) -> None:
    from ..checkpoint import load_model
    from ..evaluation import evaluate
    from ..patches import shift_image

    model, ckpt = load_model(args.checkpoint)
    test, name = _checkpoint_data(args, ckpt)
    transform = (lambda x: shift_image(x, args.shift, args.shift)) if args.shift else None
    acc = evaluate(
        model, test, batch_size=args.batch_size, precision=args.precision, device=args.device, transform=transform
    )
    shift = f", images shifted by {args.shift} px" if args.shift else ""
    print(f"{args.checkpoint}: {name} {args.split} accuracy {acc:.4f} ({len(test):,} images{shift})")


def cmd_predict(args) -> None:
    import torch

    from ..checkpoint import load_model
    from ..data import preprocess, read_image
    from ..runtime import pick_device

    model, ckpt = load_model(args.checkpoint)
    data = _recorded_preprocessing(args.checkpoint, ckpt)
    batch = preprocess([read_image(path) for path in args.images], data)
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
    from ..checkpoint import export_safetensors

    out = args.out or args.checkpoint.with_suffix(".safetensors")
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it")
    export_safetensors(args.checkpoint, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


def cmd_explore(args) -> None:
    from pathlib import Path

    from ..checkpoint import load_model
    from ..explorer import write_explorer

    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; name the page, e.g. {args.out / 'explorer.html'}")
    if args.out.exists() and not args.overwrite:
        raise UsageError(f"{args.out} exists; pass --overwrite to replace it")
    model, ckpt = load_model(args.checkpoint)
    if ckpt["kind"] != "vit":
        raise UsageError(f"{args.checkpoint} holds a {ckpt['kind']} model; the explorer shows a ViT's attention maps")
    test, name = _checkpoint_data(args, ckpt)
    shown = f"folder:{Path(name.removeprefix('folder:')).name}" if name.startswith("folder:") else name
    title = f"Attention explorer: {args.checkpoint.name} on {shown}"
    page = write_explorer(args.out, model, test, images=args.images, source=f"{shown} {args.split}", title=title)
    print(
        f"wrote {args.out} ({page.size / 1e6:.2f} MB): {page.images} {args.split} images of {shown}, every map "
        f"stored to within {page.error:.2%} of its range; open it in a browser"
    )


COMMANDS = {  # command name -> the function that runs it
    "fetch-data": cmd_fetch_data,
    "pretrain": cmd_pretrain,
    "finetune": cmd_finetune,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "export": cmd_export,
    "explore": cmd_explore,
}
