"""Attention maths: rollout against hand computations and an independent implementation, raw attention,
attention distance, the token layout (`TokenLayout`), and the explorer's per-image maps (`maps.forward_cache`,
`maps.attention_map`)."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from helpers import MAPS_VIT, direct, tiny_vit
from torch import nn

from vitnb import VisionTransformer, ViTConfig, maps
from vitnb import rollout as ro
from vitnb.errors import UsageError
from vitnb.rollout import TokenLayout

LAYOUT = TokenLayout(num_prefix_tokens=1, grid_size=(2, 2))  # 1 cls + 2x2 patches: N = 5


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
    torch.testing.assert_close(ro.fuse_heads(attn, "mean"), torch.tensor([[[0.4, 0.6], [0.3, 0.7]]]))
    torch.testing.assert_close(ro.fuse_heads(attn, "max"), torch.tensor([[[0.6, 0.8], [0.5, 0.9]]]))
    torch.testing.assert_close(ro.fuse_heads(attn, "min"), torch.tensor([[[0.2, 0.4], [0.1, 0.5]]]))
    with pytest.raises(UsageError):
        ro.fuse_heads(attn, "median")


# --- rollout -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_rollout_rows_sum_to_one(fusion, ratio):
    attentions = [random_attention(2, 3, 5, seed) for seed in range(4)]
    rollout = ro.rollout_matrix(attentions, LAYOUT, head_fusion=fusion, discard_ratio=ratio)
    assert rollout.shape == (2, 5, 5)
    torch.testing.assert_close(rollout.sum(dim=-1), torch.ones(2, 5, dtype=torch.float64))


def test_single_layer_mean_is_half_attention_plus_identity():
    attn = random_attention(2, 3, 7, seed=0)  # 1 cls + 2x3 patches
    layout = TokenLayout(1, (2, 3))
    expected = (attn.mean(dim=1) + torch.eye(7, dtype=torch.float64)) / 2
    torch.testing.assert_close(ro.rollout_matrix([attn], layout), expected)
    rollout_map = ro.attention_rollout([attn], layout)
    assert rollout_map.shape == (2, 2, 3)
    torch.testing.assert_close(rollout_map, expected[:, 0, 1:].reshape(2, 2, 3))


@pytest.mark.parametrize("layers", [1, 2, 5])
def test_uniform_attention_closed_form(layers):
    n = 5  # 1 cls + 2x2 patches
    attentions = [torch.full((1, 2, n, n), 1 / n, dtype=torch.float64)] * layers
    rollout_map = ro.attention_rollout(attentions, LAYOUT)
    expected = torch.full((1, 2, 2), (1 - 2.0**-layers) / n, dtype=torch.float64)
    torch.testing.assert_close(rollout_map, expected)


@pytest.mark.parametrize("ratio", [0.0, 0.3])
def test_batched_equals_per_sample(ratio):
    attentions = [random_attention(3, 2, 5, seed) for seed in range(3)]
    batched = ro.attention_rollout(attentions, LAYOUT, head_fusion="max", discard_ratio=ratio)
    for b in range(3):
        single = ro.attention_rollout(
            [a[b : b + 1] for a in attentions], LAYOUT, head_fusion="max", discard_ratio=ratio
        )
        torch.testing.assert_close(batched[b : b + 1], single)


def test_later_layer_multiplies_on_the_left():
    first, second = random_attention(1, 1, 4, seed=1), random_attention(1, 1, 4, seed=2)
    hat1, hat2 = a_hat(first[:, 0]), a_hat(second[:, 0])
    assert not torch.allclose(hat2 @ hat1, hat1 @ hat2)  # the two orders really differ
    torch.testing.assert_close(ro.rollout_matrix([first, second], TokenLayout(1, (1, 3))), hat2 @ hat1)


def test_rollout_with_two_prefix_tokens_reads_row_zero_and_patch_columns():
    attentions = [random_attention(1, 2, 6, seed) for seed in range(2)]  # cls + dist + 2x2 patches
    layout = TokenLayout(2, (2, 2))
    expected = ro.rollout_matrix(attentions, layout)[:, 0, 2:].reshape(1, 2, 2)
    torch.testing.assert_close(ro.attention_rollout(attentions, layout), expected)


def loop_rollout(attentions: list[torch.Tensor]) -> torch.Tensor:
    """Rollout (B, N, N) written with explicit loops over samples, layers and entries: no module code."""
    b, _, n, _ = attentions[0].shape
    out = torch.zeros(b, n, n, dtype=attentions[0].dtype)
    for s in range(b):
        r = [[float(i == j) for j in range(n)] for i in range(n)]
        for attn in attentions:
            fused = attn[s].mean(dim=0)  # (N, N)
            a = [[(fused[i, j].item() + (i == j)) / (fused[i].sum().item() + 1) for j in range(n)] for i in range(n)]
            r = [[sum(a[i][m] * r[m][j] for m in range(n)) for j in range(n)] for i in range(n)]
        out[s] = torch.tensor(r, dtype=out.dtype)
    return out


def test_rollout_without_cls_token_reads_the_mean_of_the_patch_rows():
    """An average-pooled model's head reads (1/n) sum_i token_i, so what reaches it from input patch j is
    the mean over the rows i of column j; the map of a 2x2 grid is then a distribution over the 4 patches."""
    attentions = [random_attention(2, 2, 4, seed) for seed in range(3)]
    expected = loop_rollout(attentions).mean(dim=1).reshape(2, 2, 2)
    for pool in (None, "avg"):
        got = ro.attention_rollout(attentions, TokenLayout(0, (2, 2), pool))
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(expected.sum(dim=(1, 2)), torch.ones(2, dtype=torch.float64))
    with pytest.raises(UsageError, match="no prefix token"):
        TokenLayout(0, (2, 2), "token")
    matrix = ro.rollout_matrix(attentions[:1], TokenLayout(0, (2, 2)))
    torch.testing.assert_close(matrix, a_hat(attentions[0].mean(dim=1)))


def test_cls_token_with_average_pooling_reads_the_patch_rows_not_the_cls_row():
    attentions = [random_attention(2, 2, 5, seed) for seed in range(2)]  # cls + 2x2 patches
    full = loop_rollout(attentions)
    by_pool = {pool: ro.attention_rollout(attentions, TokenLayout(1, (2, 2), pool)) for pool in ("token", "avg", None)}
    torch.testing.assert_close(by_pool["avg"], full[:, 1:, 1:].mean(dim=1).reshape(2, 2, 2))
    torch.testing.assert_close(by_pool["token"], full[:, 0, 1:].reshape(2, 2, 2))
    torch.testing.assert_close(by_pool[None], by_pool["token"])  # a cls token and no word on pooling: its row
    assert not torch.allclose(by_pool["avg"], by_pool["token"])
    with pytest.raises(UsageError, match="global_pool must be"):
        TokenLayout(1, (2, 2), "max")


def test_token_layout_pools_by_the_model_and_by_its_prefix():
    assert TokenLayout.of(tiny_vit(**MAPS_VIT)).global_pool == "token"
    assert TokenLayout.of(tiny_vit(**MAPS_VIT, class_token=False, global_pool="avg")).global_pool == "avg"
    assert TokenLayout.of(tiny_vit(**MAPS_VIT, global_pool="avg")).global_pool == "avg"  # a cls token not read
    assert TokenLayout(1, (2, 2)).global_pool == "token"  # no word on pooling: a prefix token means cls pooling
    assert TokenLayout(0, (2, 2)).global_pool == "avg"
    layout = TokenLayout(2, [3, 4])
    assert (layout.grid_size, layout.num_patches, layout.num_tokens) == ((3, 4), 12, 14)
    with pytest.raises(AttributeError):
        layout.num_prefix_tokens = 1  # frozen: one layout, passed around as it is


def test_grid_that_does_not_match_tokens_raises():
    with pytest.raises(UsageError, match=r"4 patch tokens .* do not fill a 2x3 grid; .*TokenLayout.of\(model\)"):
        TokenLayout(1, (2, 3)).readout(random_attention(1, 1, 5, seed=0)[:, 0])
    with pytest.raises(UsageError, match=r"N=5 tokens are not num_prefix_tokens=1 \+ a 2x3 grid"):
        ro.attention_rollout([random_attention(1, 1, 5, seed=0)], TokenLayout(1, (2, 3)))
    with pytest.raises(UsageError, match=r"N=5 tokens are not num_prefix_tokens=0 \+ a 2x2 grid"):
        ro.mean_attention_distance([random_attention(1, 1, 5, seed=0)], TokenLayout(0, (2, 2)))


# --- discarding ----------------------------------------------------------------------------------------
def distinct_matrix(n: int, seed: int) -> torch.Tensor:
    """(1, N, N) with distinct entries in random positions."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randperm(n * n, generator=g).double() + 1).reshape(1, n, n)


