"""The attention explorer: ipywidgets controls over `vitnb.maps`' maps and `vitnb.plotting.render`'s pictures.

    explorer = AttentionExplorer(model, dataset)   # dataset[i] -> (normalised (C, H, W), label)
    explorer                                       # in a notebook: the widget
    explorer.static_figure()                       # every map for the current image, as a matplotlib figure

The map shown is `maps.attention_map(cache, layer, head, query, target)` (its docstring says what
each head option shows), over a `maps.forward_cache` kept per image; the picture is a
`plotting.render_overlay` PNG with the patch grid drawn in, composed in numpy without a matplotlib
figure so that the picture keeps up with a slider, beside a colorbar labelled with the map's range. The
query is chosen from a list or by clicking a patch of the small grid of buttons under the controls. Where
widgets do not render (a notebook opened without a kernel), the explorer's text says so and points to
`static_figure`.
"""

from __future__ import annotations

import functools
import html

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure
from torch import nn

from .maps import ForwardCache, Head, attention_map, forward_cache, head_options
from .plotting.attention import plot_attention_maps
from .plotting.render import colorbar_strip, render_overlay, to_png
from .rollout import POOLED, Query

__all__ = ["PREDICTED", "TEXT_FORM", "AttentionExplorer", "prediction_html", "query_box", "status_html"]

PREDICTED = -1  # the class control's value for "the predicted class"
TEXT_FORM = (
    "AttentionExplorer: an interactive widget (image, block, head, query, class, opacity), shown only with a "
    "running kernel. Run the notebook to use it; the static figure below shows every map of the same image."
)


def _captioned(image: widgets.Image, caption: str) -> widgets.VBox:
    return widgets.VBox([widgets.HTML(f"<center><small>{caption}</small></center>"), image])


def prediction_html(cache: ForwardCache, class_names: list[str]) -> str:
    """'true: <b>cat</b>   predicted: <b>dog</b> (87%)', the prediction green when right, crimson when wrong."""
    pred, prob = cache.prediction, float(cache.probabilities[cache.prediction])
    colour = "green" if cache.label in (None, pred) else "crimson"
    true = "?" if cache.label is None else html.escape(class_names[cache.label])
    predicted = f"<b style='color:{colour}'>{html.escape(class_names[pred])}</b> ({prob:.0%})"
    return f"true: <b>{true}</b> &nbsp; predicted: {predicted}"


def status_html(heat: torch.Tensor, head: Head, layer: int, token: str, class_name: str, pooled: str = "cls") -> str:
    """What the map `heat` (h, w) of `attention_map(cache, layer, head, ...)` shows, and its range.

    `token` names the query (`TokenLayout.describe_token`), `pooled` what the head reads ('cls' or 'mean of patches').
    """
    if head == "gradient rollout":
        what = f"gradient rollout for class <b>{html.escape(class_name)}</b> (all blocks, read at: {pooled})"
    elif head == "rollout":
        what = f"rollout through blocks 0-{layer}, row of the {token} token"
    else:
        heads = f"head {head}" if isinstance(head, int) else f"{head} over heads"
        what = f"block {layer}, {heads}, attention of the {token} token"
    (h, w), brightest = heat.shape, divmod(int(heat.argmax()), heat.shape[1])
    return (
        f"<small>{what}<br>{h}x{w} patch grid, brightest patch {brightest}, "
        f"weights {float(heat.min()):.3g}-{float(heat.max()):.3g} (display is min-max scaled)</small>"
    )


