import math

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from vitnb import plotting, sincos_2d


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
    with pytest.raises(ValueError, match="divisible"):
        plotting.patch_mosaic(image, 4)


# --- position-embedding similarity ------------------------------------------------------------------
def test_pos_embed_similarity_equals_direct_cosine_similarity():
    grid = (3, 4)
    pos_embed = torch.randn(1, 2 + 12, 16)  # two prefix rows, which must be skipped
    sim = plotting.pos_embed_similarity(pos_embed, grid, num_prefix_tokens=2)
    assert sim.shape == (3, 4, 3, 4)
    patches = pos_embed[0, 2:]
    for i, j, r, c in [(0, 0, 0, 0), (0, 1, 2, 3), (2, 3, 1, 0), (1, 2, 1, 1)]:
        expected = F.cosine_similarity(patches[i * 4 + j], patches[r * 4 + c], dim=0)
        torch.testing.assert_close(sim[i, j, r, c], expected)
    torch.testing.assert_close(sim.reshape(12, 12).diagonal(), torch.ones(12))
    torch.testing.assert_close(sim, sim.permute(2, 3, 0, 1))  # symmetric
    with pytest.raises(ValueError, match="grid"):
        plotting.pos_embed_similarity(pos_embed, (4, 4), num_prefix_tokens=2)


def test_sincos_similarity_depends_only_on_the_offset():
    sim = plotting.pos_embed_similarity(sincos_2d(32, (5, 5), 1), (5, 5), 1)
    torch.testing.assert_close(sim[0, 0, 1, 2], sim[3, 2, 4, 4])  # same offset (+1, +2)
    torch.testing.assert_close(sim[1, 1, 3, 1], sim[2, 4, 4, 4])  # same offset (+2, 0)


def test_plot_pos_embed_similarity_shows_the_tiled_grid():
    pos_embed = torch.randn(1, 1 + 6, 8)
    fig = plotting.plot_pos_embed_similarity(pos_embed, (2, 3), num_prefix_tokens=1)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # the grid and its colour bar
    shown = torch.from_numpy(fig.axes[0].images[0].get_array().filled(math.nan))
    assert shown.shape == (2 * 2 + 1, 3 * 3 + 2)  # 2x3 tiles of 2x3, one blank line between tiles
    sim = plotting.pos_embed_similarity(pos_embed, (2, 3), 1)
    torch.testing.assert_close(shown[3:5, 4:7], sim[1, 1])  # tile (1, 1)
    assert shown[2].isnan().all() and shown[:, 3].isnan().all()  # the blank lines
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
    with pytest.raises(ValueError, match="attention weights"):
        plotting.plot_attention_heatmap(torch.rand(2, 3, 4))
