"""The ablation of notebook 08: variants differ from the base only where they say, and the runner's rows."""

import math

import matplotlib.pyplot as plt
import pytest
import torch

from vitnb import VisionTransformer, num_params, preset
from vitnb.config import SERIES_PRESET
from vitnb.errors import UsageError
from vitnb.experiments import get_profile
from vitnb.experiments.ablation import (
    BASE,
    MAIN_VARIANTS,
    VARIANTS,
    Protocol,
    compare,
    config_diff,
    measure_throughput,
    regime_data,
    run_ablation,
    speed_from_runs,
    variant_source,
)
from vitnb.experiments.ablation_report import CLAIMS, choices, claims, findings, table, verdict
from vitnb.experiments.figures import ablation_styles, plot_ablation, plot_ablation_curves
from vitnb.experiments.results import write_csv


@pytest.fixture
def toy_fmnist(toy):
    """Fashion-MNIST-shaped toy sets: `toy_fmnist(n_per_class, seed)`, 28x28 grayscale, 10 classes."""
    return lambda n_per_class, seed=0: toy(n=10 * n_per_class, size=28, classes=10, seed=seed)


TINY = Protocol(
    per_class=2,
    budget_images=20,
    batch_size=10,
    seeds=(0, 1),
    test_size=None,
    curve_size=20,
    throughput_steps=1,
    throughput_rounds=1,
    regimes=("10% labels", "all labels"),
)


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


