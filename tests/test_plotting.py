import io
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import MAPS_VIT, tiny_vit
from matplotlib.figure import Figure
from PIL import Image

from vitnb import plotting, sincos_2d
from vitnb.errors import UsageError
from vitnb.maps import attention_map, forward_cache


def shown_scaled(image) -> torch.Tensor:
    """What an AxesImage shows, as its colour scale's fraction in [0, 1] (the map after its norm)."""
    return torch.from_numpy(np.asarray(image.norm(image.get_array()), dtype=np.float32))


# --- patch_mosaic ------------------------------------------------------------------------------------
def test_patch_mosaic_places_every_patch_and_fills_the_gaps():
    image = torch.rand(3, 8, 12)
    mosaic = plotting.patch_mosaic(image, 4, gap=2, fill=(0.1, 0.2, 0.3))
    assert mosaic.shape == (3, 8 + 2, 12 + 2 * 2)  # 2x3 patches: one gap row, two gap columns
    is_patch = torch.zeros(mosaic.shape[1:], dtype=torch.bool)
    for i in range(2):
        for j in range(3):
            block = mosaic[:, i * 6 : i * 6 + 4, j * 6 : j * 6 + 4]
            assert torch.equal(block, image[:, i * 4 : (i + 1) * 4, j * 4 : (j + 1) * 4])
            is_patch[i * 6 : i * 6 + 4, j * 6 : j * 6 + 4] = True
    gaps = mosaic[:, ~is_patch]  # (3, gap pixels)
    assert gaps.shape[1] == mosaic.shape[1] * mosaic.shape[2] - 8 * 12
    assert torch.equal(gaps, torch.tensor([0.1, 0.2, 0.3]).reshape(3, 1).expand_as(gaps))


def test_patch_mosaic_without_gap_is_the_image_and_rejects_bad_sizes():
    image = torch.rand(1, 6, 9)
    assert torch.equal(plotting.patch_mosaic(image, 3, gap=0), image)
    assert plotting.patch_mosaic(image, (2, 3), gap=1).shape == (1, 6 + 2, 9 + 2)
    with pytest.raises(UsageError, match="divisible"):
        plotting.patch_mosaic(image, 4)


# --- position-embedding similarity ------------------------------------------------------------------
def test_pos_embed_similarity_equals_direct_cosine_similarity():
    grid = (3, 4)
    pos_embed = torch.randn(1, 2 + 12, 16)  # two prefix rows, which must be skipped
    sim = plotting.pos_embed_similarity(pos_embed, num_prefix_tokens=2, grid_size=grid)
    assert sim.shape == (3, 4, 3, 4)
    patches = pos_embed[0, 2:]
    for i, j, r, c in [(0, 0, 0, 0), (0, 1, 2, 3), (2, 3, 1, 0), (1, 2, 1, 1)]:
        expected = F.cosine_similarity(patches[i * 4 + j], patches[r * 4 + c], dim=0)
        torch.testing.assert_close(sim[i, j, r, c], expected)
    torch.testing.assert_close(sim.reshape(12, 12).diagonal(), torch.ones(12))
    torch.testing.assert_close(sim, sim.permute(2, 3, 0, 1))  # symmetric
    with pytest.raises(UsageError, match="grid"):
        plotting.pos_embed_similarity(pos_embed, num_prefix_tokens=2, grid_size=(4, 4))


def test_sincos_similarity_depends_only_on_the_offset():
    sim = plotting.pos_embed_similarity(sincos_2d(32, (5, 5), 1), num_prefix_tokens=1, grid_size=(5, 5))
    torch.testing.assert_close(sim[0, 0, 1, 2], sim[3, 2, 4, 4])  # same offset (+1, +2)
    torch.testing.assert_close(sim[1, 1, 3, 1], sim[2, 4, 4, 4])  # same offset (+2, 0)


def test_plot_pos_embed_similarity_shows_the_tiled_grid():
    pos_embed = torch.randn(1, 1 + 6, 8)
    fig = plotting.plot_pos_embed_similarity(pos_embed, num_prefix_tokens=1, grid_size=(2, 3))
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # the grid and its colour bar
    shown = torch.from_numpy(fig.axes[0].images[0].get_array().filled(math.nan))
    assert shown.shape == (2 * 2 + 1, 3 * 3 + 2)  # 2x3 tiles of 2x3, one blank line between tiles
    sim = plotting.pos_embed_similarity(pos_embed, num_prefix_tokens=1, grid_size=(2, 3))
    torch.testing.assert_close(shown[3:5, 4:7], sim[1, 1])  # tile (1, 1)
    assert shown[2].isnan().all() and shown[:, 3].isnan().all()  # the blank lines
    plt.close(fig)