@pytest.mark.parametrize(("n", "ratio"), [(5, 0.3), (6, 0.5), (10, 0.57)])
def test_discard_zeroes_exactly_the_k_smallest_outside_the_cls_row(n, ratio):
    fused = distinct_matrix(n, seed=n)
    out = ro.discard_smallest(fused, ratio, keep_cls_row=True)
    k = {(5, 0.3): 7, (6, 0.5): 18, (10, 0.57): 57}[(n, ratio)]  # floor(r * N^2), by hand
    assert int((out == 0).sum()) == k
    torch.testing.assert_close(out[:, 0], fused[:, 0])
    below = fused[:, 1:].flatten().sort().values
    threshold = below[k - 1]  # the k-th smallest outside row 0
    torch.testing.assert_close(out[:, 1:], torch.where(fused[:, 1:] <= threshold, 0.0, fused[:, 1:]))


def test_discard_keeps_the_cls_row_even_when_it_holds_the_smallest_entries():
    fused = distinct_matrix(4, seed=0)
    fused[:, 0] = torch.tensor([0.01, 0.02, 0.03, 0.04], dtype=torch.float64)
    out = ro.discard_smallest(fused, 0.25, keep_cls_row=True)
    torch.testing.assert_close(out[:, 0], fused[:, 0])
    assert int((out == 0).sum()) == 4
    assert ro.discard_smallest(fused, 1.0, keep_cls_row=True)[:, 1:].abs().sum() == 0  # capped at N^2 - N