def test_baseline_is_the_plain_vit_at_the_series_size_and_the_main_list_covers_the_issue():
    assert VARIANTS["baseline"].config() == BASE
    assert (BASE.class_token, BASE.global_pool, BASE.pos_embed, BASE.norm, BASE.stem) == (
        True,
        "token",
        "learn",
        "pre",
        "patch",
    )
    series = preset(SERIES_PRESET)
    assert (BASE.img_size, BASE.in_chans, BASE.num_classes, BASE.patch_size) == (28, 1, 10, 4)
    assert (BASE.embed_dim, BASE.depth, BASE.num_heads, BASE.mlp_ratio) == (
        series.embed_dim,
        series.depth,
        series.num_heads,
        series.mlp_ratio,
    )
    assert VARIANTS["avg pool + sin-cos"].config() == series  # the series' ViT is one of the variants
    assert {
        "baseline",
        "avg pool",
        "sin-cos pos",
        "avg pool + sin-cos",
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
    assert p["avg pool + sin-cos"] == p["baseline"] - (n + 2) * d
    assert p["post-norm"] == p["baseline"]  # same layers, other wiring
    assert p["LayerScale"] == p["baseline"] + 2 * BASE.depth * d  # two gamma vectors per block
    assert p["LSA"] == p["baseline"] + BASE.depth  # one temperature per block
    assert p["conv stem"] > p["baseline"] and p["SPT"] > p["baseline"]


def test_regimes_get_the_same_training_budget(toy_fmnist):
    train = toy_fmnist(6)
    small, epochs_small = regime_data(train, "10% labels", TINY, seed=0)
    full, epochs_full = regime_data(train, "all labels", TINY, seed=0)
    assert len(small) == 20 and epochs_small == 1
    assert epochs_small * len(small) == epochs_full * len(full) == TINY.budget_images
    assert torch.bincount(small.labels, minlength=10).tolist() == [2] * 10
    again, _ = regime_data(train, "10% labels", TINY, seed=1)
    assert torch.equal(again.images, small.images)  # the 10% selection is the same for every seed
    with pytest.raises(UsageError, match="whole number of epochs"):
        regime_data(train, "10% labels", Protocol(per_class=3, budget_images=20), seed=0)


def test_runner_returns_one_row_per_run(tmp_path, one_thread, toy_fmnist):
    train, test = toy_fmnist(6), toy_fmnist(3, seed=1)
    variants = ["baseline", "SPT + LSA"]
    rows = run_ablation(variants, train, test, TINY, log=None)
    assert [(r["seed"], r["regime"], r["variant"]) for r in rows] == [  # seeds outermost
        (seed, regime, variant) for seed in (0, 1) for regime in ("10% labels", "all labels") for variant in variants
    ]
    for r in rows:
        assert r["test_acc"] * len(test) == pytest.approx(round(r["test_acc"] * len(test)))  # a share of 30 images
        assert r["params"] == num_params(VisionTransformer(VARIANTS[r["variant"]].config()))
        assert (r["epochs"], r["steps"], r["train_images"], r["curve_steps"]) == (1, 2, 20, [2])
        assert len(r["curve_acc"]) == 1
    speed = measure_throughput(variants, train, TINY)
    assert list(speed) == variants and all(math.isfinite(v) and v > 0 for v in speed.values())
    assert write_csv(rows, tmp_path / "rows.csv").read_text().count("\n") == len(rows) + 1
    fig = plot_ablation(compare(rows, speed))
    assert len(fig.axes) == 3  # one per regime, then the speeds
    plt.close(fig)
    fig = plot_ablation_curves(rows)
    assert [line.get_label() for line in fig.axes[0].lines] == variants
    assert len(fig.axes[0].lines[0].get_xdata()) == 1  # one epoch: one point, of the first regime's runs
    plt.close(fig)


def test_protocol_trains_with_flips_only_in_fp32_and_extra_overrides():
    cfg = Protocol().train_config(epochs=3, seed=1)
    assert (cfg.augment, cfg.crop_pad, cfg.precision, cfg.seed) == (True, 0, "fp32", 1)
    assert cfg.warmup_epochs == pytest.approx(3 * Protocol().warmup_frac)
    assert Protocol(extra={"precision": "bf16", "label_smoothing": 0.0}).train_config(1, 0).precision == "bf16"


def test_plot_styles_tell_every_variant_apart():
    styles = ablation_styles(list(MAIN_VARIANTS))
    assert styles["baseline"]["color"] == "black"
    looks = [(s["color"], s["marker"], s.get("ls", "-")) for s in styles.values()]
    assert len(set(looks)) == len(looks) and len({s["color"] for s in styles.values()}) == len(looks)
    many = ablation_styles(["baseline"] + [f"v{i}" for i in range(12)])
    assert len({(s["color"], s["marker"], s.get("ls", "-")) for s in many.values()}) == 13


def test_accuracy_panel_is_a_dot_plot_with_seed_ranges_and_the_speed_axis_starts_at_zero():
    summary = compare(fake_rows(), {"baseline": 200.0, "LSA": 150.0})
    fig = plot_ablation(summary)
    acc_ax, speed_ax = fig.axes[0], fig.axes[-1]
    ranges = [line for line in acc_ax.lines if len(line.get_xdata()) == 2 and line.get_ydata()[0] == 1]
    assert [list(line.get_xdata()) for line in ranges] == [pytest.approx([85.0, 87.0])]  # LSA in regime A
    assert ranges[0].get_color() == "tab:green"  # +5 points, beyond both 2-point ranges
    assert speed_ax.get_xlim()[0] == 0
    plt.close(fig)


def fake_rows():
    """Two variants x two regimes x two seeds with known accuracies."""
    accs = {("baseline", "A"): (0.80, 0.82), ("LSA", "A"): (0.85, 0.87), ("baseline", "B"): (0.90, 0.90)}
    accs[("LSA", "B")] = (0.89, 0.91)
    return [
        {"variant": v, "regime": g, "seed": i, "test_acc": a, "params": 100 if v == "baseline" else 104, "steps": 8}
        for (v, g), pair in accs.items()
        for i, a in enumerate(pair)
    ]


def test_compare_measures_every_variant_against_the_baseline():
    summary = compare(fake_rows(), {"baseline": 200.0, "LSA": 150.0})
    assert [(s["variant"], s["regime"], s["n"]) for s in summary] == [
        ("baseline", "A", 2),
        ("LSA", "A", 2),
        ("baseline", "B", 2),
        ("LSA", "B", 2),
    ]
    lsa_a, lsa_b = summary[1], summary[3]
    assert lsa_a["mean"] == pytest.approx(0.86) and lsa_a["delta"] == pytest.approx(0.05)
    assert lsa_a["spread"] == pytest.approx(0.02) and lsa_a["baseline_spread"] == pytest.approx(0.02)
    assert lsa_a["beyond_spread"] and not lsa_b["beyond_spread"]  # +5 points vs a 2-point spread; 0 vs 2
    assert (lsa_a["params"], lsa_a["steps"], lsa_a["images_per_s"], lsa_a["speed_rel"]) == (104, 8, 150.0, 0.75)
    assert summary[0]["delta"] == 0 and summary[0]["speed_rel"] == 1
    assert math.isnan(compare(fake_rows())[1]["speed_rel"])  # no throughput measured


def test_table_shows_accuracy_ranges_and_changes_in_points():
    assert table(compare(fake_rows(), {"baseline": 200.0, "LSA": 150.0})).splitlines() == [
        "| variant | params | train img/s (vs base) | A: acc % | Δ pp | B: acc % | Δ pp |",
        "|---|---|---|---|---|---|---|",
        "| baseline | 100 | 200 (1.00x) | 81.00 (80.00-82.00) |  | 90.00 (90.00-90.00) |  |",
        "| LSA | 104 | 150 (0.75x) | 86.00 (85.00-87.00) | +5.00* | 90.00 (89.00-91.00) | +0.00 |",
    ]
    assert "| n/a |" in table(compare(fake_rows()))


def test_claims_table_gives_a_verdict_only_beyond_the_seed_spread():
    rows = [
        {"variant": v, "regime": "A", "seed": i, "test_acc": a, "params": 1, "steps": 1}
        for v, accs in {
            "baseline": (0.70, 0.71),
            "conv stem": (0.80, 0.81),  # claim +: agrees
            "post-norm": (0.75, 0.76),  # claim -: disagrees
            "avg pool": (0.70, 0.72),  # inside the spread
            "patch 7": (0.80, 0.81),  # claim -, about converged models: disagrees early in training
            "LayerScale": (0.90, 0.91),  # a claim about deep stacks: not testable on the base model
        }.items()
        for i, a in enumerate(accs)
    ]
    lines = claims(compare(rows)).splitlines()
    assert lines[0] == "| variant | claim | by | A: Δ pp | verdict |"
    verdicts = {line.split(" | ")[0].strip("| "): line.split(" | ")[-1].strip(" |") for line in lines[2:]}
    assert verdicts == {
        "avg pool": "within the seed spread",
        "post-norm": f"not testable here ({BASE.depth} blocks)",
        "conv stem": "agrees",
        "patch 7": "disagrees early in training (the claim is about converged models)",
        "LayerScale": f"not testable here ({BASE.depth} blocks)",
    }
    assert BASE.depth == 4
    assert verdict({"delta": -0.05, "beyond_spread": True}, +1) == "disagrees"
    assert set(CLAIMS) <= set(MAIN_VARIANTS)


def test_profiles_define_the_protocol():
    for name in ("quick", "full"):
        p = Protocol.from_profile(get_profile(name))
        assert p.budget_images % (10 * p.per_class) == 0
        assert p.crop_pad == 0 and p.regimes
    assert Protocol.from_profile(get_profile("full")).per_class == 600  # 10% of Fashion-MNIST's labels


def test_findings_say_in_words_what_the_numbers_show():
    accs = {
        "baseline": (0.70, 0.72),
        "avg pool": (0.71, 0.73),  # +1 point: within the 2-point ranges
        "sin-cos pos": (0.75, 0.76),  # +4.5: beyond
        "avg pool + sin-cos": (0.74, 0.75),  # +3.5: beyond, but no better than sin-cos alone
        "no pos": (0.66, 0.67),  # -4.5: beyond, below
    }
    rows = [
        {"variant": v, "regime": "A", "seed": i, "test_acc": a, "params": 1, "steps": 1}
        for v, pair in accs.items()
        for i, a in enumerate(pair)
    ]
    speed = {"baseline": 100.0, "avg pool": 101.0, "sin-cos pos": 103.0, "avg pool + sin-cos": 99.0, "no pos": 220.0}
    lines = findings(compare(rows, speed), rows).splitlines()
    assert lines == [
        "- Above the baseline by more than both seed ranges (change of the mean, points): *sin-cos pos* (+4.50), "
        "*avg pool + sin-cos* (+3.50).",
        "- Below the baseline by more than both seed ranges: *no pos* (-4.50).",
        "- Within the seed ranges, so two seeds cannot tell: *avg pool* (+1.00).",
        "- Seed by seed, 3 of the 4 variants beat the baseline on both seeds; *no pos* falls below it on both seeds.",
        "- *avg pool + sin-cos* (+3.50) does no better than its better part alone (*sin-cos pos*: +4.50), a gap of "
        "1.00 points, within the seed ranges; *avg pool* alone gives +1.00.",
        "- Training speed, in images per second against the baseline's: *no pos* 2.20x; the other variants 0.99x to "
        "1.03x.",
    ]
    assert "Seed by seed" not in findings(compare(rows))  # without the rows, no seed-by-seed count
    assert "speed" not in findings(compare(rows))  # nor a speed sentence without speeds


def test_choices_weigh_each_design_choice_in_the_pairs_that_differ_in_it_alone():
    def summary(accs):
        rows = [
            {"variant": v, "regime": "A", "seed": i, "test_acc": a, "params": 1, "steps": 1}
            for v, pair in accs.items()
            for i, a in enumerate(pair)
        ]
        return compare(rows)

    accs = {
        "baseline": (0.70, 0.72),
        "avg pool": (0.72, 0.74),  # +2 over the baseline: within the 2-point ranges
        "sin-cos pos": (0.75, 0.76),  # +4.5 over the baseline: beyond
        "avg pool + sin-cos": (0.74, 0.75),  # -1 against sin-cos pos (pooling); +1.5 against avg pool (positions)
    }
    pooling, positions = choices(summary(accs)).splitlines()
    assert pooling == (
        "- **Average pooling against a class token:** +2.00 points with learned positions (*avg pool* against "
        "*baseline*), within the seed ranges; -1.00 points with sin-cos positions (*avg pool + sin-cos* against "
        "*sin-cos pos*), within the seed ranges. Neither is ahead in every pair, so these runs show neither to be "
        "better; in the series' ViT it is a choice of simplicity: no extra token to learn and to carry through every "
        "block."
    )
    assert "+4.50 points with a class token (*sin-cos pos* against *baseline*), more than both seed ranges" in positions
    assert (
        "ahead in every pair, and by more than both seed ranges in 1 of 2: partial support; in the series' "
        in positions
    )
    # average pooling ahead by more than both ranges in both pairs: supported, and no other reason is given
    clear = {**accs, "avg pool": (0.76, 0.77), "avg pool + sin-cos": (0.79, 0.80)}
    pooling = choices(summary(clear)).splitlines()[0]
    assert pooling.endswith(
        "Average pooling is ahead in every pair, by more than both seed ranges: these runs support it."
    )
    behind = {**accs, "avg pool": (0.65, 0.66), "avg pool + sin-cos": (0.70, 0.71)}
    assert "A class token is ahead in every pair, by more than both seed ranges: these runs favour it;" in choices(
        summary(behind)
    )
    partly = {**behind, "avg pool + sin-cos": (0.745, 0.755)}  # -0.5 against sin-cos pos: within the 1-point ranges
    assert (
        "A class token is ahead in every pair, and by more than both seed ranges in 1 of 2: partial support; in the "
        "series' ViT it is a choice of simplicity" in choices(summary(partly))
    )
    # a pair with a variant missing is skipped; a choice with no pair measured has no bullet
    only = choices(summary({k: accs[k] for k in ("baseline", "avg pool")}))
    assert (
        only.count("\n") == 0
        and "+2.00 points with learned positions" in only
        and "within the seed ranges: two" in only
    )


def test_speed_from_runs_is_the_rate_of_each_variants_fastest_run():
    rows = [
        {"variant": "baseline", "train_images": 1000, "seconds": 2.0},
        {"variant": "baseline", "train_images": 1000, "seconds": 4.0},
        {"variant": "baseline", "train_images": 1000, "seconds": 5.0},
        {"variant": "patch 7", "train_images": 1000, "seconds": 1.0},
    ]
    assert speed_from_runs(rows) == {"baseline": 500.0, "patch 7": 1000.0}
