"""An interactive attention explorer for a ViT, built from plain, testable functions.

`forward_cache` runs the model once per image and keeps the logits and attentions; `attention_map`
reads one (h, w) map out of such a cache; `render_overlay` and `to_png` turn a map into picture bytes
(composed in numpy, encoded by PIL: a few milliseconds, no matplotlib figure per update).
`AttentionExplorer` only wires ipywidgets controls to these functions:

    explorer = AttentionExplorer(model, dataset)   # dataset[i] -> (normalised (C, H, W), label)
    explorer                                       # in a notebook: the widget
    explorer.static_figure()                       # the same maps as a matplotlib figure

Which attention rows the maps show (N = P prefix tokens + h * w patches, P = 1 for a cls token):
- a head index, 'mean' or 'max': row `query` of layer `layer`'s attention (that head, or the heads
  fused entry-wise), patch columns only - `viz.cls_attention`.
- 'rollout': row `query` of the rollout through layers 0..`layer` (inclusive), so moving the layer
  slider shows how attention flow accumulates with depth; at the last layer and query 0 this is
  exactly `viz.attention_rollout`.
- 'gradient rollout': `viz.gradient_rollout` for class `target` (default: the predicted class). It
  explains one logit of the whole network, read from the cls token at the top, so it ignores `layer`
  and `query` (the explorer greys those controls out). Needs a cls token.
"""

from __future__ import annotations

import contextlib
import functools
import html
import io
import numbers
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

import ipywidgets as widgets
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from . import viz

Head = int | Literal["mean", "max", "rollout", "gradient rollout"]
FUSIONS = ("mean", "max")
ROLLOUTS = ("rollout", "gradient rollout")
PREDICTED = -1  # `target` value meaning "the predicted class"