def test_discard_without_prefix_tokens_may_zero_row_zero():
    fused = distinct_matrix(4, seed=0)
    fused[:, 0] = torch.tensor([0.01, 0.02, 0.03, 0.04], dtype=torch.float64)
    out = ro.discard_smallest(fused, 0.25, keep_cls_row=False)
    assert (out[:, 0] == 0).all() and int((out == 0).sum()) == 4


def test_rollout_discards_before_adding_identity():
    attn = random_attention(2, 2, 5, seed=3)
    discarded = ro.discard_smallest(attn.amin(dim=1), 0.4, keep_cls_row=True)
    rollout = ro.rollout_matrix([attn], LAYOUT, head_fusion="min", discard_ratio=0.4)
    torch.testing.assert_close(rollout, a_hat(discarded))


# --- raw attention -------------------------------------------------------------------------------------
def test_raw_attention_selects_layer_head_and_query():
    attentions = [random_attention(2, 3, 7, seed) for seed in range(2)]  # 1 cls + 2x3 patches
    layout = TokenLayout(1, (2, 3))
    out = ro.raw_attention(attentions, layer=1, head=2, layout=layout, query=0)
    assert out.shape == (2, 2, 3)
    torch.testing.assert_close(out, attentions[1][:, 2, 0, 1:].reshape(2, 2, 3))
    torch.testing.assert_close(ro.raw_attention(attentions, 1, 2, layout), out)  # POOLED: the cls row here
    out = ro.raw_attention(attentions, -2, "max", layout, query=4)
    torch.testing.assert_close(out, attentions[0].amax(dim=1)[:, 4, 1:].reshape(2, 2, 3))
    averaged = ro.raw_attention(attentions, 0, "mean", TokenLayout(1, (2, 3), "avg"))  # the mean of the patch rows
    torch.testing.assert_close(averaged, attentions[0].mean(dim=1)[:, 1:, 1:].mean(dim=1).reshape(2, 2, 3))


# --- mean attention distance ---------------------------------------------------------------------------
def test_mean_distance_of_self_attention_is_zero():
    attentions = [torch.eye(5).expand(2, 3, 5, 5)] * 2
    dist = ro.mean_attention_distance(attentions, LAYOUT, patch_size=16)
    assert dist.shape == (2, 3)
    torch.testing.assert_close(dist, torch.zeros(2, 3))


def test_mean_distance_uniform_on_2x2_grid_ignores_prefix():
    uniform = torch.full((1, 5, 5), 0.2)
    uniform[:, 1:, 0] = 0.6  # heavy attention to cls: dropped, the patch weights renormalised
    attn = torch.stack([torch.eye(5)[None], uniform], dim=1)  # head 0 local, head 1 uniform over patches
    dist = ro.mean_attention_distance([attn], LAYOUT, patch_size=16)
    # from any corner of a 2x2 grid: distances 0, 1, 1, sqrt(2) patches
    torch.testing.assert_close(dist, torch.tensor([[0.0, 16 * (2 + math.sqrt(2)) / 4]]))


