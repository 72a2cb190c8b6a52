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

from vitnb import maps, plotting
from vitnb import rollout as ro
from vitnb.widgets import PREDICTED, TEXT_FORM, AttentionExplorer, prediction_html, query_box, status_html


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
    assert (explorer.layer.min, explorer.layer.max) == (0, 2) and explorer.layer.description == "block"
    assert [value for _, value in explorer.query.options] == [ro.POOLED, *range(17)]
    assert [name for name, _ in explorer.query.options][:3] == ["pooled: cls", "cls", "patch (0, 0)"]
    assert [value for _, value in explorer.head.options] == [0, 1, "mean", "max", "rollout", "gradient rollout"]
    explorer.image.value = 2
    explorer.layer.value = 1
    explorer.head.value = 1
    explorer.query.value = 6
    x, _, attentions = direct(model, dataset, 2)
    torch.testing.assert_close(explorer.current_map, attentions[1][0, 1, 6, 1:].reshape(4, 4))
    assert "attention of the patch (1, 1) token" in explorer.status.value

    explorer.query.value = 0
    explorer.head.value = "mean"
    torch.testing.assert_close(explorer.current_map, attentions[1][0, :, 0, 1:].mean(0).reshape(4, 4))
    explorer.head.value = "max"
    torch.testing.assert_close(explorer.current_map, attentions[1][0, :, 0, 1:].amax(0).reshape(4, 4))
    explorer.layer.value = 2
    explorer.head.value = "rollout"
    torch.testing.assert_close(explorer.current_map, ro.attention_rollout(attentions, ro.TokenLayout.of(model))[0])
    explorer.head.value = "gradient rollout"
    torch.testing.assert_close(explorer.current_map, ro.gradient_rollout(model, x)[0])
    assert explorer.layer.disabled and explorer.query.disabled and not explorer.target.disabled
    assert all(button.disabled for button in explorer.query_grid.children)
    explorer.target.value = 1
    torch.testing.assert_close(explorer.current_map, ro.gradient_rollout(model, x, 1)[0])
    explorer.head.value = 0
    assert not explorer.layer.disabled and explorer.target.disabled
    assert not any(button.disabled for button in explorer.query_grid.children)


def test_clicking_a_patch_chooses_the_query(model, dataset):
    explorer = AttentionExplorer(model, dataset)
    buttons = explorer.query_grid.children
    assert len(buttons) == 16 and explorer.query.value == ro.POOLED
    assert explorer.pooled_button.button_style == "info" and not any(b.button_style for b in buttons)
    buttons[6].click()  # row 1, column 2: token 1 + 6 after the cls token
    assert explorer.query.value == 7 and buttons[6].tooltip == "patch (1, 2)"
    assert [b.button_style for b in buttons].count("info") == 1 and buttons[6].button_style == "info"
    assert explorer.pooled_button.button_style == ""
    _, _, attentions = direct(model, dataset, 0)
    torch.testing.assert_close(explorer.current_map, attentions[-1][0, :, 7, 1:].mean(0).reshape(4, 4))
    explorer.query.value = 3  # set from code: the grid follows
    assert buttons[2].button_style == "info" and buttons[6].button_style == ""
    explorer.pooled_button.click()
    assert explorer.query.value == ro.POOLED and not any(b.button_style for b in buttons)


def test_colorbar_labels_give_the_range_of_the_map(model, dataset):
    explorer = AttentionExplorer(model, dataset, display_size=64)
    for head in (0, "rollout", "gradient rollout"):
        explorer.head.value = head
        low, high = float(explorer.current_map.min()), float(explorer.current_map.max())
        assert explorer.colorbar_max.value == f"<small>{high:.3g}</small>"
        assert explorer.colorbar_min.value == f"<small>{low:.3g}</small>"
    bar = np.asarray(Image.open(io.BytesIO(explorer.colorbar.value)))
    np.testing.assert_array_equal(bar, plotting.colorbar_strip("inferno", 64, 12))


def test_layout_does_not_depend_on_the_query(model, dataset):
    """Every part whose content changes with the controls has a fixed size, so the layout does not jump."""
    explorer = AttentionExplorer(model, dataset)
    for part in (explorer.layer, explorer.head, explorer.query, explorer.target, explorer.opacity):
        assert part.layout.width == "300px"
    assert explorer.status.layout.height and explorer.status.layout.width and explorer.prediction.layout.height
    assert explorer.colorbar_max.layout.width == explorer.colorbar_min.layout.width == "64px"


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
    assert query_box(explorer.cache, ro.POOLED) is None
    grid = (4, 4)
    expected = plotting.render_overlay(shown, explorer.current_map, 0.2, "inferno", 8, box, grid)
    np.testing.assert_array_equal(picture, expected)
    explorer.opacity.value = 0.0  # the image, the patch grid and the query box only
    plain = np.asarray(Image.open(io.BytesIO(explorer.overlay_image.value)))
    np.testing.assert_array_equal(plain, plotting.render_overlay(shown, None, scale=8, box=box, grid=grid))
    input_picture = np.asarray(Image.open(io.BytesIO(explorer.input_image.value)))
    np.testing.assert_array_equal(input_picture, plotting.render_overlay(shown, None, scale=8))
    explorer.head.value = "gradient rollout"  # no query, so no box
    explorer.opacity.value = 0.05
    explorer.opacity.value = 0.0
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(explorer.overlay_image.value))),
        plotting.render_overlay(shown, None, scale=8, grid=grid),
    )


