"""The attention explorer without a browser: its maps equal `vitnb.viz`, its texts name the right classes,
and it runs the model once per image."""

import io

import ipywidgets
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from vitnb import VisionTransformer, ViTConfig, viz
from vitnb.data import ImageTensorDataset
from vitnb.widgets import (
    PREDICTED,
    AttentionExplorer,
    attention_map,
    describe_token,
    forward_cache,
    head_options,
    render_overlay,
    to_png,
)

CLASSES = ["cat", "dog", "owl"]


def tiny_model(**changes) -> VisionTransformer:
    """8x8 grayscale, 2x2 patches (a 4x4 grid, N = 17 with cls), 3 blocks of 2 heads, 3 classes."""
    cfg = ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=3, embed_dim=16, depth=3, num_heads=2)
    torch.manual_seed(0)
    model = VisionTransformer(cfg.replace(**changes)).eval()
    with torch.no_grad():  # livelier weights than the 0.02-std init, so maps and predictions differ
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def tiny_dataset(n: int = 5) -> ImageTensorDataset:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % len(CLASSES)
    return ImageTensorDataset(images, labels, CLASSES, (0.5,), (0.25,))


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
    return tiny_model()


@pytest.fixture
def dataset():
    return tiny_dataset()


def direct(model, dataset, i):
    """Attentions and logits for image i, computed straight from the model."""
    x = dataset[i][0][None]
    with torch.no_grad():
        logits, attentions = model(x, return_attention=True)
    return x, logits[0], attentions


# --- the plain functions -------------------------------------------------------------------------------
def test_raw_maps_equal_cls_attention(model, dataset):
    cache = forward_cache(model, *dataset[3])
    _, _, attentions = direct(model, dataset, 3)
    for head in (0, 1, "mean", "max"):
        for layer in (0, 2, -1):
            for query in (0, 5):
                expected = viz.cls_attention(attentions, layer, head, 1, (4, 4), query)[0]
                got = attention_map(cache, layer, head, query)
                assert got.shape == (4, 4)
                torch.testing.assert_close(got, expected)


def test_rollout_at_last_layer_equals_attention_rollout(model, dataset):
    cache = forward_cache(model, *dataset[2])
    _, _, attentions = direct(model, dataset, 2)
    torch.testing.assert_close(attention_map(cache, -1, "rollout"), viz.attention_rollout(attentions, 1, (4, 4))[0])
    torch.testing.assert_close(attention_map(cache, 2, "rollout"), viz.attention_rollout(attentions, 1, (4, 4))[0])


def test_rollout_uses_layers_up_to_the_chosen_one(model, dataset):
    cache = forward_cache(model, *dataset[1])
    _, _, attentions = direct(model, dataset, 1)
    for layer in (0, 1):
        for query in (0, 9):
            expected = viz.rollout_matrix(attentions[: layer + 1], 1)[0, query, 1:].reshape(4, 4)
            torch.testing.assert_close(attention_map(cache, layer, "rollout", query), expected)


def test_gradient_rollout_equals_viz_and_ignores_layer_and_query(model, dataset):
    cache = forward_cache(model, *dataset[4])
    x, logits, _ = direct(model, dataset, 4)
    predicted = viz.gradient_rollout(model, x)[0]
    torch.testing.assert_close(attention_map(cache, -1, "gradient rollout"), predicted)
    torch.testing.assert_close(attention_map(cache, 0, "gradient rollout", query=7), predicted)
    other = (int(logits.argmax()) + 1) % 3
    torch.testing.assert_close(
        attention_map(cache, 0, "gradient rollout", target=other), viz.gradient_rollout(model, x, other)[0]
    )


def test_cache_holds_logits_prediction_and_label(model, dataset):
    cache = forward_cache(model, *dataset[3])
    _, logits, attentions = direct(model, dataset, 3)
    torch.testing.assert_close(cache.logits, logits)
    assert cache.prediction == int(logits.argmax())
    assert cache.label == 0  # 3 % 3
    assert (cache.num_layers, cache.num_heads, cache.num_tokens) == (3, 2, 17)
    assert len(cache.attentions) == len(attentions)


def test_forward_cache_restores_train_mode(dataset):
    model = tiny_model().train()
    forward_cache(model, *dataset[0])
    assert all(m.training for m in model.modules())


def test_bad_arguments_are_rejected(model, dataset):
    cache = forward_cache(model, *dataset[0])
    for bad in (dict(head="min"), dict(head=2), dict(head=True), dict(layer=3), dict(query=17)):
        args = dict(layer=0, head="mean", query=0) | bad
        with pytest.raises(ValueError):
            attention_map(cache, **args)
    with pytest.raises(ValueError):
        attention_map(cache, 0, "gradient rollout", target=3)


def test_no_cls_token_offers_no_gradient_rollout(dataset):
    model = tiny_model(class_token=False, global_pool="avg")
    assert head_options(2, 0) == [0, 1, "mean", "max", "rollout"]
    cache = forward_cache(model, *dataset[0])
    x, _, attentions = direct(model, dataset, 0)
    assert cache.num_tokens == 16
    torch.testing.assert_close(
        attention_map(cache, 1, "rollout", query=5), viz.rollout_matrix(attentions[:2], 0)[0, 5].reshape(4, 4)
    )
    with pytest.raises(ValueError):
        attention_map(cache, 0, "gradient rollout")
    explorer = AttentionExplorer(model, dataset)
    assert "gradient rollout" not in [value for _, value in explorer.head.options]
    assert describe_token(0, 0, (4, 4)) == "patch (0, 0)"


