"""The full model: presets, forward contract, surgery, options (notebook 08) and input errors."""

import pytest
import torch
from torchvision.models.resnet import BasicBlock

from vitnb import VisionTransformer, ViTConfig, num_params, preset
from vitnb.patches import ResNetStemEmbed


def small(**changes) -> ViTConfig:
    return ViTConfig(img_size=16, patch_size=4, in_chans=1, num_classes=5, embed_dim=32, depth=2, num_heads=4).replace(
        **changes
    )


# timm's vit_tiny/small/base_patch16_224 (the published 5.7M / 22.1M / 86.6M)
@pytest.mark.parametrize(
    "name, count",
    [("tiny", 5_717_416), ("small", 22_050_664), pytest.param("base", 86_567_656, marks=pytest.mark.slow)],
)
def test_preset_parameter_counts_match_timm(name, count):
    assert num_params(VisionTransformer(preset(name))) == count


def test_hybrid_preset_is_a_resnet_stem_under_one_block():
    model = VisionTransformer(preset("cpu_hybrid")).eval()
    assert isinstance(model.patch_embed, ResNetStemEmbed)
    assert [m.out_channels for m in model.patch_embed.stem if isinstance(m, torch.nn.Conv2d)] == [16]
    assert [b.conv1.out_channels for b in model.patch_embed.stem[3:]] == [16, 32, 64]  # 28 -> 28, 14, 7 px
    logits, attentions = model(torch.randn(2, 1, 28, 28), return_attention=True)
    assert logits.shape == (2, 10)
    assert [a.shape for a in attentions] == [(2, 3, 49, 49)]  # one block; 7x7 tokens, no cls token
    assert model.channels_last


def test_series_vit_preset_is_a_plain_patch4_vit():
    model = VisionTransformer(preset("cpu_small")).eval()
    assert isinstance(model.patch_embed.proj, torch.nn.Conv2d) and model.patch_embed.proj.kernel_size == (4, 4)
    assert model.cls_token is None and num_params(model) == 301_930
    logits, attentions = model(torch.randn(2, 1, 28, 28), return_attention=True)
    assert logits.shape == (2, 10)
    assert [a.shape for a in attentions] == [(2, 4, 49, 49)] * 4  # 7x7 tokens, no cls token


def test_forward_and_attention_contract():
    model = VisionTransformer(preset("cpu")).eval()
    x = torch.randn(3, 1, 28, 28)
    logits, attentions = model(x, return_attention=True)
    assert logits.shape == (3, 10)
    assert len(attentions) == 6
    assert all(a.shape == (3, 3, 50, 50) for a in attentions)  # N = 1 cls + 49 patches
    torch.testing.assert_close(model(x), logits, atol=1e-5, rtol=1e-5)
    assert model.forward_features(x).shape == (3, 50, 192)


def test_batch_elements_are_independent():
    model = VisionTransformer(small()).eval()
    x = torch.randn(4, 1, 16, 16)
    torch.testing.assert_close(model(x)[1:2], model(x[1:2]), atol=1e-5, rtol=1e-5)


def test_reset_classifier_replaces_only_the_head():
    model = VisionTransformer(small()).eval()
    x = torch.randn(2, 1, 16, 16)
    features = model.forward_head(model.forward_features(x), pre_logits=True)  # (B, D)
    body = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
    model.reset_classifier(7)
    assert model.cfg.num_classes == 7 and model.head.out_features == 7
    assert torch.equal(model.head.bias, torch.zeros(7))
    torch.testing.assert_close(model(x), model.head(features))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in body.items())
    model.reset_classifier(0)
    torch.testing.assert_close(model(x), features)  # no head: the pooled features


@pytest.mark.parametrize("pos", ["learn", "sincos"])
def test_set_input_size(pos):
    model = VisionTransformer(small(pos_embed=pos)).eval()
    cls_before = model.pos_embed[:, :1].clone()
    model.set_input_size(32)
    assert model.pos_embed.shape == (1, 1 + 64, 32)
    assert torch.equal(model.pos_embed[:, :1], cls_before)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"\(B, 1, 32, 32\), got \(2, 1, 16, 16\)"):
        model(torch.randn(2, 1, 16, 16))


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (2, 1, 20, 20), (1, 16, 16)])
def test_wrong_input_shape_raises_naming_both_shapes(shape):
    model = VisionTransformer(small())
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, 16, 16\), got " + re_shape(shape)):
        model(torch.randn(*shape))


def re_shape(shape) -> str:
    return r"\(" + ", ".join(map(str, shape)) + r"\)"


