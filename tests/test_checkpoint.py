"""Checkpoints: one format for every model kind, atomic writes, safetensors export, clear errors on bad files."""

import dataclasses
import datetime
import json

import pytest
import torch
from helpers import tiny_vit

import vitnb
from vitnb import VisionTransformer, ViTConfig
from vitnb.checkpoint import (
    check_compatible,
    export_safetensors,
    load_checkpoint,
    load_model,
    save_model,
)
from vitnb.cnn import resnet18, resnet_small
from vitnb.config import TrainConfig
from vitnb.errors import UsageError
from vitnb.io import atomic_write, save_tensors
from vitnb.mae import MAEConfig, MaskedAutoencoder
from vitnb.train import fit

EXPECTED = r"is not a vitnb checkpoint .*expected a file written by vitnb.save_model / fit\(checkpoint=...\)"


@pytest.fixture
def saved(tmp_path, toy):
    """A tiny ViT saved with the toy data set's meta: (path, model, data set)."""
    data = dataclasses.replace(toy(16), name="toy")
    model = tiny_vit()
    return save_model(tmp_path / "m.pt", model, data), model, data


def test_model_round_trip_with_weights_only(tmp_path):
    cfg = ViTConfig(
        img_size=16, patch_size=4, in_chans=1, num_classes=3, embed_dim=16, depth=1, num_heads=2, pos_embed="sincos"
    )
    model = VisionTransformer(cfg).eval()
    path = save_model(tmp_path / "m.pt", model, epoch=3)
    raw = torch.load(path, weights_only=True)
    assert (raw["format"], raw["version"], raw["kind"], raw["epoch"], raw["data"]) == ("vitnb", 1, "vit", 3, None)
    loaded, ckpt = load_model(path)
    x = torch.randn(2, 1, 16, 16)
    assert loaded.cfg == cfg and not loaded.training and torch.equal(loaded(x), model(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind


def test_checkpoint_records_the_data_set(saved):
    path, _, data = saved
    assert load_checkpoint(path)["data"] == {
        "name": "toy",
        "classes": ["a", "b", "c", "d"],
        "image_shape": [1, 8, 8],
        "mean": [0.3],
        "std": [0.3],
    }


def test_resnet18_uses_the_same_format(tmp_path, toy):
    model = resnet18(in_chans=1, num_classes=4).eval()
    path = save_model(tmp_path / "r.pt", model, toy(8))
    loaded, ckpt = load_model(path)
    x = torch.randn(2, 1, 8, 8)
    assert ckpt["kind"] == "resnet" and type(loaded).__name__ == "ResNet"
    assert torch.equal(loaded(x), model(x))


def test_a_small_resnet_round_trips_its_widths_and_depths(tmp_path, toy):
    model = resnet_small(in_chans=1, num_classes=4).eval()
    loaded, ckpt = load_model(save_model(tmp_path / "s.pt", model, toy(8)))
    assert (
        (loaded.cfg.widths, loaded.cfg.depths)
        == ((16, 32, 64, 128), (1, 1, 1, 1))
        == (ckpt["config"]["widths"], ckpt["config"]["depths"])
    )
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(loaded(x), model(x))


def test_a_resnet18_checkpoint_of_the_older_kind_name_loads(tmp_path):
    model = resnet18(num_classes=3).eval()
    torch.save(
        {
            "format": "vitnb",
            "version": 1,
            "kind": "resnet18",
            "config": {"in_chans": 1, "num_classes": 3},
            "model": model.state_dict(),
        },
        tmp_path / "r18.pt",
    )
    loaded, ckpt = load_model(tmp_path / "r18.pt")
    x = torch.randn(1, 1, 8, 8)
    assert ckpt["kind"] == "resnet" and loaded.cfg.widths == (64, 128, 256, 512)
    assert torch.equal(loaded(x), model(x))


def test_checkpoints_without_a_format_name_still_load(tmp_path):
    model = tiny_vit()
    torch.save({"config": model.cfg.to_dict(), "model": model.state_dict(), "epoch": 2}, tmp_path / "old.pt")
    loaded, ckpt = load_model(tmp_path / "old.pt")
    assert (ckpt["kind"], ckpt["version"], ckpt["data"], ckpt["epoch"]) == ("vit", 0, None, 2)
    x = torch.randn(1, 1, 8, 8)
    assert torch.equal(loaded(x), model(x))


def test_load_model_replaces_the_head_and_resamples_positions(saved):
    path, model, _ = saved
    loaded, _ = load_model(path, num_classes=3, img_size=12)
    assert loaded.head.out_features == 3 and loaded.cfg.num_classes == 3 and loaded.cfg.img_size == 12
    assert loaded.pos_embed.shape == (1, 1 + 9, 24)  # cls + a 3x3 grid of 4-pixel patches
    assert torch.equal(loaded.blocks[0].attn.qkv.weight, model.blocks[0].attn.qkv.weight)


def test_safetensors_export_round_trip(saved, tmp_path):
    path, model, data = saved
    out = export_safetensors(path, tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(out, framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["config"]) == model.cfg.to_dict() and json.loads(meta["data"])["classes"] == data.classes
    loaded, ckpt = load_model(out)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(loaded(x), model(x)) and ckpt["data"] == load_checkpoint(path)["data"]
    check_compatible(ckpt, data)


def test_a_run_with_a_weight_average_loads_and_exports_the_average(tmp_path, toy, one_thread):
    model = tiny_vit()
    cfg = TrainConfig(epochs=1, batch_size=16, ema_decay=0.9, precision="fp32", augment=False)
    fit(model, toy(), None, cfg, checkpoint=tmp_path / "run.pt", progress=False, verbose=False)
    ckpt = load_checkpoint(tmp_path / "run.pt")
    raw = VisionTransformer(model.cfg)
    raw.load_state_dict(ckpt["raw_model"])
    x = torch.randn(2, 1, 8, 8)
    for path in (tmp_path / "run.pt", export_safetensors(tmp_path / "run.pt", tmp_path / "run.safetensors")):
        loaded, _ = load_model(path)
        assert torch.equal(loaded(x), model(x))  # the average fit ended with
        assert not torch.equal(loaded(x), raw.eval()(x))
    from safetensors import safe_open

    with safe_open(tmp_path / "run.safetensors", framework="pt") as f:
        assert set(f.keys()) == set(model.state_dict())  # the average alone, not the trained weights


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = save_tensors(tmp_path / "c.pt", {"step": torch.tensor(1)})

    def fail(f):
        f.write(b"half a checkpoint")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(path, fail)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_check_compatible_accepts_the_training_data(saved, toy):
    path, _, data = saved
    check_compatible(load_checkpoint(path), toy(4))  # same classes and images, another split


def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    return path


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "the file is empty"),
        (b"hello, I am a text file\n", "torch.load could not read it"),
        ({"weights": torch.zeros(3)}, "bare state_dict"),
        ({"epoch": 3, "notes": "x"}, r"keys \['epoch', 'notes'\], no 'config' and 'model'"),
        ([1, 2, 3], "it holds a list, not a dict"),
        ({"format": "other", "config": {}, "model": {}}, "its format is 'other'"),
        ({"config": {}, "model": {}, "kind": "vgg"}, "unknown model kind 'vgg'"),
        ({"config": {}, "model": {}, "when": datetime.date(2024, 1, 1)}, "pickled Python objects, not only tensors"),
    ],
    ids=["empty", "text", "state-dict", "foreign-dict", "list", "other-format", "unknown-kind", "pickled-object"],
)
def test_foreign_files_are_refused_with_the_file_name(tmp_path, content, match):
    path = _write(tmp_path / "bad.pt", content)
    with pytest.raises(ValueError, match=EXPECTED) as err:
        load_model(path)
    assert str(path) in str(err.value)
    assert err.match(match)


