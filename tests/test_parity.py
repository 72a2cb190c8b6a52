"""Weight compatibility: timm and torchvision ViT state dicts load into vitnb and give the same logits."""

import pytest
import torch

from vitnb import VisionTransformer, ViTConfig, preset
from vitnb.convert import timm_kwargs, torchvision_vit_state_dict, vitnb_from_torchvision

timm = pytest.importorskip("timm")

CONFIGS = {
    "vit_tiny_patch16_224": preset("tiny"),
    "vit_small_patch16_224": preset("small"),
    "28px_1ch_patch4_avg": ViTConfig(
        img_size=28,
        patch_size=4,
        in_chans=1,
        num_classes=10,
        embed_dim=96,
        depth=3,
        num_heads=3,
        class_token=False,
        global_pool="avg",
    ),
    "28px_cls_layerscale": ViTConfig(
        img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=64, depth=2, num_heads=2, init_values=1e-2
    ),
    "32px_no_pos_no_qkv_bias": ViTConfig(
        img_size=32, patch_size=8, num_classes=4, embed_dim=48, depth=2, num_heads=4, pos_embed="none", qkv_bias=False
    ),
}


def timm_model(cfg: ViTConfig):
    return timm.models.vision_transformer.VisionTransformer(**timm_kwargs(cfg)).eval()


def test_timm_kwargs_refuses_options_timm_lacks():
    with pytest.raises(ValueError, match="no post-norm"):
        timm_kwargs(preset("cpu", norm="post"))


@pytest.mark.parametrize("name", CONFIGS)
def test_timm_state_dict_loads_strict_and_logits_match(name):
    cfg = CONFIGS[name]
    reference = timm_model(cfg)
    ours = VisionTransformer(cfg).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, cfg.in_chans, cfg.img_size, cfg.img_size)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
        _, attentions = ours(x, return_attention=True)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert len(attentions) == cfg.depth
    # and back: vitnb's state dict loads into timm
    reference.load_state_dict(VisionTransformer(cfg).state_dict(), strict=True)


def small_torchvision_vit():
    from torchvision.models.vision_transformer import VisionTransformer as TVViT

    tv = TVViT(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=48, mlp_dim=192, num_classes=6)
    cfg = ViTConfig(img_size=32, patch_size=8, num_classes=6, embed_dim=48, depth=2, num_heads=4)
    return tv.eval(), cfg


def test_torchvision_small_vit_converts_and_logits_match():
    tv, cfg = small_torchvision_vit()
    torch.nn.init.normal_(tv.encoder.pos_embedding, std=0.1)  # make sure every tensor carries signal
    torch.nn.init.normal_(tv.heads.head.weight, std=0.1)
    ours = vitnb_from_torchvision(tv, cfg).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["vit_b_16", "vit_b_32"])
def test_torchvision_vit_b_converts_and_logits_match(name):
    import torchvision

    tv = getattr(torchvision.models, name)(weights=None).eval()
    torch.nn.init.normal_(tv.heads.head.weight, std=0.02)  # torchvision zero-inits the head
    cfg = preset("base", patch_size=int(name[-2:]))
    ours = vitnb_from_torchvision(tv, cfg).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), atol=1e-5, rtol=1e-5)


def test_torchvision_unknown_key_is_an_error():
    with pytest.raises(ValueError, match="unexpected key 'heads.pre_logits.weight'"):
        torchvision_vit_state_dict({"heads.pre_logits.weight": torch.zeros(1)})