def test_mean_distance_uses_row_major_patch_order():
    attn = torch.zeros(1, 1, 6, 6)
    attn[..., 3] = 1.0  # every patch attends to patch 3: (row 1, col 0) on a 2x3 grid
    coords = torch.tensor([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]], dtype=torch.float)
    expected = (coords - coords[3]).norm(dim=-1).mean()
    dist = ro.mean_attention_distance([attn], TokenLayout(0, (2, 3)))
    torch.testing.assert_close(dist, expected.reshape(1, 1))


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
    """Two blocks on a 2x3 patch grid (4x6 images, patch 2), dropout before the head; pool='token': a cls token
    that the head reads, pool='avg': no cls token, the head reads the mean token. It offers what the maps read
    off a ViT (`TokenLayout.of`): num_prefix_tokens, patch_embed.grid_size and cfg.global_pool."""

    def __init__(self, dim: int = 8, heads: int = 2, classes: int = 3, pool: str = "token"):
        super().__init__()
        self.pool = pool
        self.cfg = SimpleNamespace(global_pool=pool)
        self.num_prefix_tokens = 1 if pool == "token" else 0
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=2, stride=2)
        self.patch_embed.grid_size = (2, 3)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = nn.ModuleList([TinyBlock(dim, heads), TinyBlock(dim, heads)])
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(dim, classes)

    def forward(self, x, return_attention=False):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, 6, D)
        if self.pool == "token":
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        attentions = []
        for block in self.blocks:
            x, attn = block(x)
            attentions.append(attn)
        logits = self.head(self.drop(x[:, 0] if self.pool == "token" else x.mean(dim=1)))
        return (logits, attentions) if return_attention else logits


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return TinyViT(), torch.randn(2, 3, 4, 6)


