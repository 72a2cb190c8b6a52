"""Unit tests of the model's parts: patches, position embeddings, attention, encoder block."""

import pytest
import torch
import torch.nn.functional as F

import vitnb
from vitnb import PatchEmbed, patchify, resample_pos_embed, sincos_2d, unpatchify
from vitnb.attention import Attention
from vitnb.encoder import Block, DropPath
from vitnb.patches import shift_image


def test_patchify_unpatchify_are_exact_inverses():
    x = torch.randn(2, 3, 12, 8)
    p = patchify(x, 4)
    assert p.shape == (2, 6, 48)
    assert torch.equal(unpatchify(p, 4, (3, 2), 3), x)
    # first patch is the top-left 4x4 block, flattened row by row with channels last
    assert torch.equal(p[0, 0], x[0, :, :4, :4].permute(1, 2, 0).reshape(-1))
    # second patch is the block to its right (row-major over the grid)
    assert torch.equal(p[0, 1], x[0, :, :4, 4:8].permute(1, 2, 0).reshape(-1))


def test_patchify_rejects_indivisible_size():
    with pytest.raises(ValueError, match="image size 10x10 is not divisible by patch_size=4"):
        patchify(torch.zeros(1, 1, 10, 10), 4)


def test_patch_embed_conv_equals_flatten_then_linear():
    embed = PatchEmbed(img_size=16, patch_size=4, in_chans=3, embed_dim=8)
    x = torch.randn(2, 3, 16, 16)
    # the conv kernel (D, C, P, P) reshaped to the (p1, p2, c) order of patchify is a Linear weight
    weight = embed.proj.weight.permute(0, 2, 3, 1).reshape(8, -1)
    expected = F.linear(patchify(x, 4), weight, embed.proj.bias)
    torch.testing.assert_close(embed(x), expected, atol=1e-5, rtol=1e-5)


def test_patch_embed_error_names_expected_and_received_shape():
    embed = PatchEmbed(img_size=28, patch_size=4, in_chans=1, embed_dim=8)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\), got \(2, 3, 28, 28\)"):
        embed(torch.zeros(2, 3, 28, 28))


def test_sincos_has_prefix_zeros_and_unit_norm_pairs():
    pe = sincos_2d(16, (3, 5), num_prefix_tokens=1)
    assert pe.shape == (1, 16, 16)
    assert torch.equal(pe[0, 0], torch.zeros(16))
    # token (row 1, col 2): sin/cos of row*omega, then col*omega; omega_0 = 1
    token = pe[0, 1 + 1 * 5 + 2]
    assert token[0] == pytest.approx(torch.sin(torch.tensor(1.0)).item(), abs=1e-6)
    assert token[4] == pytest.approx(torch.cos(torch.tensor(1.0)).item(), abs=1e-6)
    assert token[8] == pytest.approx(torch.sin(torch.tensor(2.0)).item(), abs=1e-6)
    # every (sin, cos) pair has unit norm
    pairs = torch.stack([pe[0, 1:, :4], pe[0, 1:, 4:8]], -1)
    torch.testing.assert_close(pairs.norm(dim=-1), torch.ones(15, 4))


def test_resample_pos_embed_keeps_prefix_and_matches_timm():
    timm_pos = pytest.importorskip("timm.layers").resample_abs_pos_embed
    pe = torch.randn(1, 1 + 7 * 7, 12)
    out = resample_pos_embed(pe, (14, 14), num_prefix_tokens=1)
    assert out.shape == (1, 1 + 14 * 14, 12)
    assert torch.equal(out[:, :1], pe[:, :1])
    torch.testing.assert_close(out, timm_pos(pe, (14, 14), num_prefix_tokens=1), atol=1e-5, rtol=1e-5)
    assert torch.equal(resample_pos_embed(pe, 7, 1), pe)  # same grid: unchanged
    const = torch.full((1, 16, 4), 3.0)
    torch.testing.assert_close(resample_pos_embed(const, 6, 0), torch.full((1, 36, 4), 3.0))


@pytest.mark.parametrize("lsa", [False, True])
def test_attention_fast_and_explicit_paths_agree(lsa):
    attn = Attention(dim=24, num_heads=3, lsa=lsa).eval()
    x = torch.randn(2, 10, 24)
    fast = attn(x)
    slow, weights = attn(x, return_attention=True)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    assert weights.shape == (2, 3, 10, 10)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 10))


