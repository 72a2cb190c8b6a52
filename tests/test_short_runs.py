"""Notebooks 02 and 03's short runs, and the measures of position tables that notebook 02 prints."""

import pytest
import torch

from vitnb import VisionTransformer, preset, sincos_2d
from vitnb.config import SERIES_PRESET
from vitnb.errors import UsageError
from vitnb.experiments import get_profile
from vitnb.experiments.short_runs import (
    learned_positions_config,
    mean_pair_similarity,
    mirror_similarity,
    offset_spread,
    train_briefly,
)


def test_learned_positions_config_is_the_series_vit_with_a_learned_table():
    cfg = learned_positions_config()
    assert cfg == preset(SERIES_PRESET).replace(pos_embed="learn")


def test_sincos_tables_depend_only_on_the_offset():
    table = sincos_2d(64, (6, 6))  # (1, 36, 64)
    assert offset_spread(table, (6, 6)) == pytest.approx(0.0, abs=1e-5)
    assert offset_spread(torch.randn(1, 36, 64), (6, 6)) > 0.05
    # rows and columns are encoded alike, so both mirrors are equally similar
    assert mirror_similarity(table, (6, 6), "left-right") == pytest.approx(mirror_similarity(table, (6, 6), "up-down"))


def test_mirror_similarity_sees_a_left_right_symmetric_table():
    half = torch.randn(4, 3, 16)
    table = torch.cat([half, half.flip(1)], dim=1).reshape(1, 24, 16)  # (1, 4 * 6, 16): column c == column 5 - c
    assert mirror_similarity(table, (4, 6), "left-right") == pytest.approx(1.0)
    assert mirror_similarity(table, (4, 6), "up-down") < 0.5
    with_cls = torch.cat([torch.randn(1, 1, 16), table], dim=1)  # a prefix row is ignored
    assert mirror_similarity(with_cls, (4, 6), "left-right") == pytest.approx(1.0)
    # odd width: the middle column is its own mirror and left out, not counted as a perfect match
    odd = torch.randn(1, 3 * 5, 16)
    assert mirror_similarity(odd, (3, 5), "left-right") < 0.5
    with pytest.raises(UsageError, match="axis"):
        mirror_similarity(table, (4, 6), "diagonal")


def test_mean_pair_similarity_leaves_out_each_patch_with_itself():
    same = torch.ones(1, 9, 8)
    assert mean_pair_similarity(same, (3, 3)) == pytest.approx(1.0)
    orthogonal = torch.eye(9)[None]  # (1, 9, 9): nine orthogonal rows
    assert mean_pair_similarity(orthogonal, (3, 3)) == pytest.approx(0.0)


def test_train_briefly_trains_the_given_model(one_thread, toy):
    train, test = toy(n=200, size=28, classes=10), toy(n=100, size=28, classes=10, seed=1)
    cfg = preset("cpu_small", embed_dim=32, depth=1, num_heads=2, pos_embed="learn")
    model, acc = train_briefly(cfg, train, test, flips=True, profile=get_profile("quick"))
    assert model.cfg == cfg and not model.training
    assert 0.0 <= acc <= 1.0
    torch.manual_seed(0)  # train_briefly's seed: the same model before training
    before = VisionTransformer(cfg)
    assert (model.pos_embed - before.pos_embed).abs().max() > 1e-3  # the table was trained