def layer_relevance(attn: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Gradient rollout's weights for one layer, written out independently: relu(A * dA) heads averaged,
    divided per image by the mean over tokens of the row sums of |A * dA| (heads averaged)."""
    product = (attn * grad).detach()  # (B, H, N, N)
    b, h, n, _ = product.shape
    total = torch.stack([product[i].abs().sum() / (h * n) for i in range(b)])  # (B,)
    return product.clamp(min=0).mean(dim=1) / total.reshape(b, 1, 1)


def manual_gradient_rollout(model, x, target):
    """Independent route: retain_grad + backward on a copy, then an explicit left-multiplying loop."""
    model = copy.deepcopy(model).eval()
    logits, attentions = model(x, return_attention=True)
    for attn in attentions:
        attn.retain_grad()
    logits[torch.arange(x.shape[0]), target].sum().backward()
    n = attentions[0].shape[-1]
    rollout = torch.eye(n).expand(x.shape[0], n, n)
    for attn in attentions:
        rollout = a_hat(layer_relevance(attn, attn.grad)) @ rollout
    pooled = rollout[:, 0, 1:] if model.pool == "token" else rollout.mean(dim=1)  # (B, 6): what the head reads
    return pooled.reshape(-1, 2, 3).detach()


def test_gradient_rollout_matches_manual_computation(tiny):
    model, x = tiny
    target = torch.tensor([2, 0])
    out = ro.gradient_rollout(model, x, target)
    assert out.shape == (2, 2, 3)
    torch.testing.assert_close(out, manual_gradient_rollout(model, x, target))


def test_gradient_rollout_of_an_average_pooled_model_reads_the_mean_row():
    torch.manual_seed(0)
    model, x, target = TinyViT(pool="avg"), torch.randn(2, 3, 4, 6), torch.tensor([1, 2])
    out = ro.gradient_rollout(model, x, target)
    expected = manual_gradient_rollout(model, x, target)
    assert out.shape == (2, 2, 3) and expected.abs().sum() > 0
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.sum(dim=(1, 2)), torch.ones(2))  # no prefix: a distribution over the patches


def test_gradient_rollout_default_target_is_the_prediction(tiny):
    model, x = tiny
    predicted = model.eval()(x).argmax(dim=-1)
    torch.testing.assert_close(ro.gradient_rollout(model, x), ro.gradient_rollout(model, x, predicted))
    torch.testing.assert_close(ro.gradient_rollout(model, x, 1), ro.gradient_rollout(model, x, torch.tensor([1, 1])))


def test_gradient_rollout_pairs_each_attention_with_its_own_gradient(tiny):
    model, x = tiny
    with torch.no_grad():  # block 2 contributes nothing, so the gradient of its attention is exactly 0
        model.blocks[1].proj.weight.zero_()
        model.blocks[1].proj.bias.zero_()
    model.eval()
    logits, attentions = model(x, return_attention=True)
    grad_first = torch.autograd.grad(logits[:, 1].sum(), attentions[0])[0]
    layer_one = a_hat(layer_relevance(attentions[0], grad_first))  # layer 2 -> identity
    out = ro.gradient_rollout(model, x, 1)
    assert out.abs().sum() > 0  # a precondition: the comparison below is not between two all-zero maps
    torch.testing.assert_close(out, layer_one[:, 0, 1:].reshape(2, 2, 3))


def test_gradient_rollout_does_not_depend_on_the_logits_scale(tiny):
    """Scaling the head (so every logit) by a positive constant leaves the map as it is: each layer's weights are
    measured in units of that layer's total relevance, not of the logit."""
    model, x = tiny
    before = ro.gradient_rollout(model, x, 1)
    with torch.no_grad():
        model.head.weight.mul_(1000.0)
        model.head.bias.mul_(1000.0)
    torch.testing.assert_close(ro.gradient_rollout(model, x, 1), before)


def test_relevance_rows_sum_to_one_on_average_when_all_positive():
    """Attention whose gradient is positive everywhere: the weights are the attention, rescaled so the mean row
    sums to 1 (as the attention's own rows do); the residual then keeps the share it has in plain rollout."""
    attn = random_attention(2, 3, 5, seed=4)
    grad = torch.full_like(attn, 1e-4)  # a small gradient: its size must not matter
    torch.testing.assert_close(ro.relevance(attn, grad), attn.mean(dim=1))
    negative = ro.relevance(attn, -grad)  # evidence against the class: nothing is kept
    assert negative.eq(0).all()
    assert ro.relevance(attn, torch.zeros_like(attn)).eq(0).all()  # no relevance: 0, not nan


def test_gradient_rollout_leaves_model_and_input_clean(tiny):
    model, x = tiny
    model.train()
    model.drop.eval()  # a mixed state, which must come back exactly
    first = ro.gradient_rollout(model, x)
    assert ro.gradient_rollout(model, x).equal(first)  # eval inside: dropout off, deterministic
    assert model.training and model.blocks[0].training and not model.drop.training
    assert all(p.grad is None for p in model.parameters())
    assert x.grad is None and not x.requires_grad


def test_gradient_rollout_works_with_frozen_parameters(tiny):
    model, x = tiny
    expected = ro.gradient_rollout(model, x, 0)
    model.requires_grad_(False)
    with torch.no_grad():
        torch.testing.assert_close(ro.gradient_rollout(model, x, 0), expected)


def test_gradient_rollout_discards_per_layer_before_the_identity(tiny):
    model, x = tiny
    model.eval()
    logits, attentions = model(x, return_attention=True)
    grads = torch.autograd.grad(logits[:, 0].sum(), attentions)
    rollout = torch.eye(7).expand(2, 7, 7)
    for attn, grad in zip(attentions, grads, strict=True):
        rollout = a_hat(ro.discard_smallest(layer_relevance(attn, grad), 0.5, keep_cls_row=True)) @ rollout
    out = ro.gradient_rollout(model, x, 0, discard_ratio=0.5)
    torch.testing.assert_close(out, rollout[:, 0, 1:].reshape(2, 2, 3))


# --- a real ViT: its layout -----------------------------------------------------------------------------
def test_token_layout_reads_the_model():
    assert TokenLayout.of(tiny_vit(**MAPS_VIT)) == TokenLayout(1, (4, 4), "token")
    assert TokenLayout.of(tiny_vit(**MAPS_VIT, class_token=False, global_pool="avg")) == TokenLayout(0, (4, 4), "avg")
    vit = VisionTransformer(ViTConfig(img_size=12, patch_size=3, in_chans=1, embed_dim=8, depth=1, num_heads=1))
    x = torch.randn(2, 1, 12, 12)
    _, attentions = vit(x, return_attention=True)
    layout = TokenLayout.of(vit)
    expected = ro.rollout_matrix(attentions, layout)[:, 0, 1:].reshape(2, 4, 4)
    torch.testing.assert_close(ro.attention_rollout(attentions, layout), expected)


def test_describe_token_and_token_patch():
    grid = TokenLayout(1, (7, 7))
    assert [grid.describe_token(q) for q in (0, 1, 9, 49)] == [
        "cls",
        "patch (0, 0)",
        "patch (1, 1)",
        "patch (6, 6)",
    ]
    assert [grid.token_patch(q) for q in (0, 1, 9, 49)] == [None, (0, 0), (1, 1), (6, 6)]
    assert TokenLayout(0, (4, 4)).describe_token(0) == "patch (0, 0)"
    assert TokenLayout(2, (4, 4)).describe_token(1) == "prefix 1"
    assert TokenLayout(2, (3, 4)).describe_token(6) == "patch (1, 0)"
    assert grid.describe_token(ro.POOLED) == "cls"
    assert TokenLayout(1, (7, 7), "avg").describe_token(ro.POOLED) == "mean of patches"
    assert TokenLayout(0, (4, 4)).describe_token(ro.POOLED) == "mean of patches"
    assert grid.token_patch(ro.POOLED) is None


# --- the explorer's per-image maps (vitnb.maps) ----------------------------------------------------------
@pytest.fixture
def model():
    return tiny_vit(**MAPS_VIT)


@pytest.fixture
def dataset(toy):
    return toy(n=5, size=8, classes=3)


def test_raw_maps_equal_the_query_row(model, dataset):
    cache = maps.forward_cache(model, *dataset[3])
    _, _, attentions = direct(model, dataset, 3)
    for head in (0, 1, "mean", "max"):
        for layer in (0, 2, -1):
            for query in (0, 5):
                rows = attentions[layer][0, :, query, 1:]  # (heads, 16)
                expected = rows.mean(0) if head == "mean" else rows.amax(0) if head == "max" else rows[head]
                got = maps.attention_map(cache, layer, head, query)
                torch.testing.assert_close(got, expected.reshape(4, 4))


def test_rollout_at_last_layer_equals_attention_rollout(model, dataset):
    cache = maps.forward_cache(model, *dataset[2])
    _, _, attentions = direct(model, dataset, 2)
    expected = ro.attention_rollout(attentions, TokenLayout(1, (4, 4)))[0]
    torch.testing.assert_close(maps.attention_map(cache, -1, "rollout"), expected)
    torch.testing.assert_close(maps.attention_map(cache, 2, "rollout"), expected)


def test_rollout_uses_layers_up_to_the_chosen_one(model, dataset):
    cache = maps.forward_cache(model, *dataset[1])
    _, _, attentions = direct(model, dataset, 1)
    for layer in (0, 1):
        for query in (0, 9):
            expected = ro.rollout_matrix(attentions[: layer + 1], cache.layout)[0, query, 1:].reshape(4, 4)
            torch.testing.assert_close(maps.attention_map(cache, layer, "rollout", query), expected)


def test_gradient_rollout_map_ignores_layer_and_query(model, dataset):
    cache = maps.forward_cache(model, *dataset[4])
    x, logits, _ = direct(model, dataset, 4)
    predicted = ro.gradient_rollout(model, x)[0]
    torch.testing.assert_close(maps.attention_map(cache, -1, "gradient rollout"), predicted)
    torch.testing.assert_close(maps.attention_map(cache, 0, "gradient rollout", query=7), predicted)
    other = (int(logits.argmax()) + 1) % 3
    torch.testing.assert_close(
        maps.attention_map(cache, 0, "gradient rollout", target=other), ro.gradient_rollout(model, x, other)[0]
    )


def test_cache_holds_logits_prediction_and_label(model, dataset):
    cache = maps.forward_cache(model, *dataset[3])
    _, logits, attentions = direct(model, dataset, 3)
    torch.testing.assert_close(cache.logits, logits)
    assert cache.prediction == int(logits.argmax())
    assert cache.label == 0  # 3 % 3
    assert (cache.num_layers, cache.num_heads, cache.num_tokens) == (3, 2, 17)
    assert cache.layout == TokenLayout(1, (4, 4), "token")
    assert len(cache.attentions) == len(attentions)


def test_forward_cache_restores_train_mode(dataset):
    model = tiny_vit(**MAPS_VIT).train()
    model.head.eval()  # a mixed state, which must come back exactly
    maps.forward_cache(model, *dataset[0])
    assert [m.training for m in model.modules()] == [m is not model.head for m in model.modules()]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (dict(head="min"), r"head must be one of \[0, 1, 'mean', 'max', 'rollout', 'gradient rollout'\], got 'min'"),
        (dict(head=2), "head must be one of .* got 2"),
        (dict(head=True), "head must be one of .* got True"),
        (dict(layer=3), r"layer must be in \[-3, 3\), got 3"),
        (dict(query=17), r"query must be 'pooled' or a token index in \[0, 17\), got 17"),
        (dict(query="cls"), r"query must be 'pooled' or a token index .* got 'cls'"),
        (dict(head="gradient rollout", target=3), r"target class must be in \[0, 3\) or None"),
    ],
)
def test_bad_arguments_are_rejected(model, dataset, bad, message):
    cache = maps.forward_cache(model, *dataset[0])
    with pytest.raises(UsageError, match=message):
        maps.attention_map(cache, **(dict(layer=0, head="mean", query=0) | bad))


