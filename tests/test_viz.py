import copy
import math

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from vitnb import viz

matplotlib.use("Agg")


def random_attention(batch: int, heads: int, n: int, seed: int) -> torch.Tensor:
    """Post-softmax-like weights (B, H, N, N), float64 so hand computations compare tightly."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, heads, n, n, generator=g, dtype=torch.float64).softmax(dim=-1)


def a_hat(fused: torch.Tensor) -> torch.Tensor:
    """(A + I) normalised by rows, written out independently of the module."""
    a = fused + torch.eye(fused.shape[-1], dtype=fused.dtype)
    return a / a.sum(dim=-1, keepdim=True)


# --- fuse_heads ----------------------------------------------------------------------------------------
def test_fuse_heads_mean_max_min():
    attn = torch.tensor([[[[0.2, 0.8], [0.5, 0.5]], [[0.6, 0.4], [0.1, 0.9]]]])  # (1, 2, 2, 2)
    torch.testing.assert_close(viz.fuse_heads(attn, "mean"), torch.tensor([[[0.4, 0.6], [0.3, 0.7]]]))
    torch.testing.assert_close(viz.fuse_heads(attn, "max"), torch.tensor([[[0.6, 0.8], [0.5, 0.9]]]))
    torch.testing.assert_close(viz.fuse_heads(attn, "min"), torch.tensor([[[0.2, 0.4], [0.1, 0.5]]]))
    with pytest.raises(ValueError):
        viz.fuse_heads(attn, "median")


# --- rollout -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_rollout_rows_sum_to_one(fusion, ratio):
    attentions = [random_attention(2, 3, 5, seed) for seed in range(4)]
    rollout = viz.rollout_matrix(attentions, 1, fusion, ratio)
    assert rollout.shape == (2, 5, 5)
    torch.testing.assert_close(rollout.sum(dim=-1), torch.ones(2, 5, dtype=torch.float64))


def test_single_layer_mean_is_half_attention_plus_identity():
    attn = random_attention(2, 3, 7, seed=0)  # 1 cls + 2x3 patches
    expected = (attn.mean(dim=1) + torch.eye(7, dtype=torch.float64)) / 2
    torch.testing.assert_close(viz.rollout_matrix([attn], 1), expected)
    rollout_map = viz.attention_rollout([attn], 1, (2, 3))
    assert rollout_map.shape == (2, 2, 3)
    torch.testing.assert_close(rollout_map, expected[:, 0, 1:].reshape(2, 2, 3))


@pytest.mark.parametrize("layers", [1, 2, 5])
def test_uniform_attention_closed_form(layers):
    n = 5  # 1 cls + 2x2 patches
    attentions = [torch.full((1, 2, n, n), 1 / n, dtype=torch.float64)] * layers
    rollout_map = viz.attention_rollout(attentions, 1, (2, 2))
    expected = torch.full((1, 2, 2), (1 - 2.0**-layers) / n, dtype=torch.float64)
    torch.testing.assert_close(rollout_map, expected)


@pytest.mark.parametrize("ratio", [0.0, 0.3])
def test_batched_equals_per_sample(ratio):
    attentions = [random_attention(3, 2, 5, seed) for seed in range(3)]
    batched = viz.attention_rollout(attentions, 1, (2, 2), "max", ratio)
    for b in range(3):
        single = viz.attention_rollout([a[b : b + 1] for a in attentions], 1, (2, 2), "max", ratio)
        torch.testing.assert_close(batched[b : b + 1], single)


def test_later_layer_multiplies_on_the_left():
    first, second = random_attention(1, 1, 4, seed=1), random_attention(1, 1, 4, seed=2)
    hat1, hat2 = a_hat(first[:, 0]), a_hat(second[:, 0])
    assert not torch.allclose(hat2 @ hat1, hat1 @ hat2)  # the two orders really differ
    torch.testing.assert_close(viz.rollout_matrix([first, second], 1), hat2 @ hat1)


def test_rollout_with_two_prefix_tokens_reads_row_zero_and_patch_columns():
    attentions = [random_attention(1, 2, 6, seed) for seed in range(2)]  # cls + dist + 2x2 patches
    expected = viz.rollout_matrix(attentions, 2)[:, 0, 2:].reshape(1, 2, 2)
    torch.testing.assert_close(viz.attention_rollout(attentions, 2, (2, 2)), expected)


def test_rollout_without_cls_token_raises_but_matrix_works():
    attentions = [random_attention(1, 2, 4, seed=0)]
    with pytest.raises(ValueError, match="cls"):
        viz.attention_rollout(attentions, 0, (2, 2))
    assert viz.rollout_matrix(attentions, 0).shape == (1, 4, 4)


def test_grid_that_does_not_match_tokens_raises():
    with pytest.raises(ValueError, match="grid"):
        viz.attention_rollout([random_attention(1, 1, 5, seed=0)], 1, (2, 3))


# --- discarding ----------------------------------------------------------------------------------------
def distinct_matrix(n: int, seed: int) -> torch.Tensor:
    """(1, N, N) with distinct entries in random positions."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randperm(n * n, generator=g).double() + 1).reshape(1, n, n)


