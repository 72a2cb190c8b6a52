"""Measure the logit parity of vitnb with timm and torchvision (random init, float32, no downloads).

Usage: python benchmarks/parity.py     prints the max |logit difference| per configuration.
"""

import timm
import torch
import torchvision

from vitnb import VisionTransformer, ViTConfig, preset
from vitnb.convert import timm_kwargs, vitnb_from_torchvision

TIMM_CONFIGS = {
    "vit_tiny_patch16_224": preset("tiny"),
    "vit_small_patch16_224": preset("small"),
    "vit_base_patch16_224": preset("base"),
    "28px 1ch patch4 avg-pool": ViTConfig(
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
    "vitnb cpu preset": preset("cpu"),
}


def main() -> None:
    torch.manual_seed(0)
    print(f"{'configuration':32s} {'max |Δlogit|':>14s} {'max |logit|':>12s}")
    for name, cfg in TIMM_CONFIGS.items():
        ref = timm.models.vision_transformer.VisionTransformer(**timm_kwargs(cfg)).eval()
        ours = VisionTransformer(cfg).eval()
        ours.load_state_dict(ref.state_dict(), strict=True)
        report(f"timm {name}", ours, ref, cfg)
    for name in ("vit_b_16", "vit_b_32"):
        tv = getattr(torchvision.models, name)(weights=None).eval()
        torch.nn.init.normal_(tv.heads.head.weight, std=0.02)  # torchvision zero-inits the head
        cfg = preset("base", patch_size=int(name[-2:]))
        report(f"torchvision {name}", vitnb_from_torchvision(tv, cfg).eval(), tv, cfg)


def report(name, ours, ref, cfg) -> None:
    x = torch.randn(4, cfg.in_chans, cfg.img_size, cfg.img_size)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    print(f"{name:32s} {(a - b).abs().max().item():14.2e} {b.abs().max().item():12.3f}")


if __name__ == "__main__":
    main()