@pytest.mark.parametrize("class_token", [False, True])
def test_average_pooled_maps_read_the_mean_of_the_patch_rows(dataset, class_token):
    """POOLED (the default query) reads what the head reads: for global_pool='avg' the mean of the patch rows,
    also when there is a cls token beside them; token indices still read single rows."""
    model = tiny_vit(**MAPS_VIT, class_token=class_token, global_pool="avg")
    p = int(class_token)
    assert maps.head_options(2) == [0, 1, "mean", "max", "rollout", "gradient rollout"]
    cache = maps.forward_cache(model, *dataset[0])
    x, _, attentions = direct(model, dataset, 0)
    assert (cache.num_tokens, cache.layout.global_pool) == (16 + p, "avg")
    for layer in (0, 2):
        rows = attentions[layer][0, :, p:, p:]  # (heads, 16, 16): patch rows, patch columns
        torch.testing.assert_close(maps.attention_map(cache, layer, 1), rows[1].mean(dim=0).reshape(4, 4))
        torch.testing.assert_close(maps.attention_map(cache, layer, "max"), rows.amax(dim=0).mean(dim=0).reshape(4, 4))
        rollout = loop_rollout([a.double() for a in attentions[: layer + 1]])[0]  # (N, N)
        torch.testing.assert_close(
            maps.attention_map(cache, layer, "rollout"), rollout[p:, p:].mean(dim=0).reshape(4, 4).float()
        )
        torch.testing.assert_close(
            maps.attention_map(cache, layer, "rollout", query=p + 5), rollout[p + 5, p:].reshape(4, 4).float()
        )
    torch.testing.assert_close(maps.attention_map(cache, 0, "gradient rollout"), ro.gradient_rollout(model, x)[0])
    with torch.no_grad():
        _, batch = model(x, return_attention=True)
    torch.testing.assert_close(
        ro.attention_rollout(batch, TokenLayout.of(model))[0],
        maps.attention_map(cache, -1, "rollout"),
    )


