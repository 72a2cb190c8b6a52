"""Notebook 09's measurements and tables (vitnb.experiments.in_context)."""

import math

import pytest
from torch import nn

import vitnb
from vitnb.experiments import in_context


def linear_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 5))  # images (3, 2, 2) -> 5 logits


def test_training_flops_of_a_linear_layer_are_counted_exactly():
    # forward: 2 * 12 * 5 per image; backward: the weight gradient, another 2 * 12 * 5 (the input needs none)
    assert in_context.train_flops_per_image(linear_model(), (3, 2, 2)) == 240


def test_training_flops_per_image_do_not_depend_on_the_batch_and_leave_the_model_as_it_was():
    model = vitnb.VisionTransformer(vitnb.preset("cpu_small")).eval()
    one, four = (in_context.train_flops_per_image(model, (1, 28, 28), batch_size=b) for b in (1, 4))
    assert one == four
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    # a training step costs about three forward passes: 2 FLOPs per weight and token forward, 4 backward
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    assert 3 * 2 * linear * 49 <= one <= 3 * 2 * linear * 49 * 1.5


def test_flop_rate_is_positive_and_finite():
    rate = in_context.flop_rate(linear_model(), (3, 2, 2), batch_size=4, steps=2)
    assert rate > 0 and math.isfinite(rate)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(42, "42 s"), (150, "2.5 minutes"), (3 * 3600, "3.0 hours"), (400 * 86_400, "400 days"), (3e9, "95 years")],
)
def test_duration_picks_a_readable_unit(seconds, text):
    assert in_context.duration(seconds) == text


@pytest.mark.parametrize(("flops", "text"), [(87e6, "87 MFLOP"), (1.04e13, "10 TFLOP"), (1.31e17, "131 PFLOP")])
def test_flops_text_picks_a_readable_unit(flops, text):
    assert in_context.flops_text(flops) == text


def test_tables_show_every_published_figure_and_the_series_figures():
    table = in_context.published_table()
    for p in in_context.PUBLISHED:
        assert f"{p.imagenet_top1:.2f}%" in table and f"{p.tpu_v3_core_days:,.0f} TPUv3-core-days" in table
    assert len(table.splitlines()) == 2 + len(in_context.PUBLISHED)
    follow = in_context.follow_ups_table()
    assert all(paper in follow for paper, _, _ in in_context.FOLLOW_UPS)
    series = dict(
        images=60_000,
        img_size=28,
        params=301_930,
        train_flops=1.04e13,
        cpu_time="2.0 minutes",
        accuracy=0.8418,
        test_set="Fashion-MNIST test images",
    )
    side_by_side = in_context.paper_vs_series(series)
    for shown in (
        "60,000 images",
        "28 x 28",
        "0.30M",
        "10 TFLOP: 2.0 minutes at the rate timed",
        "84.2%",
        "632M",
        "88.55%",
    ):
        assert shown in side_by_side