def test_describe_token():
    assert describe_token(0, 1, (7, 7)) == "cls"
    assert describe_token(1, 1, (7, 7)) == "patch (0, 0)"
    assert describe_token(9, 1, (7, 7)) == "patch (1, 1)"
    assert describe_token(49, 1, (7, 7)) == "patch (6, 6)"


def test_render_overlay_blends_and_scales():
    rgb = np.full((4, 4, 3), 0.5, dtype=np.float32)
    plain = render_overlay(rgb, None, scale=3)
    assert plain.shape == (12, 12, 3) and plain.dtype == np.uint8
    assert (plain == 128).all()
    assert (render_overlay(rgb, torch.rand(2, 2), alpha=0.0) == 128).all()  # opacity 0: the image only
    heat = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    full = render_overlay(rgb, heat, alpha=1.0, cmap="gray")  # gray colormap: the min-max scaled map itself
    assert full[0, 3, 0] == 255 and full[3, 0, 0] == 0
    boxed = render_overlay(rgb, None, scale=4, box=(2, 2, 2, 2))
    assert tuple(boxed[8, 8]) == (0, 255, 255) and tuple(boxed[0, 0]) == (128, 128, 128)
    png = Image.open(io.BytesIO(to_png(boxed)))
    assert png.size == (16, 16)
    np.testing.assert_array_equal(np.asarray(png), boxed)


# --- the widget ----------------------------------------------------------------------------------------
def test_controls_drive_the_map(model, dataset):
    explorer = AttentionExplorer(model, dataset, display_size=64)
    assert isinstance(explorer.widget, ipywidgets.Box)
    assert (explorer.layer.min, explorer.layer.max, explorer.query.max) == (0, 2, 16)
    explorer.image.value = 2
    explorer.layer.value = 1
    explorer.head.value = 1
    explorer.query.value = 6
    x, _, attentions = direct(model, dataset, 2)
    expected = viz.cls_attention(attentions, 1, 1, 1, (4, 4), query=6)[0]
    torch.testing.assert_close(explorer.current_map, expected)
    torch.testing.assert_close(explorer.current_map, attention_map(explorer.cache, 1, 1, 6))
    assert explorer.query_label.value == "patch (1, 1)"

    explorer.query.value = 0
    explorer.head.value = "mean"
    torch.testing.assert_close(explorer.current_map, viz.cls_attention(attentions, 1, "mean", 1, (4, 4))[0])
    explorer.head.value = "max"
    torch.testing.assert_close(explorer.current_map, viz.cls_attention(attentions, 1, "max", 1, (4, 4))[0])
    explorer.layer.value = 2
    explorer.head.value = "rollout"
    torch.testing.assert_close(explorer.current_map, viz.attention_rollout(attentions, 1, (4, 4))[0])
    explorer.head.value = "gradient rollout"
    torch.testing.assert_close(explorer.current_map, viz.gradient_rollout(model, x)[0])
    assert explorer.layer.disabled and explorer.query.disabled and not explorer.target.disabled
    explorer.target.value = 1
    torch.testing.assert_close(explorer.current_map, viz.gradient_rollout(model, x, 1)[0])
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
    expected = render_overlay(
        explorer._rgb, explorer.current_map, 0.2, "inferno", 8, box=(0, 4, 2, 2)
    )  # query 3 = patch (0, 2)
    np.testing.assert_array_equal(picture, expected)
    explorer.opacity.value = 0.0
    plain = np.asarray(Image.open(io.BytesIO(explorer.overlay_image.value)))
    without_box = np.asarray(Image.open(io.BytesIO(explorer.input_image.value)))
    assert (plain != without_box).any(axis=-1).sum() > 0  # only the query box differs
    assert (plain != without_box).any(axis=-1).sum() < 64 * 64 // 4


def test_prediction_text_names_the_right_classes(model, dataset):
    explorer = AttentionExplorer(model, dataset)
    for i in range(len(dataset)):
        explorer.image.value = i
        _, logits, _ = direct(model, dataset, i)
        text = explorer.prediction.value
        assert f"true: <b>{CLASSES[dataset[i][1]]}</b>" in text
        assert f">{CLASSES[int(logits.argmax())]}</b>" in text
    assert "cat" in [name for name, _ in explorer.target.options]


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
    explorer.target.value = 2
    explorer.target.value = PREDICTED
    explorer.target.value = 2
    assert counter.calls <= 3  # a second class costs one more pass (none if it is the predicted one)
    calls = counter.calls
    explorer.image.value = 1  # new image: its forward pass, and its gradient rollout (head is still that)
    explorer.image.value = 0  # back: both cached
    assert counter.calls == calls + 2
    explorer.head.value = "mean"
    for i in (1, 2, 3, 1):  # an LRU of 3 images: 0 drops out, 1 stays
        explorer.image.value = i
    assert explorer.forward_calls == 4  # images 0, 1, 2, 3
    assert list(explorer._caches) == [2, 3, 1]


def test_static_figure_and_display(model, dataset, capsys):
    explorer = AttentionExplorer(model, dataset)
    fig = explorer.static_figure()
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * (1 + 2 + 3)  # 3 layers x (input column, 2 heads, mean, max, rollout)
    assert "predicted" in fig._suptitle.get_text()
    explorer._ipython_display_()  # outside a notebook this prints the widget's text form
    assert "HBox" in capsys.readouterr().out