# --- images and maps ---------------------------------------------------------------------------------
def test_min_max_and_display_image():
    torch.testing.assert_close(plotting.min_max(torch.tensor([2.0, 4.0, 3.0])), torch.tensor([0.0, 1.0, 0.5]))
    torch.testing.assert_close(plotting.min_max(torch.full((2, 2), 7.0)), torch.zeros(2, 2))  # constant: zeros
    uint8 = torch.tensor([[[0, 51], [102, 204]]], dtype=torch.uint8)  # fixed 0-255 scale, not stretched
    torch.testing.assert_close(plotting.display_image(uint8), torch.tensor([[[0.0, 0.2], [0.4, 0.8]]]))
    normalised = torch.tensor([[[-1.0, 0.0], [1.0, 3.0]]], requires_grad=True)
    torch.testing.assert_close(plotting.display_image(normalised), torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))


def test_upsampled_heat_repeats_each_token_over_its_patch():
    """No smoothing: every pixel of patch (r, c) shows token (r, c)'s value, so a block is a token."""
    heat = torch.tensor([[0.0, 2.0, 1.0], [4.0, 6.0, 3.0]])
    raw = plotting.upsampled_heat(heat, (8, 12), scale=False)
    expected = heat.repeat_interleave(4, dim=0).repeat_interleave(4, dim=1)  # (8, 12)
    torch.testing.assert_close(raw, expected)
    up = plotting.upsampled_heat(heat, (8, 12))
    torch.testing.assert_close(up, expected / 6.0)  # then min-max scaled
    assert (up.min(), up.max()) == (0.0, 1.0)


@pytest.mark.parametrize("channels", [1, 3])
def test_translucent_map_shows_the_image_under_it(channels):
    fig = Figure()
    ax = fig.add_subplot()
    image, heat = torch.rand(channels, 32, 48), torch.rand(2, 3)
    drawn = plotting.show_map(ax, image, heat, alpha=0.5)
    assert len(fig.axes) == 1 and list(ax.images) == [ax.images[0], drawn]  # the image, then the map over it
    shown = torch.from_numpy(np.asarray(ax.images[0].get_array()))
    expected = plotting.display_image(image)  # (C, H, W)
    torch.testing.assert_close(shown, expected[0] if channels == 1 else expected.permute(1, 2, 0))
    assert drawn.get_alpha() == 0.5 and drawn.get_clim() == (float(heat.min()), float(heat.max()))
    torch.testing.assert_close(shown_scaled(drawn), plotting.upsampled_heat(heat, (32, 48)))  # min-max scaled


def test_plot_mean_attention_distance_one_scatter_per_head():
    distance = torch.rand(4, 3) * 100
    fig = plotting.plot_mean_attention_distance(distance)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    scatters = fig.axes[0].collections
    assert len(scatters) == 3
    for head, scatter in enumerate(scatters):
        np.testing.assert_allclose(scatter.get_offsets(), np.stack([np.arange(4), distance[:, head].numpy()], axis=1))
    plt.close(fig)


def test_plot_attention_distance_by_depth_draws_each_model_and_the_reference():
    distances = {"trained": torch.rand(4, 3) * 10, "untrained": torch.rand(4, 3) * 10}
    fig = plotting.plot_attention_distance_by_depth(distances, uniform=7.5)
    (ax,) = fig.axes
    means = [line for line in ax.lines if line.get_marker() == "o"]
    assert [line.get_label() for line in means] == ["trained (mean of heads)", "untrained (mean of heads)"]
    for line, d in zip(means, distances.values(), strict=True):
        np.testing.assert_allclose(line.get_ydata(), d.double().mean(dim=1).numpy())
    assert [len(c.get_offsets()) for c in ax.collections] == [12, 12]  # a dot per block and head
    np.testing.assert_allclose(
        np.sort(ax.collections[1].get_offsets()[:, 1]), np.sort(distances["untrained"].flatten())
    )
    assert any(line.get_linestyle() == "--" and line.get_ydata()[0] == 7.5 for line in ax.lines)
    plt.close(fig)


def test_show_map_draws_raw_values_on_the_given_scale():
    fig = Figure()
    ax = fig.add_subplot()
    image = torch.zeros(1, 8, 8)
    image[:, 2:6, 2:6] = 1.0  # a bright square: the contour
    heat = torch.tensor([[0.1, 0.2], [0.3, 0.05]])
    shown = plotting.show_map(ax, image, heat, alpha=1.0, vmin=0.0, vmax=0.5, outline=0.2, grid=True)
    assert shown.get_clim() == (0.0, 0.5) and list(ax.images) == [shown]  # opaque: no image under the map
    torch.testing.assert_close(
        torch.from_numpy(np.asarray(shown.get_array())), plotting.upsampled_heat(heat, (8, 8), False)
    )
    assert len(ax.collections) >= 1  # the outline of the image
    assert len(ax.lines) == 2  # one horizontal and one vertical grid line on a 2x2 grid