@pytest.mark.parametrize(("n", "ratio"), [(5, 0.3), (6, 0.5), (10, 0.57)])
def test_discard_zeroes_exactly_the_k_smallest_outside_the_cls_row(n, ratio):
    fused = distinct_matrix(n, seed=n)
    out = viz.discard_smallest(fused, ratio, num_prefix_tokens=1)
    k = {(5, 0.3): 7, (6, 0.5): 18, (10, 0.57): 57}[(n, ratio)]  # floor(r * N^2), by hand
    assert int((out == 0).sum()) == k
    torch.testing.assert_close(out[:, 0], fused[:, 0])
    below = fused[:, 1:].flatten().sort().values
    threshold = below[k - 1]  # the k-th smallest outside row 0
    torch.testing.assert_close(out[:, 1:], torch.where(fused[:, 1:] <= threshold, 0.0, fused[:, 1:]))


def test_discard_keeps_the_cls_row_even_when_it_holds_the_smallest_entries():
    fused = distinct_matrix(4, seed=0)
    fused[:, 0] = torch.tensor([0.01, 0.02, 0.03, 0.04], dtype=torch.float64)
    out = viz.discard_smallest(fused, 0.25, num_prefix_tokens=1)
    torch.testing.assert_close(out[:, 0], fused[:, 0])
    assert int((out == 0).sum()) == 4
    assert viz.discard_smallest(fused, 1.0, num_prefix_tokens=1)[:, 1:].abs().sum() == 0  # capped at N^2 - N


def test_discard_without_prefix_tokens_may_zero_row_zero():
    fused = distinct_matrix(4, seed=0)
    fused[:, 0] = torch.tensor([0.01, 0.02, 0.03, 0.04], dtype=torch.float64)
    out = viz.discard_smallest(fused, 0.25, num_prefix_tokens=0)
    assert (out[:, 0] == 0).all() and int((out == 0).sum()) == 4


def test_rollout_discards_before_adding_identity():
    attn = random_attention(2, 2, 5, seed=3)
    discarded = viz.discard_smallest(attn.amin(dim=1), 0.4, num_prefix_tokens=1)
    torch.testing.assert_close(viz.rollout_matrix([attn], 1, "min", 0.4), a_hat(discarded))


# --- cls_attention -------------------------------------------------------------------------------------
def test_cls_attention_selects_layer_head_and_query():
    attentions = [random_attention(2, 3, 7, seed) for seed in range(2)]  # 1 cls + 2x3 patches
    out = viz.cls_attention(attentions, layer=1, head=2, num_prefix_tokens=1, grid_size=(2, 3))
    assert out.shape == (2, 2, 3)
    torch.testing.assert_close(out, attentions[1][:, 2, 0, 1:].reshape(2, 2, 3))
    out = viz.cls_attention(attentions, layer=-2, head="max", num_prefix_tokens=1, grid_size=(2, 3), query=4)
    torch.testing.assert_close(out, attentions[0].amax(dim=1)[:, 4, 1:].reshape(2, 2, 3))


# --- mean attention distance ---------------------------------------------------------------------------
def test_mean_distance_of_self_attention_is_zero():
    attentions = [torch.eye(5).expand(2, 3, 5, 5)] * 2
    dist = viz.mean_attention_distance(attentions, (2, 2), num_prefix_tokens=1, patch_size=16)
    assert dist.shape == (2, 3)
    torch.testing.assert_close(dist, torch.zeros(2, 3))


def test_mean_distance_uniform_on_2x2_grid_ignores_prefix():
    uniform = torch.full((1, 5, 5), 0.2)
    uniform[:, 1:, 0] = 0.6  # heavy attention to cls: dropped, the patch weights renormalised
    attn = torch.stack([torch.eye(5)[None], uniform], dim=1)  # head 0 local, head 1 uniform over patches
    dist = viz.mean_attention_distance([attn], (2, 2), num_prefix_tokens=1, patch_size=16)
    # from any corner of a 2x2 grid: distances 0, 1, 1, sqrt(2) patches
    torch.testing.assert_close(dist, torch.tensor([[0.0, 16 * (2 + math.sqrt(2)) / 4]]))


def test_mean_distance_uses_row_major_patch_order():
    attn = torch.zeros(1, 1, 6, 6)
    attn[..., 3] = 1.0  # every patch attends to patch 3: (row 1, col 0) on a 2x3 grid
    coords = torch.tensor([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]], dtype=torch.float)
    expected = (coords - coords[3]).norm(dim=-1).mean()
    torch.testing.assert_close(viz.mean_attention_distance([attn], (2, 3), 0), expected.reshape(1, 1))


# --- gradient rollout ----------------------------------------------------------------------------------
class TinyBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(dim=-1)  # (B, H, N, N)
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        return x + self.proj(out), attn


