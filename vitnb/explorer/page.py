"""Build the explorer page: every map of a few images (`maps.every_map`), quantised (`encode`), with the images,
the predictions and the page's own script, in one HTML file that needs no network and no kernel."""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from ..io import atomic_write
from ..maps import every_map, forward_cache
from ..plotting.render import colour_table, render_overlay
from ..rollout import POOLED, TokenLayout
from .encode import PAYLOAD_FORMAT, pack, quantise, relative_error, stack_maps

__all__ = ["DEFAULT_IMAGES", "ExplorerPage", "explorer_page", "pick_images", "write_explorer"]

DEFAULT_IMAGES = 12


@dataclass(frozen=True)
class ExplorerPage:
    """An explorer page: its HTML text, and the largest quantisation error of its maps (relative to each map's
    range). In a notebook it shows inline (an iframe holding the page), with a line saying how to open it."""

    html: str
    error: float
    images: int

    @property
    def size(self) -> int:
        """The page's size in bytes (UTF-8)."""
        return len(self.html.encode("utf-8"))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page to `path` atomically (temp file, then rename), readable by all (a page is for sharing:
        atomic_write's temp file is private); returns the path."""
        path = atomic_write(path, lambda f: f.write(self.html.encode("utf-8")))
        path.chmod(0o644)
        return path

    def _repr_html_(self) -> str:
        frame = html.escape(self.html, quote=True)
        return (
            f'<iframe srcdoc="{frame}" style="width:100%;height:600px;border:1px solid #ddd" '
            f'title="attention explorer"></iframe>'
            f"<p><small>The attention explorer as a page ({self.images} images, {self.size / 1e6:.2f} MB): it runs "
            "in the browser, with no kernel. Where this frame shows nothing (an untrusted notebook, GitHub), "
            "open <code>docs/explorer.html</code> in a browser.</small></p>"
        )

    def __repr__(self) -> str:
        return f"ExplorerPage({self.images} images, {self.size / 1e6:.2f} MB; save() it and open the file in a browser)"


def pick_images(dataset, count: int = DEFAULT_IMAGES) -> list[int]:
    """`count` indices into `dataset`: the first image of each class in class order, then the second of each,
    ... (so a few images cover many classes); the first `count` images if the data set has no `labels`."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        return list(range(min(count, len(dataset))))
    labels = torch.as_tensor(labels)
    per_class = [(labels == c).nonzero().flatten().tolist() for c in sorted(set(labels.tolist()))]
    picked, rank = [], 0
    while len(picked) < min(count, len(labels)):
        picked += [indices[rank] for indices in per_class if rank < len(indices)][: count - len(picked)]
        rank += 1
    return picked


def _class_names(dataset, num_classes: int) -> list[str]:
    """The data set's class names if it has one per logit, else '0', '1', ... (as the notebook's explorer)."""
    classes = list(getattr(dataset, "classes", None) or [])
    return [str(c) for c in classes] if len(classes) == num_classes else [str(i) for i in range(num_classes)]


def _describe(model: nn.Module, layout: TokenLayout, blocks: int, heads: int) -> str:
    (h, w), patch = layout.grid_size, model.cfg.patch_size
    cls = "a cls token" if layout.num_prefix_tokens else "no cls token"
    pool = "reads the cls token" if layout.global_pool == "token" else "averages the patch tokens"
    return f"ViT: {blocks} blocks of {heads} heads, {h}x{w} patches of {patch}x{patch} px, {cls}; its head {pool}"


def _model_fields(model: nn.Module, cache, display_size: int) -> dict:
    """The payload's description of the model, its tokens and the picture's size."""
    layout, (img_h, img_w) = cache.layout, cache.image.shape[-2:]
    return {
        "model": _describe(model, layout, cache.num_layers, cache.num_heads),
        "blocks": cache.num_layers,
        "heads": cache.num_heads,
        "tokens": cache.num_tokens,
        "queries": 1 + cache.num_tokens,
        "prefix": layout.num_prefix_tokens,
        "grid": list(layout.grid_size),
        "pooled": layout.describe_token(POOLED),
        "image_size": [int(img_h), int(img_w)],
        "scale": max(1, round(display_size / max(img_h, img_w))),
    }


def _image_record(cache, index: int) -> dict:
    probabilities = cache.probabilities.double()
    return {
        "index": int(index),
        "label": cache.label,
        "prediction": cache.prediction,
        "probabilities": [round(float(p), 4) for p in probabilities],
    }


def _shown(dataset, image: torch.Tensor) -> np.ndarray:
    """The image (C, H, W) as the notebook's explorer draws it (denormalised if the data set can): uint8 (H, W, 3)."""
    denormalize = getattr(dataset, "denormalize", None)
    return render_overlay(denormalize(image[None])[0] if denormalize else image)