def test_texts_name_the_right_classes(model, dataset):
    explorer = AttentionExplorer(model, dataset)
    assert [name for name, _ in explorer.target.options] == ["predicted", "a", "b", "c"]
    for i in range(len(dataset)):
        explorer.image.value = i
        cache = explorer.cache
        assert explorer.prediction.value == prediction_html(cache, ["a", "b", "c"])
    cache = maps.forward_cache(model, *dataset[4])  # label 1 = 'b'
    pred = cache.prediction
    prob = float(cache.probabilities[pred])
    colour = "green" if pred == 1 else "crimson"
    assert prediction_html(cache, ["a", "b", "c"]) == (
        f"true: <b>b</b> &nbsp; predicted: <b style='color:{colour}'>{'abc'[pred]}</b> ({prob:.0%})"
    )


def test_status_text_describes_the_map():
    heat = torch.tensor([[0.1, 0.5], [0.25, 0.2]])
    tail = "<br>2x2 patch grid, brightest patch (0, 1), weights 0.1-0.5 (display is min-max scaled)</small>"
    assert status_html(heat, "gradient rollout", 0, "cls", "a", "mean of patches") == (
        "<small>gradient rollout for class <b>a</b> (all blocks, read at: mean of patches)" + tail
    )
    assert status_html(heat, 1, 3, "cls", "a") == "<small>block 3, head 1, attention of the cls token" + tail
    assert status_html(heat, "max", 0, "patch (0, 1)", "a") == (
        "<small>block 0, max over heads, attention of the patch (0, 1) token" + tail
    )
    assert (
        status_html(heat, "rollout", 2, "cls", "a") == "<small>rollout through blocks 0-2, row of the cls token" + tail
    )
    assert status_html(heat, "gradient rollout", 2, "cls", "<b>") == (
        "<small>gradient rollout for class <b>&lt;b&gt;</b> (all blocks, read at: cls)" + tail
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


@pytest.mark.parametrize("class_token", [False, True])
def test_average_pooled_model_shows_what_the_head_reads(dataset, class_token):
    """For global_pool='avg' the pooled query is the mean of the patch rows (not the cls row, if there is one)."""
    model = tiny_vit(**MAPS_VIT, class_token=class_token, global_pool="avg")
    p = int(class_token)
    explorer = AttentionExplorer(model, dataset, head="rollout")
    assert [value for _, value in explorer.head.options] == [0, 1, "mean", "max", "rollout", "gradient rollout"]
    assert explorer.query.options[0] == ("pooled: mean of patches", ro.POOLED)
    assert len(explorer.query.options) == 1 + 16 + p and len(explorer.query_grid.children) == 16
    x, _, attentions = direct(model, dataset, 0)
    layout = ro.TokenLayout.of(model)
    assert layout.global_pool == "avg"
    torch.testing.assert_close(explorer.current_map, ro.attention_rollout(attentions, layout)[0])
    explorer.head.value = "mean"
    torch.testing.assert_close(explorer.current_map, attentions[-1][0, :, p:, p:].mean(0).mean(0).reshape(4, 4))
    explorer.head.value = "gradient rollout"
    torch.testing.assert_close(explorer.current_map, ro.gradient_rollout(model, x)[0])
    assert "read at: mean of patches" in explorer.status.value


def test_static_figure_and_display(model, dataset, monkeypatch):
    explorer = AttentionExplorer(model, dataset, index=4)
    explorer.query.value = 6
    fig = explorer.static_figure()
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * (1 + 2 + 3)  # 3 layers x (input column, 2 heads, mean, max, rollout)
    cache = explorer.cache
    predicted = "abc"[cache.prediction]
    assert fig._suptitle.get_text() == (
        f"image 4: true b, predicted {predicted}; query = patch (1, 1); each map min-max scaled"
    )
    shown = fig.axes[6 + 3].images[1]  # block 1, 'mean'
    heat = torch.from_numpy(np.asarray(shown.norm(shown.get_array()), dtype=np.float32))  # as drawn: min-max scaled
    torch.testing.assert_close(heat, plotting.upsampled_heat(maps.attention_map(cache, 1, "mean", 6), (8, 8)))

    bundle = explorer._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id
    assert bundle["text/plain"] == TEXT_FORM == repr(explorer)  # no 'HBox(children=...' where widgets do not render
    assert "static figure" in TEXT_FORM
    assert "vitnb-attention-explorer" in explorer.widget._dom_classes
