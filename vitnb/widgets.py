"""The attention explorer: ipywidgets controls over `vitnb.rollout`'s maps and `vitnb.plotting`'s pictures.

    explorer = AttentionExplorer(model, dataset)   # dataset[i] -> (normalised (C, H, W), label)
    explorer                                       # in a notebook: the widget
    explorer.static_figure()                       # every map for the current image, as a matplotlib figure

The map shown is `rollout.attention_map(cache, layer, head, query, target)` (its docstring says what
each head option shows), over a `rollout.forward_cache` kept per image; the picture is a
`plotting.render_overlay` PNG, a few milliseconds per update, with no matplotlib figure.
"""

from __future__ import annotations

import functools
import html

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure
from torch import nn

from .plotting import plot_attention_maps, render_overlay, to_png
from .rollout import ForwardCache, Head, attention_map, describe_token, forward_cache, head_options, token_patch

PREDICTED = -1  # the class control's value for "the predicted class"


def _captioned(image: widgets.Image, caption: str) -> widgets.VBox:
    return widgets.VBox([widgets.HTML(f"<center><small>{caption}</small></center>"), image])


def prediction_html(cache: ForwardCache, class_names: list[str]) -> str:
    """'true: <b>cat</b>   predicted: <b>dog</b> (87%)', the prediction green when right, crimson when wrong."""
    pred, prob = cache.prediction, float(cache.probabilities[cache.prediction])
    colour = "green" if cache.label in (None, pred) else "crimson"
    true = "?" if cache.label is None else html.escape(class_names[cache.label])
    predicted = f"<b style='color:{colour}'>{html.escape(class_names[pred])}</b> ({prob:.0%})"
    return f"true: <b>{true}</b> &nbsp; predicted: {predicted}"


def status_html(heat: torch.Tensor, head: Head, layer: int, token: str, class_name: str) -> str:
    """What the map `heat` (h, w) of `attention_map(cache, layer, head, ...)` shows, and its range."""
    if head == "gradient rollout":
        what = f"gradient rollout for class <b>{html.escape(class_name)}</b> (all layers, cls token)"
    elif head == "rollout":
        what = f"rollout through layers 0-{layer}, row of the {token} token"
    else:
        heads = f"head {head}" if isinstance(head, int) else f"{head} over heads"
        what = f"layer {layer}, {heads}, attention of the {token} token"
    (h, w), brightest = heat.shape, divmod(int(heat.argmax()), heat.shape[1])
    return (
        f"<small>{what}<br>{h}x{w} patch grid, brightest patch {brightest}, "
        f"weights {float(heat.min()):.3g}-{float(heat.max()):.3g} (display is min-max scaled)</small>"
    )