# --- one forward pass per image ------------------------------------------------------------------------
@contextlib.contextmanager
def single_thread():
    """Run torch on one thread inside the block, then restore the thread count.

    A one-image pass is made of tiny matrix products that gain nothing from intra-op threads, and on a
    busy 2-core CPU the threads' waiting for each other made a forward pass 4x slower (50 vs 12 ms).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class ForwardCache:
    """Everything the explorer needs about one image, from a single forward pass.

    Rollout matrices and gradient rollouts are computed on first use and kept; only a gradient
    rollout for a class not seen before runs the model again (forward + backward).
    """

    model: nn.Module
    image: torch.Tensor  # (C, H, W), normalised, exactly as fed to the model
    label: int | None  # the true class, if known
    logits: torch.Tensor  # (num_classes,)
    attentions: list[torch.Tensor]  # L x (1, heads, N, N), post-softmax
    num_prefix_tokens: int
    grid_size: tuple[int, int]
    _rollouts: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)  # layer -> (N, N)
    _gradient_rollouts: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)  # class -> (h, w)

    @property
    def num_layers(self) -> int:
        return len(self.attentions)

    @property
    def num_heads(self) -> int:
        return self.attentions[0].shape[1]

    @property
    def num_tokens(self) -> int:
        return self.attentions[0].shape[-1]

    @property
    def probabilities(self) -> torch.Tensor:
        return self.logits.softmax(dim=-1)  # (num_classes,)

    @property
    def prediction(self) -> int:
        return int(self.logits.argmax())

    def rollout(self, layer: int) -> torch.Tensor:
        """(N, N) rollout matrix through layers 0..layer, heads averaged (`viz.rollout_matrix`)."""
        if layer not in self._rollouts:
            with single_thread():  # 50x50 products: threads only add waiting (54 vs 2 ms in a busy kernel)
                self._rollouts[layer] = viz.rollout_matrix(self.attentions[: layer + 1], self.num_prefix_tokens)[0]
        return self._rollouts[layer]

    def gradient_rollout(self, target: int = PREDICTED) -> torch.Tensor:
        """(h, w) `viz.gradient_rollout` map for class `target` (PREDICTED = -1: the predicted class)."""
        target = self.prediction if target == PREDICTED else int(target)
        if not 0 <= target < self.logits.shape[-1]:
            raise ValueError(f"target class must be in [0, {self.logits.shape[-1]}) or {PREDICTED}, got {target}")
        if target not in self._gradient_rollouts:
            with single_thread():
                self._gradient_rollouts[target] = viz.gradient_rollout(self.model, self.image[None], target)[0]
        return self._gradient_rollouts[target]


def forward_cache(model: nn.Module, image: torch.Tensor, label: int | None = None) -> ForwardCache:
    """Run `model` once on `image` (C, H, W) in eval mode, without gradients, on one thread, and keep what
    the maps need.

    Every submodule's train/eval mode is restored afterwards.
    """
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), single_thread():
            logits, attentions = model(image[None], return_attention=True)  # (1, classes), L x (1, H, N, N)
    finally:
        for module, training in modes.items():
            module.train(training)
    return ForwardCache(
        model=model,
        image=image,
        label=None if label is None else int(label),
        logits=logits[0],
        attentions=list(attentions),
        num_prefix_tokens=model.num_prefix_tokens,
        grid_size=tuple(model.patch_embed.grid_size),
    )


def head_options(num_heads: int, num_prefix_tokens: int) -> list[Head]:
    """The `head` values `attention_map` accepts for such a model (no gradient rollout without a cls token)."""
    options: list[Head] = [*range(num_heads), *FUSIONS, "rollout"]
    if num_prefix_tokens >= 1:
        options.append("gradient rollout")
    return options


def attention_map(cache: ForwardCache, layer: int, head: Head, query: int = 0, target: int = PREDICTED) -> torch.Tensor:
    """The (h, w) map over the patch grid that the explorer shows; raw weights, not rescaled.

    `layer` indexes the blocks (0 = first; negative counts from the end), `query` the tokens (0 = the
    cls token when there is one, then the patches row by row). `head` is a head index, 'mean' or
    'max' (raw attention of that layer), 'rollout' (layers 0..layer) or 'gradient rollout' (all
    layers, cls token, for class `target`; ignores `layer` and `query`). See the module docstring.
    """
    num_layers, n = cache.num_layers, cache.num_tokens
    if not -num_layers <= layer < num_layers:
        raise ValueError(f"layer must be in [{-num_layers}, {num_layers}), got {layer}")
    layer %= num_layers
    if not 0 <= query < n:
        raise ValueError(f"query must be a token index in [0, {n}), got {query}")
    if isinstance(head, numbers.Integral) and not isinstance(head, bool):
        head = int(head)  # e.g. a numpy integer
    if head not in head_options(cache.num_heads, cache.num_prefix_tokens) or isinstance(head, bool):
        raise ValueError(f"head must be one of {head_options(cache.num_heads, cache.num_prefix_tokens)}, got {head!r}")
    if head == "gradient rollout":
        return cache.gradient_rollout(target)
    if head == "rollout":
        row = cache.rollout(layer)[query]  # (N,)
        return row[cache.num_prefix_tokens :].reshape(cache.grid_size)  # (h, w)
    return viz.cls_attention(cache.attentions, layer, head, cache.num_prefix_tokens, cache.grid_size, query)[0]


def describe_token(query: int, num_prefix_tokens: int, grid_size: tuple[int, int]) -> str:
    """'cls' for token 0 of a model with a cls token, else 'patch (row, col)' on the grid."""
    if query < num_prefix_tokens:
        return "cls" if query == 0 else f"prefix {query}"
    row, col = divmod(query - num_prefix_tokens, grid_size[1])
    return f"patch ({row}, {col})"


# --- pictures ------------------------------------------------------------------------------------------
def display_image(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) image, C = 1 or 3 -> float32 RGB array (H, W, 3) in [0, 1], min-max scaled like `viz.overlay`."""
    image = image.detach().cpu().float()
    span = image.max() - image.min()
    image = (image - image.min()) / span if span > 0 else torch.zeros_like(image)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image.permute(1, 2, 0).contiguous().numpy()  # (H, W, 3)


@functools.cache
def _colour_table(cmap: str) -> np.ndarray:
    """(256, 3) float32 RGB lookup table of a matplotlib colormap (building one per update is slow)."""
    return matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3].astype(np.float32)