def test_truncated_and_missing_files(saved, tmp_path):
    path = saved[0]
    cut = tmp_path / "cut.pt"
    for keep in (0.01, 0.5, 0.999):  # a copy or download stopped early
        cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
        with pytest.raises(ValueError, match=f"{cut} is not a vitnb checkpoint .*the archive is truncated or damaged"):
            load_checkpoint(cut)
    with pytest.raises(FileNotFoundError, match=f"no checkpoint at {tmp_path / 'missing.pt'}"):
        load_model(tmp_path / "missing.pt")
    cut_st = tmp_path / "cut.safetensors"
    cut_st.write_bytes(export_safetensors(path, tmp_path / "m.safetensors").read_bytes()[:200])
    with pytest.raises(ValueError, match=f"{cut_st} is not a vitnb checkpoint .*safetensors could not read it"):
        load_model(cut_st)


def test_config_that_does_not_fit_the_weights_is_refused(tmp_path):
    model = tiny_vit()
    torch.save({"config": {**model.cfg.to_dict(), "depth": 3}, "model": model.state_dict()}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="config and weights do not make a vit.*Missing key"):
        load_model(tmp_path / "x.pt")


def test_newer_format_versions_ask_for_an_upgrade(saved):
    path = saved[0]
    torch.save({**torch.load(path, weights_only=True), "version": 99}, path)
    with pytest.raises(ValueError, match="version 99, newer than 1: upgrade vitnb"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(classes=5), r"trained on toy with 4 classes \(a, b, c, d\), but the data set has 5 classes"),
        (dict(in_chans=3), "1-channel images, but the data set has 3 channels"),
        (dict(size=12), "8x8 images, but the data set has 12x12; load the data with img_size=8"),
    ],
    ids=["classes", "channels", "size"],
)
def test_check_compatible_names_what_differs(saved, toy, change, match):
    with pytest.raises(ValueError, match=match):
        check_compatible(load_checkpoint(saved[0]), toy(20, **change))


