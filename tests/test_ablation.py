"""The ablation of notebook 08: variants differ from the base only where they say, and the runner's rows."""

import math

import matplotlib.pyplot as plt
import pytest
import torch

from vitnb import VisionTransformer, get_profile, num_params
from vitnb.ablation import (
    BASE,
    MAIN_VARIANTS,
    VARIANTS,
    Protocol,
    config_diff,
    markdown_table,
    measure_throughput,
    plot_ablation,
    plot_curves,
    regime_data,
    run_ablation,
    summarize,
    variant_source,
    write_csv,
)
from vitnb.data import ImageTensorDataset


def toy_fmnist(n_per_class=6, seed=0) -> ImageTensorDataset:
    """28x28 grayscale, 10 classes: class c brightens row band c over noise (learnable, tiny)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(10).repeat_interleave(n_per_class)
    images = torch.randint(0, 80, (len(labels), 1, 28, 28), generator=g)
    for i, c in enumerate(labels.tolist()):
        images[i, :, 2 * c : 2 * c + 3] += 150
    return ImageTensorDataset(images.clamp(0, 255).to(torch.uint8), labels, [str(c) for c in range(10)], (0.3,), (0.3,))


TINY = Protocol(
    per_class=2,
    budget_images=20,
    batch_size=10,
    seeds=(0, 1),
    test_size=None,
    curve_size=20,
    throughput_steps=1,
    throughput_rounds=1,
    extra={"precision": "fp32"},
)


@pytest.fixture
def one_thread():
    """Many tiny steps: one thread is fastest, and far faster when other jobs share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_changes_only_its_fields_and_runs(name):
    variant = VARIANTS[name]
    cfg = variant.config()
    diff = config_diff(cfg)
    assert set(diff) == set(variant.changes)
    assert all(new == variant.changes[k] and old != new for k, (old, new) in diff.items())
    model = variant.build(seed=0).eval()
    assert model.cfg == cfg
    logits = model(torch.randn(2, 1, 28, 28))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert variant_source(name).strip()  # the notebook shows the lines that implement it


def test_baseline_is_the_plain_vit_and_the_main_list_covers_the_issue():
    assert VARIANTS["baseline"].config() == BASE
    assert (BASE.class_token, BASE.global_pool, BASE.pos_embed, BASE.norm, BASE.stem) == (
        True,
        "token",
        "learn",
        "pre",
        "patch",
    )
    assert (BASE.img_size, BASE.in_chans, BASE.num_classes, BASE.patch_size) == (28, 1, 10, 4)
    assert {
        "baseline",
        "avg pool",
        "sin-cos pos",
        "no pos",
        "patch 7",
        "post-norm",
        "conv stem",
        "SPT + LSA",
        "LayerScale",
    } == set(MAIN_VARIANTS)


def test_parameter_counts_differ_as_the_changes_imply():
    p = {name: num_params(VARIANTS[name].build()) for name in VARIANTS}
    d, n = BASE.embed_dim, BASE.num_patches
    assert p["sin-cos pos"] == p["no pos"] == p["baseline"] - (n + 1) * d  # the learned table is gone
    assert p["avg pool"] == p["baseline"] - 2 * d  # no cls token nor its position row; fc_norm replaces norm
    assert p["post-norm"] == p["baseline"]  # same layers, other wiring
    assert p["LayerScale"] == p["baseline"] + 2 * BASE.depth * d  # two gamma vectors per block
    assert p["LSA"] == p["baseline"] + BASE.depth  # one temperature per block
    assert p["conv stem"] > p["baseline"] and p["SPT"] > p["baseline"]


def test_regimes_get_the_same_training_budget():
    train = toy_fmnist(n_per_class=6)
    small, epochs_small = regime_data(train, "10% labels", TINY, seed=0)
    full, epochs_full = regime_data(train, "all labels", TINY, seed=0)
    assert len(small) == 20 and epochs_small == 1
    assert epochs_small * len(small) == epochs_full * len(full) == TINY.budget_images
    assert torch.bincount(small.labels, minlength=10).tolist() == [2] * 10
    again, _ = regime_data(train, "10% labels", TINY, seed=1)
    assert torch.equal(again.images, small.images)  # the 10% selection is the same for every seed
    with pytest.raises(ValueError, match="whole number of epochs"):
        regime_data(train, "10% labels", Protocol(per_class=3, budget_images=20), seed=0)


def test_runner_returns_well_formed_rows_and_tables(tmp_path, one_thread):
    train, test = toy_fmnist(6), toy_fmnist(3, seed=1)
    variants = ["baseline", "conv stem", "SPT + LSA"]
    rows = run_ablation(variants, train, test, TINY, log=None)
    assert len(rows) == len(variants) * 2 * 2  # variants x regimes x seeds
    for r in rows:
        assert 0.0 <= r["test_acc"] <= 1.0
        assert r["params"] == num_params(VisionTransformer(VARIANTS[r["variant"]].config()))
        assert r["steps"] == 2 and r["train_images"] == 20
        assert len(r["curve_acc"]) == r["epochs"] and all(0 <= a <= 1 for a in r["curve_acc"])
    speed = measure_throughput(variants, train, TINY)
    assert set(speed) == set(variants) and all(v > 0 for v in speed.values())
    summary = summarize(rows, speed)
    assert len(summary) == len(variants) * 2
    for s in summary:
        assert s["seeds"] == 2 and s["acc_min"] <= s["acc_mean"] <= s["acc_max"]
        assert s["spread"] == pytest.approx(s["acc_max"] - s["acc_min"])
        assert s["speed_rel"] > 0 and not math.isnan(s["delta"])
    assert all(s["delta"] == 0 and s["speed_rel"] == 1 for s in summary if s["variant"] == "baseline")
    table = markdown_table(summary).splitlines()
    assert len(table) == 2 + len(variants) and all(line.count("|") == 8 for line in table)
    assert write_csv(rows, tmp_path / "rows.csv").read_text().count("\n") == len(rows) + 1
    for fig in (plot_ablation(summary), plot_curves(rows)):
        assert fig.axes
        plt.close(fig)


def test_profiles_define_the_protocol():
    for name in ("quick", "full"):
        p = Protocol.from_profile(get_profile(name))
        assert p.budget_images % (10 * p.per_class) == 0
    assert Protocol.from_profile(get_profile("full")).per_class == 600  # 10% of Fashion-MNIST's labels
