"""The attention explorer without a browser: its controls drive `vitnb.rollout`'s maps, its picture is
`plotting.render_overlay`'s, its texts name the right classes, and it runs the model once per image."""

import io

import ipywidgets
import numpy as np
import pytest
import torch
from helpers import MAPS_VIT, direct, tiny_vit
from matplotlib.figure import Figure
from PIL import Image

from vitnb import plotting
from vitnb import rollout as ro
from vitnb.widgets import PREDICTED, AttentionExplorer, prediction_html, query_box, status_html


class CountingModel:
    """Counts calls of `model.forward` (the model itself is patched, so gradient_rollout's calls count too)."""

    def __init__(self, model):
        self.calls = 0
        inner = model.forward

        def forward(*args, **kwargs):
            self.calls += 1
            return inner(*args, **kwargs)

        model.forward = forward


@pytest.fixture
def model():
    return tiny_vit(**MAPS_VIT)


@pytest.fixture
def dataset(toy):
    return toy(n=5, size=8, classes=3)  # classes 'a', 'b', 'c'


def test_controls_drive_the_map(model, dataset):
    explorer = AttentionExplorer(model, dataset, display_size=64)
    assert isinstance(explorer.widget, ipywidgets.Box)
    assert (explorer.layer.min, explorer.layer.max, explorer.query.max) == (0, 2, 16)
    assert [value for _, value in explorer.head.options] == [0, 1, "mean", "max", "rollout", "gradient rollout"]
    explorer.image.value = 2
    explorer.layer.value = 1
    explorer.head.value = 1
    explorer.query.value = 6
    x, _, attentions = direct(model, dataset, 2)
    torch.testing.assert_close(explorer.current_map, attentions[1][0, 1, 6, 1:].reshape(4, 4))
    assert explorer.query_label.value == "patch (1, 1)"

    explorer.query.value = 0
    explorer.head.value = "mean"
    torch.testing.assert_close(explorer.current_map, attentions[1][0, :, 0, 1:].mean(0).reshape(4, 4))
    explorer.head.value = "max"
    torch.testing.assert_close(explorer.current_map, attentions[1][0, :, 0, 1:].amax(0).reshape(4, 4))
    explorer.layer.value = 2
    explorer.head.value = "rollout"
    layout = ro.token_layout(model)
    torch.testing.assert_close(explorer.current_map, ro.attention_rollout(attentions, **layout)[0])
    explorer.head.value = "gradient rollout"
    torch.testing.assert_close(explorer.current_map, ro.gradient_rollout(model, x)[0])
    assert explorer.layer.disabled and explorer.query.disabled and not explorer.target.disabled
    explorer.target.value = 1
    torch.testing.assert_close(explorer.current_map, ro.gradient_rollout(model, x, 1)[0])
    explorer.head.value = 0
    assert not explorer.layer.disabled and explorer.target.disabled


def test_picture_follows_the_controls(model, dataset):
    explorer = AttentionExplorer(model, dataset, display_size=64)
    assert explorer.scale == 8
    seen = {explorer.overlay_image.value}
    for control, value in [(explorer.layer, 0), (explorer.head, 1), (explorer.query, 3), (explorer.opacity, 0.2)]:
        control.value = value
        assert explorer.overlay_image.value not in seen, control.description
        seen.add(explorer.overlay_image.value)
    picture = np.asarray(Image.open(io.BytesIO(explorer.overlay_image.value)))
    assert picture.shape == (64, 64, 3)
    shown = dataset.denormalize(dataset[0][0][None])[0]
    box = (0, 4, 2, 2)  # query 3 = patch (0, 2) of 2x2-pixel patches
    assert query_box(explorer.cache, 3) == box and query_box(explorer.cache, 0) is None
    np.testing.assert_array_equal(picture, plotting.render_overlay(shown, explorer.current_map, 0.2, "inferno", 8, box))
    explorer.opacity.value = 0.0  # the image and the query box only
    plain = np.asarray(Image.open(io.BytesIO(explorer.overlay_image.value)))
    np.testing.assert_array_equal(plain, plotting.render_overlay(shown, None, scale=8, box=box))
    without_box = np.asarray(Image.open(io.BytesIO(explorer.input_image.value)))
    np.testing.assert_array_equal(without_box, plotting.render_overlay(shown, None, scale=8))
    explorer.head.value = "gradient rollout"  # no query, so no box
    explorer.opacity.value = 0.05
    explorer.opacity.value = 0.0
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(explorer.overlay_image.value))), without_box)