def render_overlay(
    rgb: np.ndarray,
    heat: torch.Tensor | None,
    alpha: float = 0.5,
    cmap: str = "inferno",
    scale: int = 1,
    box: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Blend `heat` (h, w) over `rgb` (H, W, 3) in [0, 1]; returns uint8 (H * scale, W * scale, 3).

    As in `viz.overlay`: the map is bilinearly upsampled to the image and min-max scaled, then coloured
    with `cmap` and mixed in with opacity `alpha`. Pixels are then repeated `scale` times (crisp, no
    smoothing). `box` = (top, left, height, width) in image pixels draws a cyan outline (the query patch).
    """
    out = rgb
    if heat is not None and alpha > 0:
        h, w = rgb.shape[:2]
        heat = F.interpolate(heat.detach().cpu().float()[None, None], size=(h, w), mode="bilinear", align_corners=False)
        heat = heat[0, 0].numpy()  # (H, W)
        span = heat.max() - heat.min()
        heat = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
        colours = _colour_table(cmap)[(heat * 255 + 0.5).astype(np.intp)]  # (H, W, 3)
        out = (1 - alpha) * rgb + alpha * colours
    out = np.repeat(np.repeat((out * 255 + 0.5).astype(np.uint8), scale, axis=0), scale, axis=1)
    if box is not None:
        top, left, height, width = (v * scale for v in box)
        t = max(1, scale // 4)  # line thickness in display pixels
        cyan = np.array([0, 255, 255], dtype=np.uint8)
        out[top : top + t, left : left + width] = cyan
        out[top + height - t : top + height, left : left + width] = cyan
        out[top : top + height, left : left + t] = cyan
        out[top : top + height, left + width - t : left + width] = cyan
    return out


def to_png(array: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes (fast, light compression)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


# --- the widget ----------------------------------------------------------------------------------------
class AttentionExplorer:
    """ipywidgets explorer of a ViT's attention over the images of `dataset`.

    Controls: `image` (index into the data set), `layer` (0 = first block), `head` (a head, 'mean',
    'max', 'rollout', 'gradient rollout'), `query` (token index: 0 = cls, then patches row by row),
    `target` (class explained by the gradient rollout; -1 = predicted), `opacity`. Setting any
    control's `.value` updates `current_map` (the raw (h, w) map, = `attention_map(...)`), the picture
    (`overlay_image.value`, PNG bytes) and the texts. One forward pass per image is cached (the
    `max_cached` most recent images), so the other controls never run the model; a gradient rollout
    runs it once per (image, class).
    """

    def __init__(
        self,
        model: nn.Module,
        dataset,
        index: int = 0,
        layer: int = -1,
        head: Head = "mean",
        query: int = 0,
        opacity: float = 0.6,
        cmap: str = "inferno",
        display_size: int = 252,
        max_cached: int = 64,
    ):
        self.model, self.dataset, self.cmap, self.max_cached = model, dataset, cmap, max_cached
        self.classes = list(getattr(dataset, "classes", None) or [])
        self._caches: OrderedDict[int, ForwardCache] = OrderedDict()
        self._rgb: np.ndarray | None = None
        self.current_map: torch.Tensor | None = None
        self.forward_calls = 0  # forward passes run by `forward_cache` (gradient rollouts not counted)

        cache = self._cache(index)  # one pass also tells us depth, heads and tokens
        img_h, img_w = cache.image.shape[-2:]
        self.scale = max(1, round(display_size / max(img_h, img_w)))
        num_layers = cache.num_layers
        self.image = widgets.BoundedIntText(
            value=index, min=0, max=len(dataset) - 1, description="image", layout=widgets.Layout(width="180px")
        )
        self.layer = widgets.IntSlider(value=layer % num_layers, min=0, max=num_layers - 1, description="layer")
        self.head = widgets.Dropdown(
            options=[
                (f"head {h}" if isinstance(h, int) else h, h)
                for h in head_options(cache.num_heads, cache.num_prefix_tokens)
            ],
            value=head,
            description="head",
        )
        self.query = widgets.IntSlider(value=query, min=0, max=cache.num_tokens - 1, description="query")
        self.query_label = widgets.Label()
        self.target = widgets.Dropdown(
            options=[("predicted", PREDICTED), *((name, i) for i, name in enumerate(self._class_names(cache)))],
            value=PREDICTED,
            description="class",
        )
        self.opacity = widgets.FloatSlider(value=opacity, min=0.0, max=1.0, step=0.05, description="opacity")
        size = f"{img_w * self.scale}px"
        self.input_image = widgets.Image(format="png", width=size, layout=widgets.Layout(margin="2px"))
        self.overlay_image = widgets.Image(format="png", width=size, layout=widgets.Layout(margin="2px"))
        self.prediction = widgets.HTML()
        self.status = widgets.HTML()

        for control in (self.layer, self.head, self.query, self.target):
            control.observe(self._on_map_change, names="value")
        self.image.observe(self._on_image_change, names="value")
        self.opacity.observe(self._on_opacity_change, names="value")

        controls = widgets.VBox(
            [
                self.image,
                self.layer,
                self.head,
                widgets.HBox([self.query, self.query_label]),
                self.target,
                self.opacity,
            ]
        )
        pictures = widgets.VBox(
            [
                widgets.HBox(
                    [self._captioned(self.input_image, "input"), self._captioned(self.overlay_image, "attention")]
                ),
                self.prediction,
                self.status,
            ]
        )
        self.widget = widgets.HBox([controls, pictures])
        self.widget.add_class("vitnb-attention-explorer")
        self._on_image_change()

    # --- data and caching ------------------------------------------------------------------------------
    def _class_names(self, cache: ForwardCache) -> list[str]:
        n = cache.logits.shape[-1]
        return self.classes if len(self.classes) == n else [str(i) for i in range(n)]

    def _cache(self, index: int) -> ForwardCache:
        """The forward cache of image `index` (LRU of the `max_cached` most recent)."""
        if index in self._caches:
            self._caches.move_to_end(index)
            return self._caches[index]
        image, label = self.dataset[index]
        self.forward_calls += 1
        cache = forward_cache(self.model, image, label)
        self._caches[index] = cache
        while len(self._caches) > self.max_cached:
            self._caches.popitem(last=False)
        return cache

    @property
    def cache(self) -> ForwardCache:
        """The forward cache of the image shown now."""
        return self._cache(self.image.value)

    def _display_rgb(self, cache: ForwardCache) -> np.ndarray:
        denormalize = getattr(self.dataset, "denormalize", None)
        image = denormalize(cache.image[None])[0] if denormalize else cache.image
        return display_image(image)

    # --- updates ---------------------------------------------------------------------------------------
    def _on_image_change(self, change=None) -> None:
        cache = self.cache
        self._rgb = self._display_rgb(cache)
        self.input_image.value = to_png(render_overlay(self._rgb, None, scale=self.scale))
        names = self._class_names(cache)
        pred, prob = cache.prediction, float(cache.probabilities[cache.prediction])
        ok = cache.label is None or pred == cache.label
        colour = "green" if ok else "crimson"
        true = "?" if cache.label is None else html.escape(names[cache.label])
        self.prediction.value = (
            f"true: <b>{true}</b> &nbsp; predicted: <b style='color:{colour}'>{html.escape(names[pred])}</b> "
            f"({prob:.0%})"
        )
        self._on_map_change()

    def _on_map_change(self, change=None) -> None:
        cache, head = self.cache, self.head.value
        gradient = head == "gradient rollout"
        self.layer.disabled = self.query.disabled = gradient  # ignored by the gradient rollout
        self.target.disabled = not gradient
        self.current_map = attention_map(cache, self.layer.value, head, self.query.value, self.target.value)
        query_name = describe_token(self.query.value, cache.num_prefix_tokens, cache.grid_size)
        self.query_label.value = query_name
        if gradient:
            target = cache.prediction if self.target.value == PREDICTED else self.target.value
            name = html.escape(self._class_names(cache)[target])
            what = f"gradient rollout for class <b>{name}</b> (all layers, cls token)"
        elif head == "rollout":
            what = f"rollout through layers 0-{self.layer.value}, row of the {query_name} token"
        else:
            shown = f"head {head}" if isinstance(head, int) else f"{head} over heads"
            what = f"layer {self.layer.value}, {shown}, attention of the {query_name} token"
        h, w = cache.grid_size
        argmax = divmod(int(self.current_map.argmax()), w)
        low, high = float(self.current_map.min()), float(self.current_map.max())
        self.status.value = (
            f"<small>{what}<br>{h}x{w} patch grid, brightest patch {argmax}, weights "
            f"{low:.3g}-{high:.3g} (display is min-max scaled)</small>"
        )
        self._render()

    def _on_opacity_change(self, change=None) -> None:
        self._render()

    def _query_box(self) -> tuple[int, int, int, int] | None:
        cache = self.cache
        if self.head.value == "gradient rollout" or self.query.value < cache.num_prefix_tokens:
            return None
        row, col = divmod(self.query.value - cache.num_prefix_tokens, cache.grid_size[1])
        ph, pw = (s // g for s, g in zip(cache.image.shape[-2:], cache.grid_size, strict=True))
        return row * ph, col * pw, ph, pw

    def _render(self) -> None:
        picture = render_overlay(
            self._rgb, self.current_map, self.opacity.value, self.cmap, self.scale, self._query_box()
        )
        self.overlay_image.value = to_png(picture)

    @staticmethod
    def _captioned(image: widgets.Image, caption: str) -> widgets.VBox:
        return widgets.VBox([widgets.HTML(f"<center><small>{caption}</small></center>"), image])

    # --- display ---------------------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def static_figure(self, dpi: int = 80, cell_size: float = 1.3) -> Figure:
        """Every map the explorer offers for the current image and query, as one matplotlib figure.

        One row per layer; columns: each head, 'mean', 'max', 'rollout' (layers 0..row). The first
        column holds the input (top) and the gradient rollout for the current class (below it).
        """
        cache, query = self.cache, self.query.value
        heads = [h for h in head_options(cache.num_heads, cache.num_prefix_tokens) if h != "gradient rollout"]
        rows, cols = cache.num_layers, 1 + len(heads)
        height = cell_size * rows + 0.5  # + the title
        fig, axes = plt.subplots(rows, cols, figsize=(cell_size * cols, height), dpi=dpi, squeeze=False)
        display = self._display_rgb(cache).transpose(2, 0, 1)  # (3, H, W)
        for ax in axes.flat:
            ax.set_axis_off()
        axes[0, 0].imshow(display.transpose(1, 2, 0))
        axes[0, 0].set_title("input", fontsize="small")
        if "gradient rollout" in head_options(cache.num_heads, cache.num_prefix_tokens) and rows > 1:
            viz.overlay(
                axes[1, 0],
                torch.from_numpy(display),
                cache.gradient_rollout(self.target.value),
                self.opacity.value,
                self.cmap,
            )
            axes[1, 0].set_title("gradient\nrollout", fontsize="small")
        for layer in range(rows):
            for j, head in enumerate(heads, start=1):
                heat = attention_map(cache, layer, head, query)
                viz.overlay(axes[layer, j], torch.from_numpy(display), heat, self.opacity.value, self.cmap)
                if layer == 0:
                    axes[0, j].set_title(f"head {head}" if isinstance(head, int) else head, fontsize="small")
            axes[layer, 1].text(
                -0.15,
                0.5,
                f"layer {layer}",
                transform=axes[layer, 1].transAxes,
                rotation=90,
                va="center",
                ha="right",
                fontsize="small",
            )
        names = self._class_names(cache)
        true = "?" if cache.label is None else names[cache.label]
        token = describe_token(query, cache.num_prefix_tokens, cache.grid_size)
        fig.suptitle(
            f"image {self.image.value}: true {true}, predicted {names[cache.prediction]}; query = {token}",
            fontsize="medium",
        )
        fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.75 / height, wspace=0.25, hspace=0.4)
        return fig
