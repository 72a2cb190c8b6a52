"""Notebook 08's protocol: a measured ablation of minor ViT modifications (also benchmarks/ablation.py).

Each `Variant` is the base config with a few `ViTConfig` fields changed. The base is the ViT paper's design
(class token, learned positions) at the size of the series' ViT (`config.SERIES_PRESET`). `run_ablation` trains
every variant with the same recipe and the same number of optimiser steps (through `vitnb.train.fit`, the one
training loop), several seeds each, in one or two data regimes; `measure_throughput` times all variants in one
interleaved pass so their speeds are comparable; `compare` summarises the rows, which `ablation_report` turns
into the notebook's tables and paragraphs, `figures.plot_ablation` and `plot_ablation_curves` into its figures.

The protocol measures early training: a fixed budget of a few thousand optimiser steps, far from convergence.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from ..attention import Attention
from ..config import SERIES_PRESET, TrainConfig, ViTConfig, preset
from ..data import ImageTensorDataset
from ..encoder import Block, LayerScale
from ..errors import UsageError
from ..evaluation import evaluate
from ..model import VisionTransformer, num_params
from ..patches import ConvStemEmbed, PatchEmbed, ShiftedPatchEmbed
from ..position import sincos_2d
from ..train import fit
from .results import summarize

__all__ = [
    "BASE",
    "MAIN_VARIANTS",
    "VARIANTS",
    "Protocol",
    "Variant",
    "compare",
    "config_diff",
    "get_variant",
    "measure_throughput",
    "speed_from_runs",
    "regime_data",
    "run_ablation",
    "source_lines",
    "test_subsets",
    "train_one",
    "variant_source",
]

# The base of every variant: the ViT paper's design (class token, learned positions) at the size of the series'
# ViT: 28x28 grayscale, 4x4 patches -> 49 tokens + cls; width 96, 4 blocks of 4 heads, MLP 2x wide: 307k params.
# The variant "avg pool + sin-cos" is the series' ViT, preset(SERIES_PRESET), itself.
BASE = preset(SERIES_PRESET, class_token=True, global_pool="token", pos_embed="learn")


@dataclass(frozen=True)
class Variant:
    """One modification: the `ViTConfig` fields it changes, what it is, and where the code lives."""

    name: str
    changes: dict
    what: str
    source: str  # the paper that proposed or recommends it
    code: tuple = ()  # (object, keywords) pairs: the lines of vitnb that implement the change

    def config(self, base: ViTConfig = BASE) -> ViTConfig:
        return base.replace(**self.changes)

    def build(self, base: ViTConfig = BASE, seed: int | None = None) -> VisionTransformer:
        if seed is not None:
            torch.manual_seed(seed)
        return VisionTransformer(self.config(base))


_VARIANT_LIST = [
    Variant(
        "baseline",
        {},
        "cls token, learned position embeddings, pre-norm, 4x4 patchify stem",
        "Dosovitskiy et al. 2021",
        ((VisionTransformer.embed, ()),),
    ),
    Variant(
        "avg pool",
        {"global_pool": "avg", "class_token": False},
        "no cls token; classify the mean of the patch tokens",
        "Beyer et al. 2022",
        ((VisionTransformer.forward_head, ()), (VisionTransformer.__init__, ("cls_token", "fc_norm"))),
    ),
    Variant(
        "sin-cos pos",
        {"pos_embed": "sincos"},
        "fixed 2-D sin-cos position embeddings instead of learned ones",
        "Beyer et al. 2022",
        ((sincos_2d, ()), (VisionTransformer.__init__, ("sincos",))),
    ),
    Variant(
        "avg pool + sin-cos",
        {"global_pool": "avg", "class_token": False, "pos_embed": "sincos"},
        f"both changes above: the series' ViT, preset({SERIES_PRESET!r})",
        "Beyer et al. 2022",
        ((VisionTransformer.forward_head, ()), (sincos_2d, ())),
    ),
    Variant(
        "no pos",
        {"pos_embed": "none"},
        "no position embeddings at all: a bag of patches",
        "Dosovitskiy et al. 2021 (ablation)",
        ((VisionTransformer.embed, ("pos_embed",)),),
    ),
    Variant(
        "patch 7",
        {"patch_size": 7},
        "7x7 patches: 16 tokens instead of 49",
        "Dosovitskiy et al. 2021",
        ((PatchEmbed.__init__, ("proj",)),),
    ),
    Variant(
        "post-norm",
        {"norm": "post"},
        "LayerNorm after each residual addition (original Transformer)",
        "Vaswani et al. 2017; Xiong et al. 2020",
        ((Block.forward, ()),),
    ),
    Variant(
        "conv stem",
        {"stem": "conv"},
        "two stride-2 3x3 conv+BN+ReLU layers, then a 1x1 conv, as the stem",
        "Xiao et al. 2021",
        ((ConvStemEmbed, ()),),
    ),
    Variant(
        "SPT + LSA",
        {"stem": "spt", "lsa": True},
        "Shifted Patch Tokenization + Locality Self-Attention",
        "Lee et al. 2021",
        ((ShiftedPatchEmbed.embed, ()), (Attention, ("lsa", "log_scale", "mask"))),
    ),
    Variant(
        "LayerScale",
        {"init_values": 0.1},
        "learned per-channel scale on each residual branch, init 0.1",
        "Touvron et al. 2021 (CaiT)",
        ((LayerScale, ()), (Block, ("ls1", "ls2"))),
    ),
    # the two halves of SPT + LSA on their own (not in the notebook's default list)
    Variant(
        "SPT", {"stem": "spt"}, "Shifted Patch Tokenization only", "Lee et al. 2021", ((ShiftedPatchEmbed.embed, ()),)
    ),
    Variant(
        "LSA",
        {"lsa": True},
        "Locality Self-Attention only",
        "Lee et al. 2021",
        ((Attention, ("lsa", "log_scale", "mask")),),
    ),
]
VARIANTS: dict[str, Variant] = {v.name: v for v in _VARIANT_LIST}
MAIN_VARIANTS: tuple[str, ...] = tuple(v for v in VARIANTS if v not in ("SPT", "LSA"))  # the notebook's list


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise UsageError(f"unknown variant {name!r}; choose from {list(VARIANTS)}")
    return VARIANTS[name]


def config_diff(cfg: ViTConfig, base: ViTConfig = BASE) -> dict[str, tuple]:
    """{field: (base value, new value)} for every field where `cfg` differs from `base`."""
    return {
        f.name: (getattr(base, f.name), getattr(cfg, f.name))
        for f in fields(ViTConfig)
        if getattr(base, f.name) != getattr(cfg, f.name)
    }


def source_lines(obj, keywords: Sequence[str] = ()) -> str:
    """The source of `obj` as 'file:line  code' lines; with keywords, only the lines containing one."""
    lines, start = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj))
    name = f"vitnb/{path.name}"
    keep = [
        f"{name}:{start + i:<4d} {line.rstrip()}"
        for i, line in enumerate(lines)
        if line.strip() and (not keywords or any(k in line for k in keywords))
    ]
    return "\n".join(keep)


def variant_source(name: str) -> str:
    """The lines of vitnb that implement variant `name` (see `Variant.code`)."""
    return "\n\n".join(source_lines(obj, keywords) for obj, keywords in get_variant(name).code)


# --- the protocol --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Protocol:
    """How every variant is trained and scored; one object so the notebook and the benchmark agree.

    Every run gets the same budget of `budget_images` training images (= the same optimiser steps):
    '10% labels' cycles `budget_images / (10 * per_class)` epochs over a fixed seeded subset of
    `per_class` images per class; 'all labels' makes one pass over a seeded random sample of
    `budget_images` of the 60,000 (a partial epoch: with all labels no image is seen twice).
    Augmentation is random horizontal flips only (`crop_pad=0`), as notebook 06 trains; fp32.
    """

    per_class: int = 600
    budget_images: int = 18_000
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.125  # of the run, in every regime (the same schedule step by step)
    seeds: tuple[int, ...] = (0, 1)
    test_size: int | None = 5000  # test images for the final accuracy (class-balanced); None: all 10,000
    curve_size: int = 1000  # test images scored after every epoch (the learning curves)
    subset_seed: int = 0  # the seed of the 10% selection, the same for every run
    throughput_steps: int = 8  # optimiser steps per timed throughput epoch
    throughput_rounds: int = 2  # interleaved rounds over all variants; the best round counts
    regimes: tuple[str, ...] = ("10% labels",)
    crop_pad: int = 0  # random-crop padding; 0 = flips only
    precision: str = "fp32"
    extra: dict = field(default_factory=dict)  # further TrainConfig fields (e.g. {'label_smoothing': 0.0})

    @classmethod
    def from_profile(cls, profile, **changes) -> Protocol:
        """The protocol of a profile (`vitnb.experiments.get_profile()`, settings named nb08_*)."""
        settings = {
            "per_class": profile.nb08_per_class,
            "budget_images": profile.nb08_budget_images,
            "test_size": profile.nb08_test_size,
            "curve_size": profile.nb08_curve_size,
            "throughput_steps": profile.nb08_throughput_steps,
            "throughput_rounds": profile.nb08_throughput_rounds,
            "regimes": tuple(profile.nb08_regimes),
        }
        return cls(**{**settings, **changes})

    def train_config(self, epochs: int, seed: int) -> TrainConfig:
        settings = dict(
            epochs=epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup_epochs=self.warmup_frac * epochs,
            seed=seed,
            crop_pad=self.crop_pad,
            precision=self.precision,
        )
        return TrainConfig(**{**settings, **self.extra})


def regime_data(train: ImageTensorDataset, regime: str, protocol: Protocol, seed: int):
    """(training set, epochs) of one regime: the same number of training images for both."""
    if regime == "10% labels":
        subset = train.per_class_subset(protocol.per_class, seed=protocol.subset_seed)
    elif regime == "all labels":
        if protocol.budget_images >= len(train):
            subset = train
        else:  # a partial epoch over all labels = one pass over a random sample of the budget's size
            g = torch.Generator().manual_seed(10_000 + seed)
            subset = train.subset(torch.randperm(len(train), generator=g)[: protocol.budget_images].sort().values)
    else:
        raise UsageError(f"unknown regime {regime!r}; choose from ('10% labels', 'all labels')")
    if protocol.budget_images % len(subset):
        raise UsageError(
            f"budget_images={protocol.budget_images} is not a whole number of epochs of the {len(subset)} "
            f"images of {regime!r}; choose a multiple"
        )
    return subset, protocol.budget_images // len(subset)


def test_subsets(test: ImageTensorDataset, protocol: Protocol):
    """(final test set, learning-curve set): fixed, class-balanced selections of the test split."""
    n_classes = test.num_classes
    final = test if protocol.test_size is None else test.per_class_subset(protocol.test_size // n_classes, seed=0)
    curve = test.per_class_subset(min(protocol.curve_size, len(test)) // n_classes, seed=1)
    return final, curve


# --- running -------------------------------------------------------------------------------------
def train_one(
    variant: str,
    regime: str,
    seed: int,
    train: ImageTensorDataset,
    test: ImageTensorDataset,
    curve_set: ImageTensorDataset,
    protocol: Protocol,
    base: ViTConfig = BASE,
) -> dict:
    """Train one variant in one regime with one seed; return a row of results."""
    data, epochs = regime_data(train, regime, protocol, seed)
    model = get_variant(variant).build(base, seed=seed)
    start = time.perf_counter()
    history = fit(model, data, curve_set, protocol.train_config(epochs, seed), progress=False, verbose=False)
    train_seconds = time.perf_counter() - start
    steps_per_epoch = math.ceil(len(data) / protocol.batch_size)
    return {
        "variant": variant,
        "regime": regime,
        "seed": seed,
        "test_acc": evaluate(model, test, batch_size=protocol.train_config(1, seed).eval_batch_size),
        "params": num_params(model),
        "epochs": epochs,
        "steps": epochs * steps_per_epoch,
        "train_images": epochs * len(data),
        "curve_steps": [steps_per_epoch * r["epoch"] for r in history],
        "curve_acc": [r["val_acc"] for r in history],
        "final_train_loss": history.final["train_loss"],
        "seconds": train_seconds,
    }


def run_ablation(
    variants: Sequence[str],
    train: ImageTensorDataset,
    test: ImageTensorDataset,
    protocol: Protocol,
    base: ViTConfig = BASE,
    log: Callable[[str], None] | None = print,
) -> list[dict]:
    """Train every variant x regime x seed (seeds outermost, so a partial run is still balanced)."""
    final_test, curve_set = test_subsets(test, protocol)
    rows = []
    total = len(protocol.seeds) * len(protocol.regimes) * len(variants)
    for seed in protocol.seeds:
        for regime in protocol.regimes:
            for variant in variants:
                row = train_one(variant, regime, seed, train, final_test, curve_set, protocol, base)
                rows.append(row)
                if log:
                    log(
                        f"[{len(rows):2d}/{total}] {variant:<19s} {regime:<10s} seed {seed}: "
                        f"test acc {row['test_acc']:.4f} after {row['steps']} steps ({row['seconds']:.0f} s)"
                    )
    return rows


def measure_throughput(
    variants: Sequence[str], train: ImageTensorDataset, protocol: Protocol, base: ViTConfig = BASE
) -> dict[str, float]:
    """Training images/s of every variant, timed by `fit` itself on short epochs.

    The variants take turns (round-robin, `throughput_rounds` rounds) so that a load from other
    processes hits them alike; each variant's best round counts.
    """
    data = train.subset(torch.arange(protocol.throughput_steps * protocol.batch_size))
    best = {v: 0.0 for v in variants}
    for _ in range(protocol.throughput_rounds):
        for variant in variants:
            model = get_variant(variant).build(base, seed=0)
            history = fit(model, data, None, protocol.train_config(1, 0), progress=False, verbose=False)
            best[variant] = max(best[variant], history.final["images_per_s"])
    return best


def speed_from_runs(rows: Sequence[dict]) -> dict[str, float]:
    """Training images/s of every variant, read from its training runs: training images over wall seconds in its
    fastest run (another process's load, or the first run's start-up costs, only ever slow a run down). The
    seconds include the per-epoch scoring of the curve subset, which costs each variant in proportion to its
    forward pass; each run lasts tens of seconds, far longer than a timed short epoch."""
    rates: dict[str, float] = {}
    for r in rows:
        rates[r["variant"]] = max(rates.get(r["variant"], 0.0), r["train_images"] / r["seconds"])
    return rates


# --- summaries and the table --------------------------------------------------------------------
def compare(rows: Sequence[dict], throughput: dict[str, float] | None = None, baseline: str = "baseline") -> list[dict]:
    """One dict per (variant, regime): `results.summarize`'s n and mean/min/max test accuracy over the
    seeds, the seeds' spread, params and steps; the change of the mean from the baseline (`delta`), the
    baseline's spread, whether the change exceeds both spreads, images/s and speed relative to the baseline."""
    out = summarize(rows, by=("variant", "regime"), metric="test_acc", also=("params", "steps"))
    speed = throughput or {}
    base_speed = speed.get(baseline, math.nan)
    for s in out:
        s["spread"] = s["max"] - s["min"]
    for s in out:
        ref = next((b for b in out if b["variant"] == baseline and b["regime"] == s["regime"]), None)
        s["delta"] = s["mean"] - ref["mean"] if ref else math.nan
        s["baseline_spread"] = ref["spread"] if ref else math.nan
        s["beyond_spread"] = abs(s["delta"]) > max(s["spread"], s["baseline_spread"])
        s["images_per_s"] = speed.get(s["variant"], math.nan)
        s["speed_rel"] = s["images_per_s"] / base_speed if base_speed else math.nan
    return out
