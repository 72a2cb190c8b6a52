"""Weight compatibility: timm and torchvision ViTs load into vitnb and give the same logits, offline."""

import urllib.error

import pytest
import torch

from vitnb import VisionTransformer, ViTConfig, preset
from vitnb.convert import (
    config_from_timm,
    from_timm,
    load_torchvision_vit,
    timm_kwargs,
    torchvision_vit_state_dict,
    vitnb_from_timm,
    vitnb_from_torchvision,
)

timm = pytest.importorskip("timm")

CONFIGS = {
    "vit_tiny_patch16_224": preset("tiny"),
    "28px_1ch_patch4_avg": preset("cpu", embed_dim=96, depth=3, num_heads=3, class_token=False, global_pool="avg"),
    "28px_cls_layerscale_droppath": preset(
        "cpu_p7", embed_dim=64, depth=2, num_heads=2, init_values=1e-2, drop_path_rate=0.1
    ),
    "32px_no_pos_no_qkv_bias": ViTConfig(
        img_size=32, patch_size=8, num_classes=4, embed_dim=48, depth=2, num_heads=4, pos_embed="none", qkv_bias=False
    ),
}


def timm_model(cfg: ViTConfig):
    return timm.models.vision_transformer.VisionTransformer(**timm_kwargs(cfg)).eval()


def assert_same_logits(ours, reference, cfg: ViTConfig):
    x = torch.randn(1, cfg.in_chans, cfg.img_size, cfg.img_size)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), atol=1e-5, rtol=1e-5)


def test_timm_kwargs_refuses_options_timm_lacks():
    with pytest.raises(ValueError, match="no post-norm"):
        timm_kwargs(preset("cpu", norm="post"))


@pytest.mark.parametrize("name", CONFIGS)
def test_timm_state_dict_loads_strict_and_logits_match(name):
    cfg = CONFIGS[name]
    reference = timm_model(cfg)
    ours = VisionTransformer(cfg).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert_same_logits(ours, reference, cfg)
    _, attentions = ours(torch.randn(1, cfg.in_chans, cfg.img_size, cfg.img_size), return_attention=True)
    assert len(attentions) == cfg.depth
    # and back: vitnb's state dict loads into timm
    reference.load_state_dict(VisionTransformer(cfg).state_dict(), strict=True)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_from_timm_inverts_timm_kwargs(name):
    assert config_from_timm(timm_model(CONFIGS[name])) == CONFIGS[name]