def query_box(cache: ForwardCache, query: int) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) in image pixels of the patch of token `query`; None for a prefix token."""
    patch = token_patch(query, **cache.layout)
    if patch is None:
        return None
    ph, pw = (s // g for s, g in zip(cache.image.shape[-2:], cache.grid_size, strict=True))
    return patch[0] * ph, patch[1] * pw, ph, pw


class AttentionExplorer:
    """ipywidgets explorer of a ViT's attention over the images of `dataset`.

    Controls: `image` (index into the data set), `layer` (0 = first block), `head` (a head, 'mean', 'max',
    'rollout', 'gradient rollout'), `query` (token index: 0 = cls, then patches row by row), `target` (class
    explained by the gradient rollout; PREDICTED: the predicted class), `opacity`. Setting any control's
    `.value` updates `current_map` (the raw (h, w) map, = `attention_map(...)`), the picture
    (`overlay_image.value`, PNG bytes) and the texts. One forward pass per image is cached (the `max_cached`
    most recent images), so only the image control runs the model, and a gradient rollout once per class.
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
        self.model, self.dataset, self.cmap = model, dataset, cmap
        self.forward_calls = 0  # forward passes run by `forward_cache` (gradient rollouts not counted)
        self.current_map: torch.Tensor | None = None
        self._cache = functools.lru_cache(maxsize=max_cached)(self._forward)  # image index -> ForwardCache
        cache = self._cache(index)  # one pass also tells us depth, heads, tokens and classes
        classes, n = list(getattr(dataset, "classes", None) or []), cache.logits.shape[-1]
        self.class_names = classes if len(classes) == n else [str(i) for i in range(n)]
        img_h, img_w = cache.image.shape[-2:]
        self.scale = max(1, round(display_size / max(img_h, img_w)))
        depth, heads = cache.num_layers, head_options(cache.num_heads, num_prefix_tokens=cache.num_prefix_tokens)
        self.image = widgets.BoundedIntText(value=index, min=0, max=len(dataset) - 1, description="image")
        self.image.layout.width = "180px"
        self.layer = widgets.IntSlider(value=layer % depth, min=0, max=depth - 1, description="layer")
        labels = [(f"head {h}" if isinstance(h, int) else h, h) for h in heads]
        self.head = widgets.Dropdown(options=labels, value=head, description="head")
        self.query = widgets.IntSlider(value=query, min=0, max=cache.num_tokens - 1, description="query")
        self.query_label = widgets.Label()
        targets = [("predicted", PREDICTED), *((name, i) for i, name in enumerate(self.class_names))]
        self.target = widgets.Dropdown(options=targets, value=PREDICTED, description="class")
        self.opacity = widgets.FloatSlider(value=opacity, min=0.0, max=1.0, step=0.05, description="opacity")
        self.input_image, self.overlay_image = (
            widgets.Image(format="png", width=f"{img_w * self.scale}px", layout=widgets.Layout(margin="2px"))
            for _ in range(2)
        )
        self.prediction, self.status = widgets.HTML(), widgets.HTML()
        for control in (self.layer, self.head, self.query, self.target):
            control.observe(self._on_map_change, names="value")
        self.image.observe(self._on_image_change, names="value")
        self.opacity.observe(self._render, names="value")
        query_row = widgets.HBox([self.query, self.query_label])
        controls = widgets.VBox([self.image, self.layer, self.head, query_row, self.target, self.opacity])
        pictures = widgets.HBox([_captioned(self.input_image, "input"), _captioned(self.overlay_image, "attention")])
        self.widget = widgets.HBox([controls, widgets.VBox([pictures, self.prediction, self.status])])
        self.widget.add_class("vitnb-attention-explorer")
        self._on_image_change()

    def _forward(self, index: int) -> ForwardCache:
        self.forward_calls += 1
        return forward_cache(self.model, *self.dataset[index])

    @property
    def cache(self) -> ForwardCache:
        """The forward cache of the image shown now."""
        return self._cache(self.image.value)

    @property
    def shown_image(self) -> torch.Tensor:
        """The current image (C, H, W) as drawn: denormalised when the data set can (`dataset.denormalize`)."""
        denormalize = getattr(self.dataset, "denormalize", None)
        return denormalize(self.cache.image[None])[0] if denormalize else self.cache.image

    def _target(self) -> int:
        """The class the gradient rollout explains."""
        return self.cache.prediction if self.target.value == PREDICTED else self.target.value

    def _on_image_change(self, change=None) -> None:
        self.input_image.value = to_png(render_overlay(self.shown_image, scale=self.scale))
        self.prediction.value = prediction_html(self.cache, self.class_names)
        self._on_map_change()

    def _on_map_change(self, change=None) -> None:
        cache, head, layer = self.cache, self.head.value, self.layer.value
        gradient = head == "gradient rollout"
        self.layer.disabled = self.query.disabled = gradient  # ignored by the gradient rollout
        self.target.disabled = not gradient
        self.current_map = attention_map(cache, layer, head, self.query.value, self._target())
        self.query_label.value = token = describe_token(self.query.value, **cache.layout)
        self.status.value = status_html(self.current_map, head, layer, token, self.class_names[self._target()])
        self._render()

    def _render(self, change=None) -> None:
        gradient = self.head.value == "gradient rollout"  # no query: no outline
        box = None if gradient else query_box(self.cache, self.query.value)
        picture = render_overlay(self.shown_image, self.current_map, self.opacity.value, self.cmap, self.scale, box)
        self.overlay_image.value = to_png(picture)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def static_figure(self, dpi: int = 80, cell_size: float = 1.3) -> Figure:
        """Every map the explorer offers for the current image, query and class, as one matplotlib figure
        (`plotting.plot_attention_maps`), for readers where widgets do not render."""
        cache, names, query = self.cache, self.class_names, self.query.value
        true = "?" if cache.label is None else names[cache.label]
        token = describe_token(query, **cache.layout)
        title = f"image {self.image.value}: true {true}, predicted {names[cache.prediction]}; query = {token}"
        view = dict(query=query, target=self._target(), alpha=self.opacity.value, cmap=self.cmap, title=title)
        return plot_attention_maps(cache, self.shown_image, **view, dpi=dpi, cell_size=cell_size)