class TinyViT(nn.Module):
    """Two blocks on a 2x3 patch grid (4x6 images, patch 2), cls pooling, dropout before the head."""

    def __init__(self, dim: int = 8, heads: int = 2, classes: int = 3):
        super().__init__()
        self.num_prefix_tokens = 1
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=2, stride=2)
        self.patch_embed.grid_size = (2, 3)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = nn.ModuleList([TinyBlock(dim, heads), TinyBlock(dim, heads)])
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(dim, classes)

    def forward(self, x, return_attention=False):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, 6, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        attentions = []
        for block in self.blocks:
            x, attn = block(x)
            attentions.append(attn)
        logits = self.head(self.drop(x[:, 0]))
        return (logits, attentions) if return_attention else logits


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return TinyViT(), torch.randn(2, 3, 4, 6)


def manual_gradient_rollout(model, x, target):
    """Independent route: retain_grad + backward on a copy, then an explicit left-multiplying loop."""
    model = copy.deepcopy(model).eval()
    logits, attentions = model(x, return_attention=True)
    for attn in attentions:
        attn.retain_grad()
    logits[torch.arange(x.shape[0]), target].sum().backward()
    rollout = torch.eye(7).expand(x.shape[0], 7, 7)
    for attn in attentions:
        rollout = a_hat((attn * attn.grad).clamp(min=0).mean(dim=1)) @ rollout
    return rollout[:, 0, 1:].reshape(-1, 2, 3).detach()


def test_gradient_rollout_matches_manual_computation(tiny):
    model, x = tiny
    target = torch.tensor([2, 0])
    out = viz.gradient_rollout(model, x, target)
    assert out.shape == (2, 2, 3)
    assert (out >= 0).all() and out.sum() > 0
    torch.testing.assert_close(out, manual_gradient_rollout(model, x, target))


def test_gradient_rollout_default_target_is_the_prediction(tiny):
    model, x = tiny
    predicted = model.eval()(x).argmax(dim=-1)
    torch.testing.assert_close(viz.gradient_rollout(model, x), viz.gradient_rollout(model, x, predicted))
    torch.testing.assert_close(viz.gradient_rollout(model, x, 1), viz.gradient_rollout(model, x, torch.tensor([1, 1])))


def test_gradient_rollout_pairs_each_attention_with_its_own_gradient(tiny):
    model, x = tiny
    with torch.no_grad():  # block 2 contributes nothing, so the gradient of its attention is exactly 0
        model.blocks[1].proj.weight.zero_()
        model.blocks[1].proj.bias.zero_()
    model.eval()
    logits, attentions = model(x, return_attention=True)
    grad_first = torch.autograd.grad(logits[:, 1].sum(), attentions[0])[0]
    layer_one = a_hat((attentions[0] * grad_first).clamp(min=0).mean(dim=1).detach())  # layer 2 -> identity
    out = viz.gradient_rollout(model, x, 1)
    assert out.sum() > 0
    torch.testing.assert_close(out, layer_one[:, 0, 1:].reshape(2, 2, 3))


def test_gradient_rollout_leaves_model_and_input_clean(tiny):
    model, x = tiny
    model.train()
    model.drop.eval()  # a mixed state, which must come back exactly
    first = viz.gradient_rollout(model, x)
    assert viz.gradient_rollout(model, x).equal(first)  # eval inside: dropout off, deterministic
    assert model.training and model.blocks[0].training and not model.drop.training
    assert all(p.grad is None for p in model.parameters())
    assert x.grad is None and not x.requires_grad


def test_gradient_rollout_works_with_frozen_parameters(tiny):
    model, x = tiny
    expected = viz.gradient_rollout(model, x, 0)
    model.requires_grad_(False)
    with torch.no_grad():
        torch.testing.assert_close(viz.gradient_rollout(model, x, 0), expected)


# --- figures -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_overlay_draws_on_the_given_axes(channels):
    fig = Figure()
    ax = fig.add_subplot()
    assert viz.overlay(ax, torch.rand(channels, 32, 48), torch.rand(2, 3)) is fig
    assert len(fig.axes) == 1 and len(ax.images) == 2
    heat = ax.images[1].get_array()
    assert heat.shape == (32, 48) and heat.min() == 0 and heat.max() == 1


def test_plot_mean_attention_distance_returns_figure():
    fig = viz.plot_mean_attention_distance(torch.rand(4, 3) * 100)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert len(fig.axes[0].collections) == 3  # one scatter per head
    matplotlib.pyplot.close(fig)


def test_plot_attention_grid_has_a_row_per_image_and_a_column_per_map():
    images = torch.rand(2, 3, 16, 16)
    maps = {"rollout": torch.rand(2, 4, 4), "gradient": torch.rand(2, 4, 4)}
    fig = viz.plot_attention_grid(images, maps)
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[:3]] == ["image", "rollout", "gradient"]
    matplotlib.pyplot.close(fig)