def query_box(cache: ForwardCache, query: Query) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) in image pixels of the patch of token `query`; None for a prefix token or POOLED."""
    patch = cache.layout.token_patch(query)
    if patch is None:
        return None
    ph, pw = (s // g for s, g in zip(cache.image.shape[-2:], cache.layout.grid_size, strict=True))
    return patch[0] * ph, patch[1] * pw, ph, pw


class AttentionExplorer:
    """ipywidgets explorer of a ViT's attention over the images of `dataset`.

    Controls: `image` (index into the data set), `layer` (the slider labelled 'block', 0 = first), `head`
    (a head, 'mean', 'max', 'rollout', 'gradient rollout'), `query` (POOLED: the token the head reads, or a
    token index: the cls token if any, then the patches row by row; also set by clicking a button of
    `query_grid`, one per patch, or `pooled_button`), `target` (class explained by the gradient rollout; PREDICTED: the
    predicted class), `opacity`. Setting any control's `.value` updates `current_map` (the raw (h, w)
    map, = `attention_map(...)`), the picture (`overlay_image.value`, PNG bytes, min-max scaled, patch
    grid drawn), the colorbar's labels (the map's range) and the texts. Every text and picture has a
    fixed size, so the layout stays put as the controls change. One forward pass per image is cached
    (the `max_cached` most recent images), so only the image control runs the model, and a gradient
    rollout once per class.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset,
        index: int = 0,
        layer: int = -1,
        head: Head = "mean",
        query: Query = POOLED,
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
        self.pooled_name = cache.layout.describe_token(POOLED)  # 'cls' or 'mean of patches'
        self._make_controls(cache, index, layer, head, query, opacity)
        self._make_pictures(img_h, img_w)
        for control in (self.layer, self.head, self.query, self.target):
            control.observe(self._on_map_change, names="value")
        self.image.observe(self._on_image_change, names="value")
        self.opacity.observe(self._render, names="value")
        self.query.observe(self._mark_query, names="value")
        self.widget = self._layout()
        self._mark_query()
        self._on_image_change()

    def _make_controls(
        self, cache: ForwardCache, index: int, layer: int, head: Head, query: Query, opacity: float
    ) -> None:
        """The controls: image, block (`layer`), head, query, class, opacity, and the query picker."""
        depth, heads = cache.num_layers, head_options(cache.num_heads)
        wide = widgets.Layout(width="300px")
        self.image = widgets.BoundedIntText(value=index, min=0, max=len(self.dataset) - 1, description="image")
        self.image.layout.width = "180px"
        self.layer = widgets.IntSlider(value=layer % depth, min=0, max=depth - 1, description="block", layout=wide)
        labels = [(f"head {h}" if isinstance(h, int) else h, h) for h in heads]
        self.head = widgets.Dropdown(options=labels, value=head, description="head", layout=wide)
        tokens = [(f"pooled: {self.pooled_name}", POOLED)]
        tokens += [(cache.layout.describe_token(q), q) for q in range(cache.num_tokens)]
        self.query = widgets.Dropdown(options=tokens, value=query, description="query", layout=wide)
        targets = [("predicted", PREDICTED), *((name, i) for i, name in enumerate(self.class_names))]
        self.target = widgets.Dropdown(options=targets, value=PREDICTED, description="class", layout=wide)
        self.opacity = widgets.FloatSlider(
            value=opacity, min=0.0, max=1.0, step=0.05, description="opacity", layout=wide
        )
        self.query_grid, self.pooled_button = self._query_picker(cache)

    def _make_pictures(self, img_h: int, img_w: int) -> None:
        """The pictures (input, attention), the colorbar with its two labels, and the texts; all of fixed size."""
        self.input_image, self.overlay_image = (
            widgets.Image(format="png", width=f"{img_w * self.scale}px", layout=widgets.Layout(margin="2px"))
            for _ in range(2)
        )
        bar_height = img_h * self.scale
        self.colorbar = widgets.Image(
            value=to_png(colorbar_strip(self.cmap, bar_height, 12)),
            format="png",
            width="12px",
            height=f"{bar_height}px",
        )
        self.colorbar_max, self.colorbar_min = (widgets.HTML(layout=widgets.Layout(width="64px")) for _ in range(2))
        self.prediction = widgets.HTML(layout=widgets.Layout(height="1.6em"))
        self.status = widgets.HTML(layout=widgets.Layout(height="4.5em", width=f"{2 * img_w * self.scale + 80}px"))

    def _layout(self) -> widgets.HBox:
        """The controls and the picker on the left; the pictures, colorbar, prediction and status on the right."""
        picker = widgets.VBox(
            [widgets.HTML("<small>query: click a patch, or</small>"), self.pooled_button, self.query_grid],
            layout=widgets.Layout(margin="6px 0 0 90px"),
        )
        controls = widgets.VBox([self.image, self.layer, self.head, self.query, self.target, self.opacity, picker])
        bar = widgets.VBox(
            [self.colorbar_max, widgets.HBox([self.colorbar]), self.colorbar_min],
            layout=widgets.Layout(justify_content="space-between", margin="22px 0 0 4px"),
        )
        pictures = widgets.HBox(
            [_captioned(self.input_image, "input"), _captioned(self.overlay_image, "attention"), bar]
        )
        widget = widgets.HBox([controls, widgets.VBox([pictures, self.prediction, self.status])])
        widget.add_class("vitnb-attention-explorer")
        self.overlay_image.add_class("vitnb-overlay")  # names for the browser test
        self.query_grid.add_class("vitnb-query-grid")
        return widget

    def _query_picker(self, cache: ForwardCache) -> tuple[widgets.GridBox, widgets.Button]:
        """A grid of small buttons, one per patch in its place, and a button for the pooled query."""
        (gh, gw), p = cache.layout.grid_size, cache.layout.num_prefix_tokens
        buttons = []
        for token in range(p, p + gh * gw):
            button = widgets.Button(
                tooltip=cache.layout.describe_token(token),
                layout=widgets.Layout(width="18px", height="18px", padding="0", margin="0"),
            )
            button.on_click(functools.partial(self._choose_query, token))
            buttons.append(button)
        grid = widgets.GridBox(
            buttons, layout=widgets.Layout(grid_template_columns=f"repeat({gw}, 18px)", grid_gap="1px", width="auto")
        )
        pooled = widgets.Button(
            description=self.pooled_name,
            tooltip="pooled: the token the head reads",
            layout=widgets.Layout(width=f"{max(19 * gw, 120)}px", margin="2px 0", padding="0"),
        )
        pooled.on_click(functools.partial(self._choose_query, POOLED))
        return grid, pooled

    def _choose_query(self, query: Query, button=None) -> None:
        self.query.value = query

    def _mark_query(self, change=None) -> None:
        """Highlight the picker's button of the current query."""
        p = self.cache.layout.num_prefix_tokens
        for token, button in enumerate(self.query_grid.children, start=p):
            style = "info" if token == self.query.value else ""
            if button.button_style != style:
                button.button_style = style
        self.pooled_button.button_style = "info" if self.query.value == POOLED else ""

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
        if self.layer.disabled != gradient:  # layer and query are ignored by the gradient rollout
            self.layer.disabled = self.query.disabled = self.pooled_button.disabled = gradient
            for button in self.query_grid.children:
                button.disabled = gradient
        self.target.disabled = not gradient
        self.current_map = attention_map(cache, layer, head, self.query.value, self._target())
        token = cache.layout.describe_token(self.query.value)
        target = self.class_names[self._target()]
        self.status.value = status_html(self.current_map, head, layer, token, target, self.pooled_name)
        low, high = float(self.current_map.min()), float(self.current_map.max())
        self.colorbar_max.value, self.colorbar_min.value = (f"<small>{v:.3g}</small>" for v in (high, low))
        self._render()

    def _render(self, change=None) -> None:
        gradient = self.head.value == "gradient rollout"  # no query: no outline
        box = None if gradient else query_box(self.cache, self.query.value)
        grid = self.cache.layout.grid_size
        picture = render_overlay(
            self.shown_image, self.current_map, self.opacity.value, self.cmap, self.scale, box, grid
        )
        self.overlay_image.value = to_png(picture)

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The widget for a live kernel; for anything else (an untrusted notebook, a terminal), `TEXT_FORM`."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = TEXT_FORM
        return bundle

    def __repr__(self) -> str:
        return TEXT_FORM

    def static_figure(self, dpi: int = 80, cell_size: float = 1.3) -> Figure:
        """Every map the explorer offers for the current image, query and class, as one matplotlib figure
        (`plotting.plot_attention_maps`), for readers where widgets do not render."""
        cache, names, query = self.cache, self.class_names, self.query.value
        true = "?" if cache.label is None else names[cache.label]
        token = cache.layout.describe_token(query)
        title = (
            f"image {self.image.value}: true {true}, predicted {names[cache.prediction]}; query = {token}; "
            "each map min-max scaled"
        )
        view = dict(query=query, target=self._target(), alpha=self.opacity.value, cmap=self.cmap, title=title)
        return plot_attention_maps(cache, self.shown_image, **view, dpi=dpi, cell_size=cell_size)
