"""Builders the tests share: toy data, an image folder and a tiny ViT. Tests import them with `from helpers import ...`
(pytest puts tests/ on sys.path); conftest.py offers them as the `toy` and `tiny_vit` fixtures too."""

import contextlib
import os
import tempfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from vitnb import VisionTransformer, preset
from vitnb.data import ImageTensorDataset

# The attention-map tests' model: 8x8 grayscale, 2x2 patches (a 4x4 grid, N = 17 with cls), 3 blocks of 2 heads,
# 3 classes, weights livelier than the init so maps and predictions differ. Use as `tiny_vit(**MAPS_VIT)`.
MAPS_VIT = dict(classes=3, patch_size=2, embed_dim=16, depth=3, lively=True)


def toy_images(n: int = 64, size: int = 8, classes: int = 4, seed: int = 0, in_chans: int = 1) -> ImageTensorDataset:
    """A learnable toy set: class c brightens every `classes`-th pixel row from row c, over noise.

    uint8 images (n, in_chans, size, size), labels 0, 1, ..., classes-1 in turn, class names 'a', 'b', ...
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 60, (n, in_chans, size, size), generator=g)
    for i, c in enumerate(labels.tolist()):
        images[i, :, c::classes] += 180
    names = [chr(ord("a") + c) for c in range(classes)]
    return ImageTensorDataset(images.clamp(0, 255).to(torch.uint8), labels, names, (0.3,) * in_chans, (0.3,) * in_chans)


def tiny_vit(
    size: int = 8, classes: int = 4, in_chans: int = 1, *, lively: bool = False, **changes
) -> VisionTransformer:
    """A seeded ViT small enough for a test: the `cpu` preset (4x4 patches) at width 24, 2 blocks of 2 heads.

    `changes` are further ViTConfig fields (`depth=3`, `class_token=False`, ...). `lively=True` adds 0.3 * N(0, 1)
    to every weight, so that attention maps and predictions differ between tokens and images (the 0.02-std init
    gives nearly uniform attention). The model is in eval mode, so its outputs are deterministic; `fit` switches
    it to train mode itself.
    """
    cfg = preset("cpu", img_size=size, in_chans=in_chans, num_classes=classes, embed_dim=24, depth=2, num_heads=2)
    torch.manual_seed(0)
    model = VisionTransformer(cfg.replace(**changes)).eval()
    if lively:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.3)
    return model


def direct(model: VisionTransformer, dataset: ImageTensorDataset, i: int):
    """Image i as a batch of one (1, C, H, W), its logits (classes,) and attentions, straight from the model."""
    x = dataset[i][0][None]
    with torch.no_grad():
        logits, attentions = model(x, return_attention=True)
    return x, logits[0], attentions


def write_image_folder(root, classes=("cat", "dog"), per_class=8, size=12):
    """An ImageFolder of PNGs: class k has bright rows k, k+2, ... over dark noise (RGB, `size` px)."""
    g = torch.Generator().manual_seed(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = torch.randint(0, 60, (size, size, 3), generator=g)
            pixels[k :: len(classes)] += 180
            Image.fromarray(pixels.to(torch.uint8).numpy()).save(root / name / f"{i}.png")
    return root


# --- the browser tests' Chromium -----------------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_browser() -> None:
    """Skip (or, with VITNB_REQUIRE_BROWSER=1, fail) when the browser or Playwright is unavailable."""
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (Debian: apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright Python package is not installed (pip install playwright; no browser download)"
    if reason is None:
        return
    if os.environ.get("VITNB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"VITNB_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1000):
    """A Playwright page in Debian's Chromium (headless, fresh profile); closed and stopped afterwards.
    Skips (or fails: `require_browser`) when there is no browser."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="vitnb-chromium-") as profile:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": width, "height": height},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
