"""The explorer as a page (`vitnb.explorer`, `python -m vitnb explore`): the numbers read back out of the HTML are
`vitnb.maps.attention_map`'s within the stated quantisation error, the page is self-contained, and the command works
on a checkpoint of a folder data set. The page's script is tested in a browser: tests/test_explorer_browser.py."""

import base64
import json
import re

import numpy as np
import pytest
import torch
from helpers import MAPS_VIT, tiny_vit, write_image_folder

from vitnb import maps
from vitnb.checkpoint import load_checkpoint, load_model, save_model
from vitnb.cli import main
from vitnb.cli.parser import build_parser
from vitnb.cnn import resnet_small
from vitnb.data import ImageTensorDataset, load_dataset, preprocess
from vitnb.errors import UsageError
from vitnb.explorer import PageMaps, explorer_page, pick_images, write_explorer

STATED_ERROR = 1 / 510  # the docstring's bound, relative to each map's range


def decode(page: str) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """The page's payload and its maps, read out of the HTML without vitnb's own reader: (payload, values (M, h*w)
    as the script decodes them, low (M,), high (M,))."""
    found = re.search(r'<script type="application/json" id="vitnb-data">(.*?)</script>', page, re.S)
    payload = json.loads(found.group(1))
    h, w = payload["grid"]
    codes = np.frombuffer(base64.b64decode(payload["codes"]), np.uint8).reshape(-1, h * w).astype(np.float64)
    low, high = (np.frombuffer(base64.b64decode(payload[key]), "<f4").astype(np.float64) for key in ("low", "high"))
    return payload, low[:, None] + codes * (high - low)[:, None] / 255, low, high


def settings(cache: maps.ForwardCache):
    """Every (kind, block, head, query, target) of one image, in the order the page stores its maps."""
    heads = [*range(cache.num_heads), "mean", "max"]
    queries = maps.query_options(cache.num_tokens)
    for block in range(cache.num_layers):
        for head in heads:
            for query in queries:
                yield block, head, query, None
    for block in range(cache.num_layers):
        for query in queries:
            yield block, "rollout", query, None
    for target in range(cache.logits.shape[-1]):
        yield 0, "gradient rollout", maps.POOLED, target


def assert_page_holds_the_maps(page: str, model, dataset, indices) -> None:
    """Every map of the page equals `attention_map`'s within the stated error; its range is exact."""
    payload, values, low, high = decode(page)
    assert [im["index"] for im in payload["images"]] == indices
    row = 0
    for n, i in enumerate(indices):
        cache = maps.forward_cache(model, *dataset[i])
        record = payload["images"][n]
        assert record["prediction"] == cache.prediction and record["label"] == cache.label
        assert np.allclose(record["probabilities"], cache.probabilities.tolist(), atol=5e-5)
        for block, head, query, target in settings(cache):
            want = maps.attention_map(cache, block, head, query, target).flatten().double().numpy()
            span = want.max() - want.min()
            assert (low[row], high[row]) == (want.min(), want.max())  # float32, kept exactly
            assert np.abs(values[row] - want).max() <= STATED_ERROR * span * (1 + 1e-6) + 1e-12
            row += 1
    assert row == len(values)


@pytest.fixture
def dataset(toy):
    return toy(n=9, size=8, classes=3)


@pytest.mark.parametrize(("class_token", "pool"), [(True, "token"), (False, "avg")])
def test_the_page_holds_every_map_within_the_stated_error(dataset, class_token, pool):
    model = tiny_vit(**MAPS_VIT, class_token=class_token, global_pool=pool)
    page = explorer_page(model, dataset, images=4)
    assert_page_holds_the_maps(page.html, model, dataset, [0, 1, 2, 3])
    payload = decode(page.html)[0]
    assert 0 < page.error <= STATED_ERROR and payload["error"] == page.error
    expected = dict(blocks=3, heads=2, tokens=16 + class_token, queries=17 + class_token, prefix=int(class_token))
    assert {key: payload[key] for key in expected} == expected
    assert payload["pooled"] == ("cls" if pool == "token" else "mean of patches")
    assert payload["classes"] == ["a", "b", "c"] and payload["grid"] == [4, 4] and payload["image_size"] == [8, 8]


def test_page_maps_reads_what_the_script_reads(dataset):
    """`PageMaps.map` (vitnb's own reader, the order the script uses) against the decoded rows in storage order."""
    model = tiny_vit(**MAPS_VIT)
    page = explorer_page(model, dataset, [4, 7])
    payload, values, _, _ = decode(page.html)
    read = PageMaps.of(page.html)
    cache = maps.forward_cache(model, *dataset[7])
    for row, (block, head, query, target) in enumerate(settings(cache), start=read.per_image):
        kind = {"rollout": "rollout", "gradient rollout": "gradient"}.get(head, "raw")
        where = dict(block=block, query=0 if query == maps.POOLED else 1 + query, target=target or 0)
        where["head"] = {"mean": 2, "max": 3, "rollout": 0, "gradient rollout": 0}.get(head, head)
        np.testing.assert_array_equal(read.map(1, kind, **where).flatten(), values[row])


def test_the_images_are_drawn_as_the_notebook_draws_them(dataset):
    from vitnb.plotting.render import render_overlay

    page = explorer_page(tiny_vit(**MAPS_VIT), dataset, [5])
    payload = decode(page.html)[0]
    pixels = np.frombuffer(base64.b64decode(payload["pixels"]), np.uint8).reshape(1, 8, 8, 3)
    np.testing.assert_array_equal(pixels[0], render_overlay(dataset.denormalize(dataset[5][0][None])[0]))
    assert payload["scale"] == 32  # 252 px / 8 px, rounded