def test_texts_name_the_right_classes(model, dataset):
    explorer = AttentionExplorer(model, dataset)
    assert [name for name, _ in explorer.target.options] == ["predicted", "a", "b", "c"]
    for i in range(len(dataset)):
        explorer.image.value = i
        cache = explorer.cache
        assert explorer.prediction.value == prediction_html(cache, ["a", "b", "c"])
    cache = ro.forward_cache(model, *dataset[4])  # label 1 = 'b'
    pred = cache.prediction
    prob = float(cache.probabilities[pred])
    colour = "green" if pred == 1 else "crimson"
    assert prediction_html(cache, ["a", "b", "c"]) == (
        f"true: <b>b</b> &nbsp; predicted: <b style='color:{colour}'>{'abc'[pred]}</b> ({prob:.0%})"
    )


def test_status_text_describes_the_map():
    heat = torch.tensor([[0.1, 0.5], [0.25, 0.2]])
    tail = "<br>2x2 patch grid, brightest patch (0, 1), weights 0.1-0.5 (display is min-max scaled)</small>"
    assert status_html(heat, 1, 3, "cls", "a") == "<small>layer 3, head 1, attention of the cls token" + tail
    assert status_html(heat, "max", 0, "patch (0, 1)", "a") == (
        "<small>layer 0, max over heads, attention of the patch (0, 1) token" + tail
    )
    assert (
        status_html(heat, "rollout", 2, "cls", "a") == "<small>rollout through layers 0-2, row of the cls token" + tail
    )
    assert status_html(heat, "gradient rollout", 2, "cls", "<b>") == (
        "<small>gradient rollout for class <b>&lt;b&gt;</b> (all layers, cls token)" + tail
    )


def test_forward_pass_is_cached(model, dataset):
    counter = CountingModel(model)
    explorer = AttentionExplorer(model, dataset, max_cached=3)
    assert counter.calls == 1
    for value in range(3):
        explorer.layer.value = value
        explorer.head.value = [0, 1, "mean", "max", "rollout"][value]
        explorer.query.value = value + 4
        explorer.opacity.value = 0.1 * value
    assert counter.calls == 1  # no control but the image runs the model
    explorer.head.value = "gradient rollout"
    assert counter.calls == 2  # one forward + backward for the predicted class ...
    explorer.head.value = "mean"
    explorer.head.value = "gradient rollout"
    assert counter.calls == 2  # ... cached
    other = (explorer.cache.prediction + 1) % 3
    explorer.target.value = other
    explorer.target.value = PREDICTED
    explorer.target.value = other
    assert counter.calls == 3  # another class costs one more pass, once
    explorer.image.value = 1  # new image: its forward pass, and its gradient rollout (head is still that)
    explorer.image.value = 0  # back: both cached
    assert counter.calls == 5
    explorer.head.value = "mean"
    for i in (1, 2, 3, 1):  # an LRU of 3 images: 0 drops out, 1 stays
        explorer.image.value = i
    assert explorer.forward_calls == 4  # images 0, 1, 2, 3
    explorer.image.value = 2
    assert explorer.forward_calls == 4  # still cached
    explorer.image.value = 0
    assert explorer.forward_calls == 5  # evicted, so run again


def test_no_cls_token_offers_no_gradient_rollout(dataset):
    explorer = AttentionExplorer(tiny_vit(**MAPS_VIT, class_token=False, global_pool="avg"), dataset)
    assert [value for _, value in explorer.head.options] == [0, 1, "mean", "max", "rollout"]
    assert (explorer.query.max, explorer.query_label.value) == (15, "patch (0, 0)")


def test_static_figure_and_display(model, dataset, monkeypatch):
    explorer = AttentionExplorer(model, dataset, index=4)
    explorer.query.value = 6
    fig = explorer.static_figure()
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * (1 + 2 + 3)  # 3 layers x (input column, 2 heads, mean, max, rollout)
    cache = explorer.cache
    predicted = "abc"[cache.prediction]
    assert fig._suptitle.get_text() == f"image 4: true b, predicted {predicted}; query = patch (1, 1)"
    heat = torch.from_numpy(np.asarray(fig.axes[6 + 3].images[1].get_array()))  # layer 1, 'mean'
    torch.testing.assert_close(heat, plotting.upsampled_heat(ro.attention_map(cache, 1, "mean", 6), (8, 8)))

    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    explorer._ipython_display_()
    assert shown == [explorer.widget]
    assert "vitnb-attention-explorer" in explorer.widget._dom_classes