def test_plot_map_grid_with_colorbars_shares_a_scale_per_column():
    images = torch.rand(3, 1, 8, 8)
    maps = {"a": torch.rand(3, 4, 4), "b": 5 * torch.rand(3, 4, 4)}
    fig = plotting.plot_map_grid(images, maps, label="x uniform", row_titles=["p", "q", "r"])
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(axes) == 9 and len(bars) == 2 and fig.axes[-2:] == bars  # the colorbars come after the panels
    assert [axes[j].get_title() for j in range(3)] == ["p", "a", "b"]
    for j, m in enumerate(maps.values(), start=1):
        for i in range(3):
            drawn = axes[3 * i + j].images[0]
            assert drawn.get_clim() == pytest.approx((float(m.min()), float(m.max())))
            torch.testing.assert_close(
                torch.from_numpy(np.asarray(drawn.get_array())), plotting.upsampled_heat(m[i], (8, 8), False)
            )
    assert bars[0].get_xlabel() == "x uniform"
    plt.close(fig)
    long_title = "T-shirt/top -> T-shirt/top (87%)"
    long_maps = {"raw attention, last block": maps["a"], "rollout": maps["b"]}
    fig = plotting.plot_map_grid(images[:1], long_maps, row_titles=[long_title], cell_size=1.6)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    row_title, first_header = fig.axes[0].title, fig.axes[1].title
    assert row_title.get_text().replace("\n", " ") == long_title  # wrapped, not cut
    assert row_title.get_window_extent(renderer).x1 < first_header.get_window_extent(renderer).x0
    plt.close(fig)
    fig = plotting.plot_map_grid(images, maps, from_zero=True)
    assert fig.axes[1].images[0].get_clim() == pytest.approx((0.0, float(maps["a"].max())))
    assert fig.axes[0].get_title() == "image"  # no row titles
    plt.close(fig)


def test_plot_map_grid_without_colorbars_scales_each_map():
    images = torch.rand(2, 3, 16, 16)
    maps = {"rollout": torch.rand(2, 4, 4), "gradient": torch.rand(2, 4, 4)}
    fig = plotting.plot_map_grid(images, maps, colorbar=False, alpha=0.5, cmap="inferno", outline=None, grid=False)
    assert isinstance(fig, Figure) and len(fig.axes) == 6  # no colorbars
    assert [ax.get_title() for ax in fig.axes[:3]] == ["image", "rollout", "gradient"]
    image, heat = fig.axes[5].images  # row 1, 'gradient': the image under its map
    torch.testing.assert_close(shown_scaled(heat), plotting.upsampled_heat(maps["gradient"][1], (16, 16)))
    assert heat.get_alpha() == 0.5 and heat.get_cmap().name == "inferno" and not fig.axes[5].lines  # no grid
    plt.close(fig)


# --- figures -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_show_patches_draws_the_mosaic_and_numbers(channels):
    image = (torch.rand(channels, 28, 28) * 255).to(torch.uint8)
    fig = plotting.show_patches(image, 7, gap=1, numbers=True)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (28 + 3, 28 + 3, 3)
    assert [t.get_text() for t in ax.texts] == [str(i) for i in range(16)]
    plt.close(fig)


def test_plot_attention_heatmap_one_axes_per_head_plus_colour_bar():
    weights = torch.rand(3, 5, 5).softmax(dim=-1)
    fig = plotting.plot_attention_heatmap(weights, num_prefix_tokens=1)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 + 1
    for h in range(3):
        torch.testing.assert_close(torch.from_numpy(fig.axes[h].images[0].get_array().data), weights[h])
    plt.close(fig)
    fig = plotting.plot_attention_heatmap(weights[0])
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(UsageError, match="attention weights"):
        plotting.plot_attention_heatmap(torch.rand(2, 3, 4))


# --- the explorer's pictures -------------------------------------------------------------------------
def test_render_overlay_blends_and_scales():
    gray = torch.full((1, 4, 4), 128, dtype=torch.uint8)
    plain = plotting.render_overlay(gray, None, scale=3)
    assert plain.shape == (12, 12, 3) and plain.dtype == np.uint8
    assert (plain == 128).all()
    assert (plotting.render_overlay(gray, torch.rand(2, 2), alpha=0.0) == 128).all()  # opacity 0: the image only
    heat = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    full = plotting.render_overlay(gray, heat, alpha=1.0, cmap="gray")  # gray colormap: the scaled map itself
    expected = (plotting.upsampled_heat(heat, (4, 4)) * 255 + 0.5).to(torch.uint8)
    np.testing.assert_array_equal(full, expected[..., None].expand(4, 4, 3).numpy())
    half = plotting.render_overlay(gray, heat, alpha=0.5, cmap="gray")
    np.testing.assert_array_equal(half[0, 3], [192, 192, 192])  # (128/255 + 1) / 2 * 255, rounded