def test_pick_images_covers_the_classes_first(dataset):
    assert pick_images(dataset, 5) == [0, 1, 2, 3, 4]  # labels 0, 1, 2, 0, 1, ...
    skewed = ImageTensorDataset(
        torch.zeros(6, 1, 8, 8, dtype=torch.uint8), torch.tensor([2, 2, 2, 0, 0, 1]), ["a", "b", "c"], (0.5,), (0.5,)
    )
    assert pick_images(skewed, 4) == [3, 5, 0, 4]  # first of a, b, c; then the second a
    assert pick_images(skewed, 10) == [3, 5, 0, 4, 1, 2]
    assert pick_images([(torch.zeros(1, 8, 8), 0)] * 3, 2) == [0, 1]  # no labels: the first images


def test_the_page_is_self_contained_and_names_cannot_break_it(dataset):
    """No address of anything outside the file; class names are data, even '</script>'."""
    dataset.classes = ["</script><script>alert(1)</script>", "b & c", "{{data}}"]
    page = explorer_page(tiny_vit(**MAPS_VIT), dataset, [0], title="<b>mine</b>")
    text = page.html
    assert "http" not in text.replace('http-equiv="Content-Security-Policy"', "")
    assert not re.search(r"\b(src|href)\s*=", text)  # no scripts, styles or images loaded from anywhere
    assert "default-src 'none'" in text  # and the browser is told to refuse any request
    assert text.count("<script") == 2 and text.count("</script>") == 2
    assert "<title>&lt;b&gt;mine&lt;/b&gt;</title>" in text
    assert decode(text)[0]["classes"] == dataset.classes


def test_the_page_saves_and_shows_inline(dataset, tmp_path):
    page = write_explorer(tmp_path / "sub" / "page.html", tiny_vit(**MAPS_VIT), dataset, images=2)
    assert (tmp_path / "sub" / "page.html").read_text("utf-8") == page.html
    assert (tmp_path / "sub" / "page.html").stat().st_mode & 0o777 == 0o644  # for sharing, not private
    assert page.size == len(page.html.encode()) and page.images == 2
    inline = page._repr_html_()
    assert inline.startswith('<iframe srcdoc="&lt;!DOCTYPE html&gt;') and "&quot;" in inline
    assert "docs/explorer.html" in inline and "2 images" in repr(page)


def test_only_a_vit_has_an_explorer(dataset):
    with pytest.raises(UsageError, match="the explorer shows a ViT's attention; got a ResNet"):
        explorer_page(resnet_small(in_chans=1, num_classes=3, img_size=8), dataset)


def test_explore_on_a_folder_data_set_checkpoint(tmp_path, monkeypatch, capsys):
    """A user's own images: an ImageFolder, a ViT saved with it, `python -m vitnb explore`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VITNB_DATA", str(tmp_path / "data"))
    pets = write_image_folder(tmp_path / "pets")  # cat, dog: 8 RGB 12 px images each
    train = load_dataset(f"folder:{pets}", img_size=12)
    model = tiny_vit(size=12, classes=2, in_chans=3, lively=True)  # 4 px patches: a 3x3 grid
    save_model("pets.pt", model, dataset=train)

    assert main(["explore", "--checkpoint", "pets.pt", "--out", "pets.html", "--images", "3"]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(
        r"wrote pets\.html \(0\.\d\d MB\): 3 test images of folder:pets, every map stored to within 0\.\d\d% of its "
        r"range; open it in a browser\n",
        out,
    )
    page = (tmp_path / "pets.html").read_text("utf-8")
    assert str(tmp_path) not in page  # the folder's name only, not where it lies on this machine
    payload = decode(page)[0]
    assert payload["source"] == "folder:pets test" and payload["classes"] == ["cat", "dog"]
    assert payload["title"] == "Attention explorer: pets.pt on folder:pets"
    model, ckpt = load_model("pets.pt")
    shown = preprocess(train.images, ckpt["data"], train.labels, train.classes)  # as the command prepares them
    assert_page_holds_the_maps(page, model, shown, [0, 8, 1])  # the first cat, the first dog, the second cat

    # --overwrite replaces it; --dataset names the folder explicitly
    argv = ["explore", "--checkpoint", "pets.pt", "--out", "pets.html", "--images", "1", "--dataset", "folder:pets"]
    assert main([*argv, "--overwrite"]) == 0
    assert [im["index"] for im in decode((tmp_path / "pets.html").read_text())[0]["images"]] == [0]


def test_explore_refuses_a_checkpoint_without_attention(tmp_path, monkeypatch, capsys, dataset):
    monkeypatch.chdir(tmp_path)
    save_model("cnn.pt", resnet_small(in_chans=1, num_classes=3, img_size=8), dataset=dataset)
    assert load_checkpoint("cnn.pt")["kind"] == "resnet"
    assert main(["explore", "--checkpoint", "cnn.pt"]) == 2
    err = capsys.readouterr().err
    assert err == "error: cnn.pt holds a resnet model; the explorer shows a ViT's attention maps\n"
    assert not (tmp_path / "explorer.html").exists()


def test_explore_defaults():
    args = build_parser().parse_args(["explore", "--checkpoint", __file__])
    assert (str(args.out), args.images, args.dataset, args.split, args.overwrite) == (
        "explorer.html",
        12,
        None,
        "test",
        False,
    )