def test_check_compatible_compares_class_names_not_only_counts(saved, toy):
    other = dataclasses.replace(toy(8), classes=["w", "x", "y", "z"], name="letters")
    with pytest.raises(ValueError, match=r"\(a, b, c, d\), but the data set letters has 4 classes \(w, x, y, z\)"):
        check_compatible(load_checkpoint(saved[0]), other)


def test_check_compatible_counts_classes_for_old_checkpoints(tmp_path, toy):
    model = tiny_vit(classes=12)
    torch.save({"config": model.cfg.to_dict(), "model": model.state_dict()}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="with 12 classes, but the data set has 4.*num_classes=4"):
        check_compatible(load_checkpoint(tmp_path / "old.pt"), toy(8))


def test_other_modules_are_refused_by_save_model(tmp_path):
    with pytest.raises(ValueError, match="not a Linear.*torch.save"):
        save_model(tmp_path / "x.pt", torch.nn.Linear(2, 2))
    assert not (tmp_path / "x.pt").exists()


def test_the_checkpoint_api_is_exported():
    assert {"save_model", "load_model", "load_checkpoint", "export_safetensors"} <= set(vitnb.__all__)
    assert vitnb.load_model is load_model


@pytest.mark.parametrize("kind", ["vit", "resnet", "pixels"])
def test_every_model_kind_offers_the_interface_and_round_trips(kind, tmp_path):
    from vitnb.checkpoint import KINDS
    from vitnb.cnn import PixelClassifier
    from vitnb.interface import ImageClassifier

    model = {"vit": lambda img_size: tiny_vit(img_size), "resnet": resnet_small, "pixels": PixelClassifier}[kind](
        img_size=8
    )
    assert isinstance(model, ImageClassifier) and KINDS[model.kind] is type(model)
    x = torch.randn(2, 1, 8, 8)
    loaded, ckpt = load_model(vitnb.save_model(tmp_path / "m.pt", model))
    assert ckpt["kind"] == kind and loaded.cfg == model.cfg
    assert torch.equal(loaded(x), model.eval()(x))


def test_a_masked_autoencoder_round_trips_and_is_not_a_classifier(tmp_path, toy):
    from vitnb.checkpoint import KINDS, build_model, model_kind
    from vitnb.interface import ImageClassifier

    encoder = tiny_vit(class_token=False, global_pool="avg", pos_embed="sincos").cfg
    mae = MaskedAutoencoder(MAEConfig(encoder, decoder_dim=16, decoder_depth=1, mask_ratio=0.5, norm_pix_loss=False))
    assert model_kind(mae) == "mae" and KINDS["mae"] is MaskedAutoencoder and not isinstance(mae, ImageClassifier)
    path = save_model(tmp_path / "mae.pt", mae, toy(8))
    ckpt = load_checkpoint(path)
    assert ckpt["config"]["encoder"] == encoder.to_dict() and ckpt["config"]["mask_ratio"] == 0.5
    assert build_model(ckpt).cfg == mae.cfg
    loaded, _ = load_model(path)
    x, masks = torch.randn(2, 1, 8, 8), torch.Generator().manual_seed(0)
    assert torch.equal(loaded(x, masks)[1], mae.eval()(x, torch.Generator().manual_seed(0))[1])
    assert torch.equal(load_model(export_safetensors(path, tmp_path / "mae.safetensors"))[0].mask_token, mae.mask_token)
    with pytest.raises(UsageError, match="not an image classifier.*load it without them"):
        load_model(path, num_classes=3)
    with pytest.raises(UsageError, match="holds a mae model, which predicts no classes"):
        check_compatible(ckpt, toy(8))