def test_config_errors():
    with pytest.raises(ValueError, match="img_size=30 is not divisible by patch_size=4"):
        ViTConfig(img_size=30, patch_size=4)
    with pytest.raises(ValueError, match="embed_dim=100 is not divisible by num_heads=3"):
        ViTConfig(embed_dim=100, num_heads=3)
    with pytest.raises(ValueError, match=r"ViTConfig.global_pool must be one of \('token', 'avg'\), got 'max'"):
        ViTConfig(global_pool="max")
    with pytest.raises(ValueError, match="needs class_token=True"):
        ViTConfig(class_token=False, global_pool="token")
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; choose one of \['base', 'cpu', "):
        preset("huge")


def test_config_round_trips_through_a_plain_dict():
    cfg = small(stem="spt", lsa=True, init_values=0.1)
    assert ViTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ViTConfig fields"):
        ViTConfig.from_dict({**cfg.to_dict(), "dropout": 0.1})


# --- options studied in notebook 08 ---------------------------------------------------------------
def test_avg_pool_without_cls_token():
    model = VisionTransformer(small(class_token=False, global_pool="avg")).eval()
    assert model.cls_token is None and model.pos_embed.shape == (1, 16, 32)
    x = torch.randn(2, 1, 16, 16)
    tokens = model.forward_features(x)
    assert tokens.shape == (2, 16, 32)
    torch.testing.assert_close(model(x), model.head(model.fc_norm(tokens.mean(1))))
    _, attentions = model(x, return_attention=True)
    assert attentions[0].shape == (2, 4, 16, 16)


def test_sincos_has_no_trainable_parameters_and_none_has_no_embedding():
    model = VisionTransformer(small(pos_embed="sincos"))
    assert "pos_embed" not in dict(model.named_parameters())
    assert "pos_embed" not in model.state_dict()  # fixed, recomputed from the config
    assert num_params(model) == num_params(VisionTransformer(small())) - 17 * 32
    model = VisionTransformer(small(pos_embed="none"))
    assert model.pos_embed is None


def test_without_position_the_model_is_blind_to_patch_order():
    x = torch.randn(2, 1, 16, 16)
    # swap the top-left and bottom-right 4x4 patches (tokens 0 and 15): a different image, the same patches
    y = x.clone()
    y[..., :4, :4], y[..., 12:, 12:] = x[..., 12:, 12:], x[..., :4, :4]
    swap = [0] + [16] + list(range(2, 16)) + [1]  # token order of y in terms of x (cls first)
    model = VisionTransformer(small(pos_embed="none")).eval()
    torch.testing.assert_close(model.forward_features(y), model.forward_features(x)[:, swap], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x), model(y), atol=1e-5, rtol=1e-5)
    learned = VisionTransformer(small()).eval()
    torch.nn.init.normal_(learned.pos_embed)  # trained-sized position embeddings, not init-sized ones
    gap = (learned.forward_features(y) - learned.forward_features(x)[:, swap]).abs().max()
    assert gap > 0.1  # with position embeddings, where a patch sits changes its token


