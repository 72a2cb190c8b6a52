"""Fashion-MNIST test accuracy of a ViT trained from scratch within a time budget, over several seeds.

Each seed trains once with vitnb's trainer; the whole 10,000-image test set is scored after every epoch.
The script reports, per seed and as the median over seeds: the test accuracy of the last epoch that
ends within `--max-minutes` of training, and the training time at which each threshold was first
crossed (evaluation time excluded). It prints the CPU, the precision and the threads it ran with.
`--epochs auto` times the model for a few steps first and makes the cosine schedule as long as fits the
budget, so that no run ends its schedule with minutes to spare or counts an epoch that ends past the budget.

The default model is the series' plain ViT (`vitnb.config.SERIES_PRESET`: patch 4, 7x7 tokens). The hybrid
(`cpu_hybrid`, a small ResNet's stages under one transformer block) runs with its own recipe:

    python benchmarks/fmnist_time_to_accuracy.py --seeds 0 1 2                    # the series' ViT
    python benchmarks/fmnist_time_to_accuracy.py --preset cpu_hybrid --batch-size 64 --lr 1e-3 \\
        --epochs auto --warmup-epochs 0.5 --seeds 0 1 2 3                          # the hybrid
    python benchmarks/fmnist_time_to_accuracy.py --model-opt depth=6               # change any ViTConfig field

Targets are stated for fp32 on a 2-core AVX2 CPU. On a CPU with AVX512, `ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2` restricts PyTorch to its AVX2 kernels (the script reports whether they are set).
On another CPU, `--calibrate` times a reference ViT (patch 4, dim 128, depth 6, 4 heads, average pooling,
batch 128, fp32), compares its speed with `REFERENCE_IMAGES_PER_S` on a 2-core AVX2 CPU, and scales
`--max-minutes` by the ratio, so the budget is the same amount of work as on that CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

import torch

from vitnb import VisionTransformer, preset, seed_everything
from vitnb.config import SERIES_PRESET, TrainConfig, parse_vit_changes
from vitnb.data import fashion_mnist
from vitnb.runtime import cpu_has_fast_bf16, memory_format_for, pick_device, resolve_precision
from vitnb.train import fit


class Stop(Exception):
    """Raised by the epoch callback to end a run at the time budget or once every threshold is crossed."""


def cpu_description() -> str:
    """CPU model name, core count, hardware bf16 and any ISA restriction in the environment."""
    name = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    isa = ", ".join(f"{k}={os.environ[k]}" for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if k in os.environ)
    bf16 = "hardware bf16" if cpu_has_fast_bf16() else "no hardware bf16"
    return f"{name}, {os.cpu_count()} cores, {bf16}" + (f", restricted to {isa}" if isa else "")


REFERENCE_IMAGES_PER_S = 250.0  # the reference ViT's training speed on a 2-core AVX2 CPU, fp32


def training_images_per_s(model: torch.nn.Module, batch_size: int, steps: int = 20) -> float:
    """Training images/s of `model` on random data here: forward, loss, backward, AdamW step (median step time).

    The model is trained in the memory format vitnb's trainer gives it (channels_last for conv stems).
    """
    memory_format = memory_format_for(model)
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    size = model.cfg.img_size
    x = torch.randn(batch_size, model.cfg.in_chans, size, size).contiguous(memory_format=memory_format)
    y = torch.randint(0, model.cfg.num_classes, (batch_size,))
    times = []
    for _ in range(steps + 3):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    return batch_size / statistics.median(times[3:])  # the first steps warm up the allocator and kernels


def reference_images_per_s() -> float:
    """Training images/s here of the reference ViT (patch 4, dim 128, depth 6, 4 heads, avg pooling), batch 128."""
    cfg = preset("cpu", embed_dim=128, depth=6, num_heads=4, class_token=False, global_pool="avg", pos_embed="sincos")
    return training_images_per_s(VisionTransformer(cfg), batch_size=128)


# The share of the budget an `--epochs auto` schedule plans to fill: the trainer's own work (batching, flips)
# and the machine's drift make a run a few percent slower than the probe, and an epoch that ends past the
# budget does not count.
AUTO_EPOCHS_SHARE = 0.92


def epochs_in_budget(args, num_train: int) -> float:
    """The schedule length, in epochs (one decimal, rounded down), that fills `--max-minutes` of training."""
    model = VisionTransformer(preset(args.preset, **parse_vit_changes(args.model_opt)))
    images = AUTO_EPOCHS_SHARE * 60 * args.max_minutes * training_images_per_s(model, args.batch_size)
    return math.floor(10 * images / num_train) / 10


def epochs_arg(text: str) -> float | str:
    """`--epochs`: a positive number of epochs, or 'auto'."""
    if text == "auto":
        return text
    try:
        epochs = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of epochs or 'auto', got {text!r}") from None
    if not epochs > 0:
        raise argparse.ArgumentTypeError(f"the schedule needs a positive number of epochs, got {text}")
    return epochs


def run_seed(args, seed: int, train, test) -> dict:
    """Train one model; return its per-epoch records and the first record crossing each threshold."""
    seed_everything(seed)
    model = VisionTransformer(preset(args.preset, **parse_vit_changes(args.model_opt)))
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_epochs=args.warmup_epochs,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        augment=not args.no_augment,
        crop_pad=args.crop_pad,
        precision=args.precision,
        ema_decay=args.ema_decay,
        eval_flip=args.eval_flip,
        seed=seed,
    )
    records: list[dict] = []

    def watch(epoch, record, model):
        if record["train_time"] > 60 * args.max_minutes:
            raise Stop  # this epoch ended past the budget: it does not count
        records.append(record)
        if record["val_acc"] >= max(args.thresholds):
            raise Stop

    try:
        fit(model, train, test, cfg, callbacks=[watch], progress=False, verbose=False)
    except Stop:
        pass
    crossed = {t: next((r for r in records if r["val_acc"] >= t), None) for t in args.thresholds}
    return {"seed": seed, "records": records, "crossed": crossed, "model": model, "cfg": cfg}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=SERIES_PRESET, help="vitnb preset to train (default: the series' ViT)")
    parser.add_argument(
        "--model-opt", action="append", default=[], metavar="KEY=VALUE", help="change a ViTConfig field (repeatable)"
    )
    parser.add_argument(
        "--epochs",
        type=epochs_arg,
        default=6.5,
        help="length of the cosine schedule, or 'auto': as many epochs as fit the budget, from a speed probe",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--warmup-epochs", type=float, default=0.3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--crop-pad", type=int, default=0, help="random-crop padding (default 0: flips only)")
    parser.add_argument("--no-augment", action="store_true", help="no flips and no crops: the raw training images")
    parser.add_argument("--ema-decay", type=float, default=0.0, help="EMA of the weights (0: off)")
    parser.add_argument("--eval-flip", action=argparse.BooleanOptionalAction, default=True, help="test-time flips")
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.90, 0.92])
    parser.add_argument("--max-minutes", type=float, default=10, help="training-time budget per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--calibrate", action="store_true", help="scale --max-minutes to the reference 2-core AVX2 CPU's speed"
    )
    args = parser.parse_args()
    if args.no_augment and args.crop_pad:
        parser.error("--no-augment turns off every augmentation, so --crop-pad would be ignored; pass one or the other")
    return args


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    train, test = fashion_mnist(True), fashion_mnist(False)
    device = pick_device()
    print(f"CPU: {cpu_description()}; {torch.get_num_threads()} torch threads")
    print(f"device {device}, precision {resolve_precision(args.precision, device)}, torch {torch.__version__}")
    if args.calibrate:
        speed = reference_images_per_s()
        budget = args.max_minutes * REFERENCE_IMAGES_PER_S / speed
        print(
            f"reference ViT: {speed:.0f} img/s here, {REFERENCE_IMAGES_PER_S:.0f} on a 2-core AVX2 CPU: "
            f"{args.max_minutes:g} min there = {budget:.2f} min here"
        )
        args.max_minutes = budget
    if args.epochs == "auto":
        args.epochs = epochs_in_budget(args, len(train))
        print(f"--epochs auto: {args.epochs:g} epochs fill {AUTO_EPOCHS_SHARE:.0%} of {args.max_minutes:.2f} min here")
    results = []
    for seed in args.seeds:
        r = run_seed(args, seed, train, test)
        results.append(r)
        curve = ", ".join(f"{x['val_acc']:.4f} @ {x['train_time'] / 60:.1f} min" for x in r["records"])
        speed = statistics.median(x["images_per_s"] for x in r["records"]) if r["records"] else float("nan")
        print(f"seed {seed}: {speed:.0f} img/s; per epoch: {curve}")
    first = results[0]
    print(f"\nmodel: preset {args.preset!r} = {first['model'].cfg}\nrecipe: {first['cfg']}")
    finals = [r["records"][-1]["val_acc"] if r["records"] else float("nan") for r in results]
    print(
        f"test accuracy within {args.max_minutes:g} min: median {statistics.median(finals):.4f} "
        f"(seeds: {', '.join(f'{a:.4f}' for a in finals)})"
    )
    for t in args.thresholds:
        times = [r["crossed"][t]["train_time"] / 60 if r["crossed"][t] else None for r in results]
        reached = [m for m in times if m is not None]
        shown = ", ".join("not reached" if m is None else f"{m:.1f} min" for m in times)
        print(f"{100 * t:g}% reached in {len(reached)} of {len(times)} seeds ({shown})")


if __name__ == "__main__":
    main()