@pytest.mark.parametrize(("class_token", "pool"), [(True, "token"), (False, "avg"), (True, "avg")])
def test_every_map_is_attention_map_bit_for_bit(dataset, class_token, pool):
    """The explorer page's numbers (`maps.every_map`) are `attention_map`'s, for every setting."""
    model = tiny_vit(**MAPS_VIT, class_token=class_token, global_pool=pool)
    cache = maps.forward_cache(model, *dataset[1])
    stacked = maps.every_map(cache)
    n, queries = cache.num_tokens, maps.query_options(cache.num_tokens)
    assert queries[0] == ro.POOLED and queries[1:] == list(range(n))
    assert stacked["raw"].shape == (3, 2 + 2, 1 + n, 4, 4)
    assert stacked["rollout"].shape == (3, 1 + n, 4, 4)
    assert stacked["gradient rollout"].shape == (3, 4, 4)
    for layer in range(3):
        for q, query in enumerate(queries):
            for h, head in enumerate([0, 1, "mean", "max"]):
                assert torch.equal(stacked["raw"][layer, h, q], maps.attention_map(cache, layer, head, query))
            assert torch.equal(stacked["rollout"][layer, q], maps.attention_map(cache, layer, "rollout", query))
    for target in range(3):
        got = maps.attention_map(cache, 0, "gradient rollout", target=target)
        assert torch.equal(stacked["gradient rollout"][target], got)