@pytest.mark.parametrize(
    "stem, patch",
    [("conv", 4), ("conv", 8), ("conv_deep", 4), ("conv_deep", 8), ("resnet", 4), ("resnet", 8), ("spt", 4)],
)
def test_stems_give_the_same_token_grid(stem, patch):
    model = VisionTransformer(small(stem=stem, patch_size=patch)).eval()
    tokens = model.forward_features(torch.randn(2, 1, 16, 16))
    assert tokens.shape == (2, 1 + (16 // patch) ** 2, 32)


def test_conv_stem_has_overlapping_receptive_fields():
    # with the patchify conv, a pixel only reaches its own token; through the conv stem it reaches neighbours
    for stem, expect_neighbour in (
        ("patch", False),
        ("conv", True),
        ("conv_deep", True),
        ("resnet", True),
        ("spt", True),
    ):
        embed = VisionTransformer(small(stem=stem)).patch_embed.eval()
        x = torch.randn(1, 1, 16, 16, requires_grad=True)
        embed(x)[0, 5].sum().backward()  # token 5 = grid cell (1, 1) = pixels 4..7 x 4..7
        reach = x.grad[0, 0].abs() > 0
        assert reach[4:8, 4:8].any()
        assert bool(reach[:4].any() or reach[8:].any() or reach[:, :4].any() or reach[:, 8:].any()) == expect_neighbour


@pytest.mark.parametrize("stem", ["conv", "conv_deep", "resnet"])
def test_conv_stem_needs_power_of_two_patch(stem):
    with pytest.raises(ValueError, match=f"stem='{stem}' needs a power-of-two patch_size >= 2, got 6"):
        ViTConfig(img_size=24, patch_size=6, stem=stem)


def test_stem_width_sets_the_conv_stem_channels():
    # patch 4 = two stride-2 layers: width, then 2 * width channels, then the 1x1 projection to embed_dim
    stem = VisionTransformer(small(stem="conv", stem_width=40)).patch_embed
    convs = [m for m in stem.stem if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [40, 80]
    assert (stem.proj.in_channels, stem.proj.out_channels) == (80, 32)
    with pytest.raises(ValueError, match="ViTConfig.stem_width must be a positive int, got 0"):
        small(stem="conv", stem_width=0)


def test_deep_conv_stem_adds_a_stride_1_conv_to_each_stage():
    # patch 4 = two stages; each is a stride-2 conv then a stride-1 conv at the same width
    stem = VisionTransformer(small(stem="conv_deep", stem_width=40)).patch_embed
    convs = [m for m in stem.stem if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.stride) for c in convs] == [(40, (2, 2)), (40, (1, 1)), (80, (2, 2)), (80, (1, 1))]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in stem.stem) == 4
    # receptive field of one token: 3 -> 7 px through the two stride-2 convs; the stride-1 convs add
    # 2 * 2 px (after stage 1, stride 2 so far) and 2 * 4 px (after stage 2): 3 -> 7 -> 11 -> 19 px
    torch.manual_seed(0)
    reach = {}
    for kind in ("conv", "conv_deep"):
        embed = VisionTransformer(small(stem=kind, img_size=32)).patch_embed.eval()
        x = torch.randn(1, 1, 32, 32, requires_grad=True)
        embed(x)[0, 4 * 8 + 4].sum().backward()  # token at grid cell (4, 4) = pixels 16..19
        rows = (x.grad[0, 0].abs() > 0).any(1).nonzero()
        reach[kind] = int(rows.max() - rows.min() + 1)
    assert reach == {"conv": 7, "conv_deep": 19}


def test_resnet_stem_has_a_full_resolution_block_then_one_stride_2_block_per_halving():
    # patch 8 = three halvings: 16 px -> 16 (full resolution) -> 8 -> 4 -> 2, width doubling at each halving
    stem = VisionTransformer(small(stem="resnet", patch_size=8, stem_width=12)).patch_embed
    blocks = [m for m in stem.stem if isinstance(m, BasicBlock)]
    assert [(b.conv1.out_channels, b.conv1.stride) for b in blocks] == [
        (12, (1, 1)),
        (24, (2, 2)),
        (48, (2, 2)),
        (96, (2, 2)),
    ]
    assert [b.downsample is not None for b in blocks] == [False, True, True, True]  # a projection where shapes change
    assert (stem.proj.in_channels, stem.proj.out_channels) == (96, 32)
    features = stem.stem(torch.randn(2, 1, 16, 16))
    assert features.shape == (2, 96, 2, 2)


def test_conv_stems_ask_for_channels_last_and_give_the_same_logits_in_it():
    stems = ("patch", "conv", "conv_deep", "resnet", "spt")
    assert [VisionTransformer(small(stem=s)).channels_last for s in stems] == [False, True, True, True, False]
    torch.manual_seed(0)
    model = VisionTransformer(small(stem="conv_deep")).eval()
    x = torch.randn(3, 1, 16, 16)
    expected = model(x)
    model.to(memory_format=torch.channels_last)
    assert torch.allclose(model(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-5)


def test_lsa_and_layerscale_options_reach_every_block():
    model = VisionTransformer(small(lsa=True, init_values=1e-4))
    names = dict(model.named_parameters())
    assert all(f"blocks.{i}.attn.log_scale" in names and f"blocks.{i}.ls1.gamma" in names for i in range(2))
    _, attentions = model(torch.randn(1, 1, 16, 16), return_attention=True)
    assert all(torch.all(a.diagonal(dim1=-2, dim2=-1) == 0) for a in attentions)


def test_post_norm_model_normalises_after_each_residual():
    model = VisionTransformer(small(norm="post")).eval()
    x = torch.randn(2, 1, 16, 16)
    tokens = model.embed(x)  # (B, 1 + N, D)
    for block in model.blocks:  # the original Transformer's LN(x + f(x)) for both sub-layers
        h = block.norm1(tokens + block.attn(tokens))
        tokens = block.norm2(h + block.mlp(h))
    torch.testing.assert_close(model(x), model.head(model.norm(tokens)[:, 0]), atol=1e-5, rtol=1e-5)


def test_layerscale_scales_each_residual_branch():
    # a tiny init makes every block start as (almost) the identity; gamma = 1 gives back the plain block
    x = torch.randn(2, 1 + 16, 32)
    near_identity = VisionTransformer(small(init_values=1e-6)).blocks[0]
    torch.testing.assert_close(near_identity(x), x, atol=1e-4, rtol=0)
    torch.manual_seed(0)
    plain = VisionTransformer(small()).blocks[0]
    torch.manual_seed(0)
    scaled = VisionTransformer(small(init_values=1.0)).blocks[0]
    torch.testing.assert_close(scaled(x), plain(x))
    assert not torch.allclose(plain(x), x, atol=1e-2)
