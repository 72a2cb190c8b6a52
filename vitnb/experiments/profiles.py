"""Run profiles: one place that owns the numbers that differ between a quick check and the real run.

`VITNB_PROFILE=quick` (CI: small subsets, few steps, seconds per notebook) or `full` (default: the
run whose outputs are committed). Notebooks read `P = get_profile()` and use `P.name_of_setting`;
they never hard-code two sets of numbers. Settings named nbNN_ belong to notebook NN's protocol.
"""

from __future__ import annotations

import os
from types import MappingProxyType

from ..errors import UsageError

__all__ = ["Profile", "get_profile"]

_SETTINGS: dict[str, dict[str, object]] = {
    # name: {"quick": value, "full": value}
    # --- figures shared by several notebooks
    "n_samples_per_plot": {"quick": 8, "full": 16},  # images shown in example grids
    # --- small ViTs trained for well under a minute (notebooks 02 and 03, experiments.short_runs)
    "short_run_per_class": {"quick": 20, "full": 1000},  # training images per class
    "short_run_epochs": {"quick": 1, "full": 1.2},  # 12,000 training images per run when full
    "short_run_test_per_class": {"quick": 10, "full": 200},  # test images per class scored
    # --- pretraining (notebook 05, experiments.pretraining): fractal categories, and a masked autoencoder
    "nb05_corpus_classes": {"quick": 10, "full": 1000},  # fractal categories (benchmarks/pretraining_routes.py)
    "nb05_corpus_per_class": {"quick": 24, "full": 24},  # instances per category (train + validation)
    "nb05_val_per_class": {"quick": 4, "full": 4},  # of which held out for validation
    "nb05_epochs": {"quick": 1, "full": 4},
    "nb05_mae_per_class": {"quick": 30, "full": None},  # Fashion-MNIST training images per class (None: all 6,000)
    "nb05_mae_epochs": {"quick": 1, "full": 6},
    "nb05_mae_mask_ratio": {"quick": 0.75, "full": 0.75},
    "nb05_mae_norm_pix_loss": {"quick": False, "full": False},  # plain pixels: as good at 1% labels (RESULTS.md)
    # exercise 1 (mask less): two short MAE runs (masks 0.25 and 0.75), each encoder then read by a linear probe
    "nb05_ex1_mae_per_class": {"quick": 10, "full": 400},  # Fashion-MNIST training images per class (4,000)
    "nb05_ex1_mae_epochs": {"quick": 1, "full": 2},
    "nb05_ex1_probe_per_class": {"quick": 5, "full": 100},  # labelled images per class the probe trains on
    "nb05_ex1_probe_epochs": {"quick": 2, "full": 10},
    "nb05_ex1_test_per_class": {"quick": 10, "full": 200},  # test images per class the probe is scored on
    # --- data efficiency and translation robustness (notebook 06, experiments.data_efficiency)
    "nb06_labels_per_class": {"quick": [6, 20, 50], "full": [60, 600, 6000]},  # 1%, 10%, 100% when full
    # training images per run, per budget: long enough at 1% for every learning curve to flatten; at 10% and 100%
    # the same number, the longest the series' hour allows (notebook 06 marks a cell whose curve is still rising)
    "nb06_images": {"quick": [256, 256, 256], "full": [76_800, 120_000, 120_000]},
    "nb06_seeds": {"quick": [[0, 1], [0], [0]], "full": [[0, 1], [0], [0]]},  # training seeds, per budget
    "nb06_test_per_class": {"quick": 10, "full": 500},  # test images per class scored (500 -> 5,000)
    "nb06_curve_per_class": {"quick": 5, "full": 200},  # of which scored for the learning curves (200 -> 2,000)
    # the exercises' short runs at 1% of the labels: the linear probe, and crops against a no-crop control
    "nb06_probe_images": {"quick": 256, "full": 19_200},  # a quarter of the 1% column's budget when full
    "nb06_crop_images": {"quick": 64, "full": 6_400},  # a twelfth of it: early training
    # the stand-in for the series' ViT that load_or_train_fmnist_vit trains when notebook 06's is missing
    "fmnist_vit_fallback_epochs": {"quick": 1, "full": 2},
    "fmnist_vit_fallback_per_class": {"quick": 50, "full": 6000},
    # --- attention maps (notebook 07)
    "nb07_grid_images": {"quick": 4, "full": 6},  # test images in the map grids
    "nb07_accuracy_images": {"quick": 500, "full": None},  # test images scored for the accuracy (None: all 10,000)
    "nb07_distance_images": {"quick": 64, "full": 2000},  # test images averaged for the attention distance
    "nb07_faithfulness_images": {"quick": 20, "full": 500},  # test images of the deletion/insertion curves
    "nb07_faithfulness_k": {"quick": 7, "full": 4},  # patches deleted or inserted per step (of 49)
    "nb07_exercise_images": {"quick": 10, "full": 100},  # test images of the exercises' faithfulness runs
    # --- the ablation of minor modifications (notebook 08, experiments.ablation.Protocol)
    "nb08_regimes": {"quick": ["10% labels"], "full": ["10% labels"]},  # '10% labels' and/or 'all labels'
    "nb08_per_class": {"quick": 10, "full": 600},  # the '10% labels' regime (600/class = 10%)
    "nb08_budget_images": {"quick": 100, "full": 18000},  # training images per run (3 epochs of 6,000 when full)
    "nb08_test_size": {"quick": 500, "full": 5000},  # test images for the final accuracy (None: all 10,000)
    "nb08_curve_size": {"quick": 100, "full": 1000},  # test images scored after every epoch
    "nb08_throughput_steps": {"quick": 2, "full": 8},  # optimiser steps per timed epoch
    "nb08_throughput_rounds": {"quick": 1, "full": 2},
    # --- the paper in context (notebook 09, experiments.in_context): timing a training step to price the paper's scale
    "nb09_rate_batch_size": {"quick": 2, "full": 8},  # 224-pixel images per timed ViT-B/32 step
    "nb09_rate_steps": {"quick": 1, "full": 3},  # timed steps (median), after one untimed step
    # --- the engineering appendix (notebook 10): inference throughput and the explorer's latency
    "nb10_batch_size": {"quick": 16, "full": 64},  # 28-pixel images per timed batch
    "nb10_batches": {"quick": 2, "full": 10},  # timed batches per 28-pixel model and precision
    "nb10_tiny_batch_size": {"quick": 4, "full": 16},  # 224-pixel images per timed batch of the tiny preset
    "nb10_tiny_batches": {"quick": 1, "full": 3},
    "nb10_latency_updates": {"quick": 5, "full": 20},  # explorer updates timed per control
}


class Profile:
    """Attribute access to the settings of one profile; an unknown name is an error, not a default."""

    def __init__(self, name: str):
        if name not in ("quick", "full"):
            raise UsageError(f"VITNB_PROFILE must be 'quick' or 'full', got {name!r}")
        self.name = name
        self._values = MappingProxyType({key: both[name] for key, both in _SETTINGS.items()})

    def __getattr__(self, key: str):
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"profile has no setting {key!r}; known: {sorted(self._values)}") from None

    def __repr__(self) -> str:
        return f"Profile({self.name!r})"


def get_profile(name: str | None = None) -> Profile:
    """The profile named by `name`, else by $VITNB_PROFILE, else 'full'."""
    return Profile(name or os.environ.get("VITNB_PROFILE", "full"))