def test_cpu_bf16_autocast_takes_the_explicit_path():
    """Under CPU bf16 autocast SDPA is slower, so the plain call must run the explicit path (bit-identical)."""
    attn = Attention(dim=24, num_heads=3).eval()
    x = torch.randn(2, 10, 24)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        plain = attn(x)
        explicit, _ = attn(x, return_attention=True)
        sdpa = attn.proj(
            F.scaled_dot_product_attention(*attn.qkv(x).unflatten(-1, (3, 3, 8)).permute(2, 0, 3, 1, 4))
            .transpose(1, 2)
            .flatten(2)
        )
    assert plain.dtype == torch.bfloat16 and torch.equal(plain, explicit)
    assert not torch.equal(plain, sdpa)  # the two kernels round differently in bf16: the check can tell them apart
    torch.testing.assert_close(plain.float(), sdpa.float(), atol=0.05, rtol=0.05)


def test_attention_by_hand():
    attn = Attention(dim=8, num_heads=2)
    x = torch.randn(1, 5, 8)
    q, k, v = attn.qkv(x).split(8, dim=-1)
    heads = []
    for h in range(2):
        s = slice(4 * h, 4 * h + 4)
        w = torch.softmax(q[..., s] @ k[..., s].transpose(-1, -2) / 2.0, dim=-1)  # sqrt(head_dim) = 2
        heads.append(w @ v[..., s])
    expected = attn.proj(torch.cat(heads, dim=-1))
    torch.testing.assert_close(attn(x), expected, atol=1e-6, rtol=1e-5)


def test_lsa_excludes_self_attention():
    attn = Attention(dim=8, num_heads=2, lsa=True)
    _, weights = attn(torch.randn(2, 6, 8), return_attention=True)
    assert torch.all(weights.diagonal(dim1=-2, dim2=-1) == 0)
    assert "log_scale" in dict(attn.named_parameters())


def test_embed_dim_not_divisible_by_heads_raises():
    with pytest.raises(ValueError, match="dim=10 is not divisible by num_heads=3"):
        Attention(dim=10, num_heads=3)


def test_pre_norm_block_is_x_plus_f_of_ln_x():
    block = Block(dim=16, num_heads=2).eval()
    x = torch.randn(2, 5, 16)
    h = x + block.attn(block.norm1(x))
    expected = h + block.mlp.fc2(F.gelu(block.mlp.fc1(block.norm2(h))))
    torch.testing.assert_close(block(x), expected, atol=1e-6, rtol=1e-5)
    assert block.norm1.eps == 1e-6 and block.mlp.act.approximate == "none"


def test_post_norm_block_normalises_after_the_residual():
    block = Block(dim=16, num_heads=2, norm="post").eval()
    x = torch.randn(2, 5, 16)
    out = block(x)
    h = block.norm1(x + block.attn(x))
    torch.testing.assert_close(out, block.norm2(h + block.mlp(h)), atol=1e-6, rtol=1e-5)
    # post-norm output is layer-normalised per token: zero mean over channels (LN affine is identity at init)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)


def test_layerscale_starts_small():
    block = Block(dim=16, num_heads=2, init_values=1e-5).eval()
    x = torch.randn(2, 5, 16)
    assert (block(x) - x).abs().max() < 1e-3  # branches scaled by 1e-5: the block starts near identity
    torch.testing.assert_close(block.ls1.gamma, torch.full((16,), 1e-5))


def test_drop_path_drops_whole_samples_and_keeps_expectation():
    dp = DropPath(0.5).train()
    out = dp(torch.ones(10000, 3, 2))
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)  # all or nothing per sample
    assert abs(out.mean().item() - 1.0) < 0.05
    assert torch.equal(dp.eval()(torch.ones(3, 2)), torch.ones(3, 2))


def test_shift_image():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    right = shift_image(x, 1, 0)
    assert torch.equal(right[..., :, 1:], x[..., :, :3]) and torch.all(right[..., :, 0] == 0)
    up = shift_image(x, 0, -2)
    assert torch.equal(up[..., :2, :], x[..., 2:, :]) and torch.all(up[..., 2:, :] == 0)


@pytest.mark.parametrize("name", ["cpu_small", "cpu", "tiny"])
def test_block_flops_equal_what_pytorch_counts_in_the_blocks(name):
    from torch.utils.flop_counter import FlopCounterMode

    cfg = vitnb.preset(name)
    blocks = vitnb.VisionTransformer(cfg).blocks.eval()
    tokens = torch.randn(1, cfg.num_patches + int(cfg.class_token), cfg.embed_dim)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        for block in blocks:  # the explicit attention path: its two products are matmuls that PyTorch counts
            tokens, _ = block(tokens, return_attention=True)
    assert sum(cfg.block_flops()) == counter.get_total_flops()