def _fill(template: str, fields: dict[str, str]) -> str:
    """The template with each {{name}} replaced by fields[name], in one pass (so no field's text is read as one)."""
    return re.sub(r"\{\{(\w+)\}\}", lambda match: fields[match.group(1)], template)


def _html(payload: dict, title: str) -> str:
    """The page: the template with its style, its script and the payload filled in."""
    files = resources.files(__package__)
    data = json.dumps(payload, separators=(",", ":")).replace("<", "\\u003c")  # no '</script>' inside the data
    return _fill(
        files.joinpath("page.html").read_text("utf-8"),
        {
            "title": html.escape(title),
            "style": files.joinpath("page.css").read_text("utf-8"),
            "script": files.joinpath("page.js").read_text("utf-8"),
            "data": data,
        },
    )


def explorer_page(
    model: nn.Module,
    dataset,
    indices: list[int] | None = None,
    *,
    images: int = DEFAULT_IMAGES,
    source: str = "",
    title: str = "vitnb attention explorer",
    cmap: str = "inferno",
    display_size: int = 252,
) -> ExplorerPage:
    """The attention explorer of `model` over images of `dataset` (dataset[i] -> (normalised (C, H, W), label)),
    as one self-contained HTML page.

    indices: which images (default: `images` of them by `pick_images`, covering the classes). Every map of
    every image is computed here (`maps.every_map`: raw attention per block, head, mean and max; rollout
    through each block; for every query, the pooled readout and each token; gradient rollout for every class)
    and stored quantised (`vitnb.explorer.encode`: at most 0.2% of each map's range off). `source` says where
    the images come from (shown on the page).
    """
    if getattr(model, "kind", None) != "vit":
        raise UsageError(f"the explorer shows a ViT's attention; got a {type(model).__name__}")
    indices = pick_images(dataset, images) if indices is None else [int(i) for i in indices]
    if not indices:
        raise UsageError("the explorer needs at least one image; the data set is empty")
    caches = [forward_cache(model, *dataset[i]) for i in indices]
    stacked = torch.cat([stack_maps(every_map(cache)) for cache in caches])  # (images * M, h * w)
    codes, low, high = quantise(stacked)
    error = relative_error(stacked, codes, low, high)
    num_classes = caches[0].logits.shape[-1]
    payload = {
        "format": PAYLOAD_FORMAT,
        "title": title,
        "source": source,
        **_model_fields(model, caches[0], display_size),
        "classes": _class_names(dataset, num_classes),
        "images": [_image_record(cache, i) for cache, i in zip(caches, indices, strict=True)],
        "cmap": cmap,
        "colours": [round(float(v), 6) for v in colour_table(cmap).flatten()],
        "error": error,
        **pack(codes, low, high, np.stack([_shown(dataset, cache.image) for cache in caches])),
    }
    return ExplorerPage(_html(payload, title), error, len(indices))


def write_explorer(path: str | os.PathLike, model: nn.Module, dataset, **options) -> ExplorerPage:
    """`explorer_page(model, dataset, **options)` written to `path` (atomically); returns the page."""
    page = explorer_page(model, dataset, **options)
    page.save(path)
    return page
