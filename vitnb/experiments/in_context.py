"""Notebook 09: the ViT paper's results beside this series', and what the paper's scale would cost on a CPU.

The published figures are data with their sources (the papers' abstracts and tables), so that the notebook's
tables are built from one place; the series' own figures are measured: training FLOPs counted by PyTorch's
`FlopCounterMode`, and this CPU's training speed timed on the model being priced.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "PUBLISHED",
    "Published",
    "FOLLOW_UPS",
    "PRETRAINING_SETS",
    "SUBSET_CROSSOVER",
    "flop_rate",
    "flops_text",
    "published_table",
    "follow_ups_table",
    "paper_vs_series",
    "train_flops_per_image",
    "duration",
]


@dataclass(frozen=True)
class Published:
    """One published result: a model pretrained on `pretrained_on`, scored top-1 on ImageNet after finetuning."""

    model: str
    pretrained_on: str
    params_m: float | None  # millions of parameters (None: not restated here)
    imagenet_top1: float  # %
    tpu_v3_core_days: float  # pretraining compute as the paper reports it
    source: str


# ImageNet (ILSVRC-2012), ImageNet-21k and JFT-300M as the ViT paper describes them (§4.1): images, classes.
PRETRAINING_SETS: dict[str, tuple[int, int]] = {
    "ImageNet": (1_300_000, 1_000),
    "ImageNet-21k": (14_000_000, 21_000),
    "JFT-300M": (303_000_000, 18_000),
}

# The ViT paper's Table 2 (ImageNet top-1 after finetuning; pretraining compute in TPUv3-core-days) and its
# Table 1 (parameters of ViT-Large and ViT-Huge).
PUBLISHED: tuple[Published, ...] = (
    Published("ViT-H/14", "JFT-300M", 632, 88.55, 2_500, "ViT paper, Tables 1 and 2"),
    Published("ViT-L/16", "JFT-300M", 307, 87.76, 680, "ViT paper, Tables 1 and 2"),
    Published("ViT-L/16", "ImageNet-21k", 307, 85.30, 230, "ViT paper, Tables 1 and 2"),
    Published("BiT-L (ResNet152x4)", "JFT-300M", None, 87.54, 9_900, "ViT paper, Table 2"),
)

# The ViT paper's Fig. 4 (linear few-shot accuracy after pretraining on random subsets of JFT-300M): ViT-B/32
# does much worse than ResNet50 after 9M images and better after 90M or more.
SUBSET_CROSSOVER: tuple[int, int] = (9_000_000, 90_000_000)

# What came after, in one line each: (paper, what it changes, its headline figure as the abstract states it).
FOLLOW_UPS: tuple[tuple[str, str, str], ...] = (
    (
        "DeiT (Touvron et al. 2021)",
        "a ViT-B trained on ImageNet-1k alone, with strong augmentation and regularisation, and distillation "
        "from a CNN teacher through an extra token",
        "83.1% top-1 for an 86M-parameter ViT with no external data, trained on a single computer in under 3 days; "
        "up to 85.2% with distillation",
    ),
    (
        "Swin (Liu et al. 2021)",
        "attention inside local windows that shift from block to block, and patches merged stage by stage: "
        "locality and a CNN-like hierarchy brought back",
        "87.3% top-1 on ImageNet-1k (pretrained on ImageNet-22k); cost linear in the number of pixels",
    ),
    (
        "MAE (He et al. 2021)",
        "self-supervised pretraining: hide 75% of the patches and reconstruct them (notebook 05)",
        "87.8% top-1 for a plain ViT-H using ImageNet-1k data only",
    ),
)


def train_flops_per_image(model: nn.Module, image_shape: tuple[int, int, int], batch_size: int = 2) -> float:
    """Floating-point operations of one training step per image (forward and backward), as PyTorch counts
    them: matrix products and convolutions, 2 per multiply-add; normalisations and activations are left out.
    """
    was_training = model.training
    model.train()
    x = torch.randn(batch_size, *image_shape)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).float().sum().backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return counter.get_total_flops() / batch_size


def flop_rate(model: nn.Module, image_shape: tuple[int, int, int], batch_size: int, steps: int = 3) -> float:
    """FLOP/s of this CPU training `model` (forward and backward, fp32): the FLOPs `train_flops_per_image`
    counts divided by the median wall time of `steps` steps, after one untimed step."""
    flops = train_flops_per_image(model, image_shape, batch_size) * batch_size
    model.train()
    x = torch.randn(batch_size, *image_shape)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        model(x).sum().backward()
        if step:
            times.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    return flops / statistics.median(times)


def duration(seconds: float) -> str:
    """A long time in the unit a reader grasps: '42 s', '3.5 minutes', '7.2 hours', '51 days', '1,234 years'."""
    for unit, size in (("years", 365.25 * 86_400), ("days", 86_400), ("hours", 3_600), ("minutes", 60)):
        if seconds >= 2 * size:
            value = seconds / size
            return f"{value:,.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{seconds:.0f} s"


def flops_text(flops: float) -> str:
    """A FLOP count in the largest unit that keeps it above 1: '87 MFLOP', '2.6 TFLOP', '131 PFLOP'."""
    for unit, size in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if flops >= size:
            value = flops / size
            return f"{value:,.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{flops:,.0f} FLOP"


def published_table() -> str:
    """The ViT paper's results as a Markdown table: pretraining set and its size, parameters, accuracy, cost."""
    lines = [
        "| model | pretrained on | images | parameters | ImageNet top-1 | pretraining compute | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in PUBLISHED:
        images = PRETRAINING_SETS[p.pretrained_on][0]
        params = f"{p.params_m:,.0f}M" if p.params_m else "-"
        lines.append(
            f"| {p.model} | {p.pretrained_on} | {images / 1e6:,.0f}M | {params} | {p.imagenet_top1:.2f}% "
            f"| {p.tpu_v3_core_days:,.0f} TPUv3-core-days | {p.source} |"
        )
    return "\n".join(lines)


def follow_ups_table() -> str:
    """DeiT, Swin and MAE in one Markdown table: what each changes and its headline figure."""
    lines = ["| paper | what it changes | headline figure (its abstract) |", "|---|---|---|"]
    lines += [f"| {paper} | {what} | {figure} |" for paper, what, figure in FOLLOW_UPS]
    return "\n".join(lines)


def paper_vs_series(series: dict) -> str:
    """The paper's largest model and its ImageNet-21k model beside the series' ViT, as a Markdown table.

    `series` holds the series' figures: `images` (training set size), `img_size`, `params`, `train_flops`
    (total training FLOPs), `cpu_time` (a phrase: the training time on this CPU), `accuracy` (a fraction) and
    `test_set` (what the accuracy is measured on).
    """
    huge, large_21k = PUBLISHED[0], PUBLISHED[2]
    rows = [
        (
            "pretraining data",
            *(f"{p.pretrained_on}: {PRETRAINING_SETS[p.pretrained_on][0]:,} images" for p in (huge, large_21k)),
            f"none (trained on {series['images']:,} images)",
        ),
        (
            "image size (pixels)",
            "224, finetuned at 384 or more",
            "224, finetuned at 384 or more",
            f"{series['img_size']} x {series['img_size']}, grayscale",
        ),
        ("parameters", f"{huge.params_m:,.0f}M", f"{large_21k.params_m:,.0f}M", f"{series['params'] / 1e6:.2f}M"),
        (
            "training compute",
            f"{huge.tpu_v3_core_days:,.0f} TPUv3-core-days",
            f"{large_21k.tpu_v3_core_days:,.0f} TPUv3-core-days",
            f"{flops_text(series['train_flops'])}: {series['cpu_time']} at the rate timed on this CPU",
        ),
        (
            "accuracy",
            f"{huge.imagenet_top1:.2f}% (ImageNet)",
            f"{large_21k.imagenet_top1:.2f}% (ImageNet)",
            f"{100 * series['accuracy']:.1f}% ({series['test_set']})",
        ),
    ]
    head = f"| | {huge.model} (paper) | {large_21k.model} (paper) | the series' ViT |"
    return "\n".join([head, "|---|---|---|---|", *(f"| {' | '.join(r)} |" for r in rows)])