# Real timm model names, built with random init (offline), and the vitnb config each must become.
TIMM_NAMES = [
    ("vit_tiny_patch16_224", {}, preset("tiny")),
    ("vit_small_patch16_224", {}, preset("small")),
    ("vit_small_patch32_224", {}, preset("small", patch_size=32)),
    (
        "vit_tiny_patch16_224",
        {"class_token": False, "global_pool": "avg"},
        preset("tiny", class_token=False, global_pool="avg"),
    ),
    pytest.param("vit_base_patch16_224", {}, preset("base"), marks=pytest.mark.slow),
    pytest.param("vit_base_patch32_224", {}, preset("base", patch_size=32), marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name, kwargs, cfg", TIMM_NAMES)
def test_vitnb_from_timm_reads_the_config_and_matches_the_logits(name, kwargs, cfg):
    reference = timm.create_model(name, pretrained=False, **kwargs)
    ours = vitnb_from_timm(reference)
    assert ours.cfg == cfg
    assert not ours.training
    assert reference.training  # the check runs timm's model in eval mode and gives it back as it was
    assert_same_logits(ours, reference, cfg)


def test_from_timm_builds_the_named_model():
    torch.manual_seed(0)
    reference = timm.create_model("vit_tiny_patch16_224", num_classes=10)
    torch.manual_seed(0)
    ours = from_timm("vit_tiny_patch16_224", num_classes=10)
    assert ours.cfg == preset("tiny", num_classes=10)
    assert_same_logits(ours, reference, ours.cfg)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("no_such_model", {}, r"timm has no model 'no_such_model'; list the ViTs with timm.list_models"),
        ("resnet18", {}, r"timm model 'resnet18': vitnb converts timm's plain VisionTransformer .*, not ResNet"),
        ("deit_tiny_distilled_patch16_224", {}, r"not VisionTransformerDistilled"),
        ("vit_small_patch16_18x2_224", {"depth": 1}, r"this model's blocks are \['ParallelThingsBlock/"),
        ("vit_tiny_patch16_224", {"depth": 1, "reg_tokens": 4}, r"\n  reg_token: Parameter\(1, 4, 192\) -> \(absent\)"),
        (
            "vit_tiny_patch16_224",
            {"depth": 1, "qk_norm": True},
            r"\n  blocks\.\*\.attn\.q_norm: LayerNorm\(\(64,\).* -> Identity\(\)",
        ),
        (
            "vit_tiny_patch16_224",
            {"depth": 1, "pre_norm": True},
            r"\n  norm_pre: LayerNorm\(\(192,\).* -> Identity\(\)",
        ),
        (
            "vit_tiny_patch16_224",
            {"depth": 1, "class_token": False, "global_pool": "avg", "fc_norm": False},
            r"\n  fc_norm: Identity\(\) -> LayerNorm",
        ),
        (
            "vit_tiny_patch16_224",
            {"depth": 1, "drop_rate": 0.1},
            r"\n  head_drop: Dropout\(p=0.1, inplace=False\) -> Dropout\(p=0.0",
        ),
        (
            "vit_tiny_patch16_224",
            {"depth": 1, "global_pool": "map"},
            r"global_pool must be one of \('token', 'avg'\), got 'map'",
        ),
        ("vit_tiny_patch16_224", {"depth": 1, "img_size": (224, 192)}, r"needs a square img_size, got \(224, 192\)"),
    ],
)
def test_from_timm_names_what_vitnb_cannot_represent(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        from_timm(name, **kwargs)


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """Hugging Face Hub offline with an empty cache, as on a machine without network."""
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


def test_from_timm_pretrained_offline_says_how_to_use_a_local_file(offline_hub):
    with pytest.raises(ConnectionError) as info:
        from_timm("vit_tiny_patch16_224", pretrained=True)
    message = str(info.value)
    assert message.startswith("could not download the pretrained weights of timm model 'vit_tiny_patch16_224' (")
    assert "from https://huggingface.co/timm/vit_tiny_patch16_224." in message
    assert message.endswith("pass pretrained_cfg_overlay=dict(file='path/to/model.safetensors')")


def test_from_timm_pretrained_from_a_local_file(offline_hub, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    weights = timm.create_model("vit_tiny_patch16_224", depth=1).state_dict()
    path = tmp_path / "model.safetensors"
    safetensors.save_file(weights, path)
    ours = from_timm("vit_tiny_patch16_224", pretrained=True, depth=1, pretrained_cfg_overlay=dict(file=str(path)))
    state = ours.state_dict()
    assert state.keys() == weights.keys()
    assert all(torch.equal(state[key], weights[key]) for key in weights)


# --- torchvision ----------------------------------------------------------------------------------
def small_torchvision_vit():
    from torchvision.models.vision_transformer import VisionTransformer as TVViT

    tv = TVViT(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=48, mlp_dim=192, num_classes=6)
    cfg = ViTConfig(img_size=32, patch_size=8, num_classes=6, embed_dim=48, depth=2, num_heads=4)
    return tv.eval(), cfg


def test_torchvision_small_vit_converts_and_logits_match():
    tv, cfg = small_torchvision_vit()
    torch.nn.init.normal_(tv.encoder.pos_embedding, std=0.1)  # make sure every tensor carries signal
    torch.nn.init.normal_(tv.heads.head.weight, std=0.1)
    assert_same_logits(vitnb_from_torchvision(tv, cfg), tv, cfg)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_b_16", "vit_b_32"])
def test_torchvision_vit_b_converts_and_logits_match(name):
    import torchvision

    tv = getattr(torchvision.models, name)(weights=None).eval()
    torch.nn.init.normal_(tv.heads.head.weight, std=0.02)  # torchvision zero-inits the head
    cfg = preset("base", patch_size=int(name[-2:]))
    assert_same_logits(vitnb_from_torchvision(tv, cfg), tv, cfg)


@pytest.mark.slow
def test_load_torchvision_vit_from_a_local_file(tmp_path):
    import torchvision

    tv = torchvision.models.vit_b_32(weights=None).eval()
    torch.nn.init.normal_(tv.heads.head.weight, std=0.02)
    torch.save(tv.state_dict(), tmp_path / "vit_b_32.pth")
    ours = load_torchvision_vit("vit_b_32", weights_path=tmp_path / "vit_b_32.pth")
    assert ours.cfg == preset("base", patch_size=32)
    assert_same_logits(ours, tv, ours.cfg)


def test_load_torchvision_vit_offline_says_how_to_use_a_local_file(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty download cache
    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    with pytest.raises(ConnectionError) as info:
        load_torchvision_vit("vit_b_16")
    assert str(info.value) == (
        "could not download torchvision's vit_b_16 weights ViT_B_16_Weights.IMAGENET1K_V1 from "
        "https://download.pytorch.org/models/vit_b_16-c867db91.pth (URLError: <urlopen error [Errno -3] Temporary "
        "failure in name resolution>). Offline, fetch that file elsewhere and pass "
        f"weights_path='path/to/vit_b_16-c867db91.pth' (or put it in {tmp_path}/hub/checkpoints/)"
    )


def test_load_torchvision_vit_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"unsupported torchvision model 'vit_l_16'; choose one of \['vit_b_16'"):
        load_torchvision_vit("vit_l_16")
    with pytest.raises(ValueError, match=r"unknown weights 'IMAGENET' for vit_b_16; choose one of \['DEFAULT', "):
        load_torchvision_vit("vit_b_16", weights="IMAGENET")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_torchvision_vit("vit_b_16", weights_path=tmp_path / "missing.pth")


def test_torchvision_unknown_key_is_an_error():
    with pytest.raises(ValueError, match="unexpected key 'heads.pre_logits.weight'"):
        torchvision_vit_state_dict({"heads.pre_logits.weight": torch.zeros(1)})


def test_hub_reachable_says_whether_a_connection_opens(monkeypatch):
    import socket

    from vitnb.convert import hub_reachable

    opened = []

    class Connection:
        def close(self):
            opened.append("closed")

    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: Connection())
    assert hub_reachable("example.org") and opened == ["closed"]

    def refuse(address, timeout):
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert not hub_reachable("example.org")