def test_render_overlay_draws_the_patch_grid():
    gray = torch.full((1, 4, 6), 200, dtype=torch.uint8)
    lined = plotting.render_overlay(gray, None, scale=2, grid=(2, 3))  # 8 x 12 display pixels, patches of 4 x 4
    dark = (lined == 100).all(axis=-1)
    expected = np.zeros((8, 12), dtype=bool)
    expected[4] = True
    expected[:, [4, 8]] = True
    np.testing.assert_array_equal(dark | (lined == 50).all(axis=-1), expected)
    assert (lined[~expected] == 200).all()


def test_colorbar_strip_runs_from_the_top_colour_to_the_bottom_colour():
    strip = plotting.colorbar_strip("gray", height=5, width=3)
    assert strip.shape == (5, 3, 3) and strip.dtype == np.uint8
    np.testing.assert_array_equal(strip[:, 0, 0], [255, 191, 128, 64, 0])
    assert (strip == strip[:, :1]).all()


def test_render_overlay_outlines_the_box():
    gray = torch.full((1, 4, 4), 128, dtype=torch.uint8)
    boxed = plotting.render_overlay(gray, None, scale=4, box=(2, 2, 2, 2))  # display pixels 8..15, 1 px line
    cyan = (boxed == [0, 255, 255]).all(axis=-1)
    frame = np.zeros((16, 16), dtype=bool)
    frame[8:16, 8:16] = True
    frame[9:15, 9:15] = False
    np.testing.assert_array_equal(cyan, frame)
    assert (boxed[~frame] == 128).all()
    png = Image.open(io.BytesIO(plotting.to_png(boxed)))
    assert png.size == (16, 16)
    np.testing.assert_array_equal(np.asarray(png), boxed)


def test_plot_attention_maps_shows_every_map(toy):
    model, dataset = tiny_vit(**MAPS_VIT), toy(n=2, size=8, classes=3)
    cache = forward_cache(model, *dataset[1])
    image = dataset.denormalize(cache.image[None])[0]
    fig = plotting.plot_attention_maps(cache, image, query=6, target=2, title="maps")
    axes = np.array(fig.axes).reshape(3, 6)  # 3 layers x (input column, 2 heads, mean, max, rollout)
    assert [ax.get_title() for ax in axes[0]] == ["input", "head 0", "head 1", "mean", "max", "rollout"]
    assert axes[1, 0].get_title() == "gradient\nrollout" and fig._suptitle.get_text() == "maps"
    assert [len(ax.images) for ax in axes[:, 0]] == [1, 2, 0]
    for layer, head, column in [(0, 0, 1), (2, "max", 4), (1, "rollout", 5)]:
        heat = shown_scaled(axes[layer, column].images[1])
        torch.testing.assert_close(heat, plotting.upsampled_heat(attention_map(cache, layer, head, 6), (8, 8)))
    heat = shown_scaled(axes[1, 0].images[1])
    torch.testing.assert_close(heat, plotting.upsampled_heat(cache.gradient_rollout(2), (8, 8)))
    plt.close(fig)


# --- training ----------------------------------------------------------------------------------------
def test_plot_history_draws_loss_accuracy_and_schedule():
    history = [
        {"epoch": 1, "train_loss": 2.0, "train_acc": 0.3, "val_acc": 0.4, "lr": 1e-3},
        {"epoch": 2, "train_loss": 1.0, "train_acc": 0.6, "val_acc": 0.5, "lr": 5e-4},
    ]
    fig = plotting.plot_history(history, "toy")
    loss, accuracy, schedule = fig.axes
    assert list(loss.lines[0].get_ydata()) == [2.0, 1.0] and list(schedule.lines[0].get_ydata()) == [1e-3, 5e-4]
    assert [line.get_label() for line in accuracy.lines] == ["train", "validation"]
    assert fig._suptitle.get_text() == "toy"
    plt.close(fig)
    fig = plotting.plot_history([{**r, "val_acc": None} for r in history])  # not validated: no validation line
    assert len(fig.axes[1].lines) == 1 and fig._suptitle is None
    plt.close(fig)


def test_the_package_lists_its_figures():
    for name in plotting.__all__:
        assert name == "METHOD_COLORS" or getattr(plotting, name).__module__.startswith("vitnb.plotting.")
    assert not hasattr(plotting, "plot_ablation")  # the experiments' figures live in vitnb.experiments.figures
