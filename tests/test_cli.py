"""The command line, in-process (`python -m vitnb` calls this same `main`): usage errors, help, a whole run."""

import argparse
import csv
import json
import re
import subprocess
import sys

import pytest
import torch
from helpers import write_image_folder

from vitnb.checkpoint import load_checkpoint, load_model, save_model
from vitnb.cli import main
from vitnb.cli.parser import DATASETS, build_parser
from vitnb.config import parse_vit_changes, preset
from vitnb.data import load_dataset
from vitnb.errors import UsageError
from vitnb.evaluation import predict
from vitnb.model import VisionTransformer

TINY_VIT = ["--model-opt", "depth=1", "--model-opt", "embed_dim=16", "--model-opt", "num_heads=2"]


@pytest.fixture
def files(tmp_path, monkeypatch, toy):
    """Files the bad inputs refer to, in a temporary working folder (data under it too)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VITNB_DATA", str(tmp_path / "data"))
    model = VisionTransformer(preset("cpu", img_size=8, num_classes=3, depth=1, embed_dim=16, num_heads=2))
    save_model("abc.pt", model, dataset=toy(n=6, size=8, classes=3))
    good = (tmp_path / "abc.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "exists.pt").write_bytes(b"precious")
    (tmp_path / "notes.txt").write_text("not an image\n")
    write_image_folder(tmp_path / "pets")
    return tmp_path


# (argv, words the one error line must contain)
BAD_INPUTS = {
    "unknown data set": (["finetune", "--dataset", "mnist"], ["--dataset", "unknown data set 'mnist'", "folder:PATH"]),
    "fractal is pretrain's only": (["finetune", "--dataset", "fractal"], ["unknown data set 'fractal'"]),
    "missing folder": (["finetune", "--dataset", "folder:nowhere"], ["--dataset", "no folder nowhere"]),
    "epochs 0": (["finetune", "--epochs", "0"], ["--epochs", "must be > 0, got 0"]),
    "epochs not a number": (["pretrain", "--epochs", "ten"], ["--epochs", "expected a number > 0, got 'ten'"]),
    "batch size -1": (["finetune", "--batch-size", "-1"], ["--batch-size", "must be > 0, got -1"]),
    "batch size 2.5": (["finetune", "--batch-size", "2.5"], ["--batch-size", "expected an integer > 0"]),
    "lr 0": (["pretrain", "--lr", "0"], ["--lr", "must be > 0, got 0"]),
    "label smoothing 1": (["finetune", "--label-smoothing", "1"], ["--label-smoothing", "must be in [0, 1)"]),
    "ema decay 1": (["finetune", "--ema-decay", "1"], ["--ema-decay", "must be in [0, 1)"]),
    "resume and overwrite": (["finetune", "--resume", "--overwrite"], ["--overwrite", "not allowed with", "--resume"]),
    "existing --out": (["finetune", "--out", "exists.pt"], ["exists.pt exists", "--resume", "--overwrite"]),
    "--out a folder": (["finetune", "--out", "pets"], ["--out pets is a folder", "pets/model.pt"]),
    "--out a run folder": (["finetune", "--out", "m.run"], ["m.run ends in .run", "m.pt"]),
    "existing --out of pretrain": (["pretrain", "--out", "exists.pt"], ["exists.pt exists", "--resume", "--overwrite"]),
    "evaluate without a checkpoint": (["evaluate"], ["the following arguments are required: --checkpoint"]),
    "missing checkpoint": (["evaluate", "--checkpoint", "missing.pt"], ["--checkpoint", "no checkpoint at missing.pt"]),
    "missing checkpoint to finetune": (["finetune", "--checkpoint", "gone.pt"], ["no checkpoint at gone.pt"]),
    "empty checkpoint": (["evaluate", "--checkpoint", "empty.pt"], ["empty.pt is not a vitnb checkpoint", "empty"]),
    "truncated checkpoint": (["evaluate", "--checkpoint", "truncated.pt"], ["truncated.pt is not a vitnb checkpoint"]),
    "foreign checkpoint": (["predict", "notes.txt", "--checkpoint", "notes.txt"], ["notes.txt is not a vitnb"]),
    "classes differ": (
        ["evaluate", "--checkpoint", "abc.pt", "--dataset", "folder:pets"],
        ["3 classes (a, b, c)", "2 classes (cat, dog)"],
    ),
    "unloadable data set of the checkpoint": (["evaluate", "--checkpoint", "abc.pt"], ["abc.pt", "pass --dataset"]),
    "predict a text file": (
        ["predict", "notes.txt", "--checkpoint", "abc.pt"],
        ["notes.txt is not an image file", "PNG or JPEG"],
    ),
    "predict a missing image": (["predict", "gone.png", "--checkpoint", "abc.pt"], ["no image file gone.png"]),
    "top-k 0": (["predict", "x.png", "--checkpoint", "abc.pt", "--top-k", "0"], ["--top-k", "must be > 0"]),
    "model-opt without =": (["finetune", "--model-opt", "depth"], ["--model-opt", "expected KEY=VALUE, got 'depth'"]),
    "model-opt unknown field": (["finetune", "--model-opt", "layers=2"], ["'layers' is not a ViTConfig field"]),
    "model-opt wrong type": (["finetune", "--model-opt", "depth=two"], ["depth takes a value of type int, got 'two'"]),
    "model-opt set by the data": (
        ["finetune", "--dataset", "folder:pets", "--model-opt", "in_chans=1"],
        ["--model-opt in_chans", "set by the data set"],
    ),
    "model-opt with resnet18": (
        ["finetune", "--dataset", "folder:pets", "--model", "resnet18", *TINY_VIT],
        ["--preset and --model-opt build a ViT", "resnet18 takes neither"],
    ),
    "model options with a checkpoint": (
        ["finetune", "--checkpoint", "abc.pt", "--preset", "cpu"],
        ["--checkpoint abc.pt brings its own model, so --preset would be ignored"],
    ),
    "linear probe without a checkpoint": (["finetune", "--mode", "linear"], ["--mode linear", "pass --checkpoint"]),
    "export onto an existing file": (
        ["export", "--checkpoint", "abc.pt", "--out", "exists.pt"],
        ["exists.pt exists", "--overwrite"],
    ),
    "explore onto an existing file": (
        ["explore", "--checkpoint", "abc.pt", "--out", "exists.pt"],
        ["exists.pt exists", "--overwrite"],
    ),
    "explore into a folder": (["explore", "--checkpoint", "abc.pt", "--out", "pets"], ["--out pets is a folder"]),
    "explore no images": (["explore", "--checkpoint", "abc.pt", "--images", "0"], ["--images", "must be > 0"]),
    "explore a data set the checkpoint cannot name": (
        ["explore", "--checkpoint", "abc.pt", "--out", "new.html"],
        ["abc.pt was trained on a data set without a name, which explore cannot load; pass --dataset"],
    ),
    "explore other classes": (
        ["explore", "--checkpoint", "abc.pt", "--dataset", "folder:pets", "--out", "new.html"],
        ["3 classes (a, b, c)", "2 classes (cat, dog)"],
    ),
    "unknown command": (["train-all"], ["invalid choice: 'train-all'"]),
}


@pytest.mark.parametrize("argv, words", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_a_usage_error_is_one_line_and_exit_status_2(files, capsys, argv, words):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    for word in words:
        assert word in err
    assert (files / "exists.pt").read_bytes() == b"precious"


def test_missing_data_is_a_usage_error(files, capsys, monkeypatch):
    """Fashion-MNIST neither on disk nor in Debian's package nor downloadable: one line saying how to get it."""
    import vitnb.data.sources

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(vitnb.data.sources, "DEBIAN_FASHION_MNIST", files / "no-debian-package")
    monkeypatch.setattr(vitnb.data.sources.torchvision.datasets, "FashionMNIST", offline)
    assert main(["fetch-data"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: Fashion-MNIST is not in ")
    assert "apt-get install dataset-fashion-mnist" in err


def test_debug_shows_the_traceback(files):
    with pytest.raises(UsageError, match="no checkpoint at missing.pt"):
        main(["evaluate", "--checkpoint", "missing.pt", "--debug"])
    with pytest.raises(UsageError, match="--epochs: must be > 0"):
        main(["--debug", "finetune", "--epochs", "0"])
    with pytest.raises(UsageError, match="abc.pt was trained on"):
        main(["evaluate", "--checkpoint", "abc.pt", "--debug"])


def test_an_os_error_about_a_file_the_user_named_is_one_line(files, capsys):
    """--out below a file: the run folder cannot be made, which the error line says (file: reason)."""
    argv = ["finetune", "--dataset", "folder:pets", *TINY_VIT, "--model-opt", "patch_size=4", "--out", "notes.txt/m.pt"]
    assert main(argv) == 2
    assert capsys.readouterr().err == "error: notes.txt/m.run: Not a directory\n"
    with pytest.raises(NotADirectoryError):
        main([*argv, "--debug"])


@pytest.mark.parametrize("error", [ValueError("boom"), RuntimeError("boom"), FileNotFoundError("boom")])
def test_any_other_error_is_a_bug_with_its_traceback(files, capsys, monkeypatch, error):
    """Not a usage error: an exception that is neither a UsageError nor an OSError naming a file propagates."""
    import vitnb.checkpoint

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(vitnb.checkpoint, "export_safetensors", broken)
    with pytest.raises(type(error), match="boom"):
        main(["export", "--checkpoint", "abc.pt", "--out", "new.safetensors"])
    assert "error:" not in capsys.readouterr().err


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **commands.choices}


@pytest.mark.parametrize("command", _subcommands())
def test_help_explains_every_option(command, capsys):
    parser = _subcommands()[command]
    undocumented = [a.option_strings or a.dest for a in parser._actions if not a.help]
    assert undocumented == []
    assert main([command, "--help"] if command else ["--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m vitnb {command}".rstrip())


def test_help_lists_only_data_sets_the_command_takes():
    help_of = {name: p.format_help() for name, p in _subcommands().items()}
    assert "fractal" in help_of["pretrain"]
    assert "fractal" not in help_of["finetune"] and "fractal" not in help_of["evaluate"]
    for name in DATASETS:
        assert name in help_of["finetune"]
        assert build_parser().parse_args(["finetune", "--dataset", name]).dataset == name


def test_training_defaults_are_train_configs():
    """Every TrainConfig field is a CLI option whose default is TrainConfig's own."""
    from dataclasses import fields

    from vitnb.config import TrainConfig

    args = build_parser().parse_args(["finetune"])
    defaults = TrainConfig()
    for field in fields(TrainConfig):
        assert getattr(args, field.name) == getattr(defaults, field.name), field.name


def test_model_opts_cast_to_the_field_types():
    assert parse_vit_changes(["depth=2", "mlp_ratio=2", "qkv_bias=false", "stem=conv", "init_values=none"]) == {
        "depth": 2,
        "mlp_ratio": 2.0,
        "qkv_bias": False,
        "stem": "conv",
        "init_values": None,
    }
    assert build_parser().parse_args(["finetune", "--model-opt", "depth=3"]).model_opt == ["depth=3"]


def test_help_imports_no_torch():
    """`--help` answers at once: neither the package nor the parser imports torch."""
    code = "import sys\nfrom vitnb.cli import main\nmain(['finetune', '--help'])\nprint('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.splitlines()[-1] == "False"


def _metrics(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_train_evaluate_predict_export_on_an_image_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VITNB_DATA", str(tmp_path / "data"))
    pets = write_image_folder(tmp_path / "pets")
    run = ["finetune", "--dataset", "folder:pets", "--model-opt", "patch_size=4", *TINY_VIT, "--out", "pets.pt"]
    fast = ["--batch-size", "8", "--precision", "fp32", "--no-progress"]
    assert main([*run, "--epochs", "1", *fast]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^model +vit, [\d,]+ parameters, new ViT \(preset cpu_small\)$", out, re.M)
    assert f"data      folder:{pets}: 16 training images / 16 validation (3x12x12, 2 classes)" in out
    assert "device    cpu, precision fp32" in out
    assert "output    pets.pt (run folder pets.run)" in out

    config = json.loads((tmp_path / "pets.run" / "config.json").read_text())
    assert config["command"] == "python -m vitnb " + " ".join([*run, "--epochs", "1", *fast])
    assert config["model"]["kind"] == "vit" and config["model"]["config"]["depth"] == 1
    assert config["train"]["epochs"] == 1 and config["train"]["batch_size"] == 8
    assert config["data"]["classes"] == ["cat", "dog"] and config["data"]["train_size"] == 16
    assert config["precision"] == "fp32" and config["checkpoint"] == str(tmp_path / "pets.pt")
    (row,) = _metrics(tmp_path / "pets.run" / "metrics.csv")
    history = load_checkpoint(tmp_path / "pets.pt")["history"]
    assert row["epoch"] == "1" and float(row["val_acc"]) == history[0]["val_acc"]

    # a resumed run continues the metrics from the checkpoint's history
    assert main([*run, "--epochs", "2", *fast, "--resume"]) == 0
    rows = _metrics(tmp_path / "pets.run" / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[0] == row

    assert main(["evaluate", "--checkpoint", "pets.pt", "--dataset", "folder:pets", "--precision", "fp32"]) == 0
    val_acc = load_checkpoint(tmp_path / "pets.pt")["history"][-1]["val_acc"]
    assert capsys.readouterr().out.endswith(f"test accuracy {val_acc:.4f} (16 images)\n")

    images = sorted(pets.glob("*/*.png"))  # ImageFolder's order
    assert main(["predict", *map(str, images), "--checkpoint", "pets.pt", "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    model, _ = load_model(tmp_path / "pets.pt")
    expected = predict(model, load_dataset("folder:pets", img_size=12), precision="fp32")
    for i, path in enumerate(images):
        name, first, second = lines[3 * i : 3 * i + 3]
        assert name == str(path)
        (p1, c1), (p2, c2) = first.split(), second.split()
        assert c1 == ["cat", "dog"][expected[i]] and {c1, c2} == {"cat", "dog"}
        assert float(p1[:-1]) >= float(p2[:-1]) and abs(float(p1[:-1]) + float(p2[:-1]) - 100) < 0.02

    probe = ["finetune", "--checkpoint", "pets.pt", "--mode", "linear", "--dataset", "folder:pets", "--out", "probe.pt"]
    assert main([*probe, "--epochs", "1", *fast]) == 0
    head = 16 * 2 + 2  # embed_dim x classes + bias
    assert f"parameters ({head} trainable), linear probe of pets.pt" in capsys.readouterr().out

    assert main(["export", "--checkpoint", "pets.pt"]) == 0
    exported, ckpt = load_model(tmp_path / "pets.safetensors")
    assert ckpt["data"]["classes"] == ["cat", "dog"]
    for key, value in model.state_dict().items():
        assert torch.equal(exported.state_dict()[key], value)


@pytest.mark.slow
def test_pretrain_on_fractals_without_progress_bars(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VITNB_DATA", str(tmp_path / "data"))
    corpus = ["--fractal-classes", "3", "--fractal-per-class", "8", "--img-size", "12", "--model-opt", "patch_size=4"]
    fast = ["--epochs", "1", "--batch-size", "8", "--precision", "fp32", "--no-progress"]
    assert main(["pretrain", *corpus, *TINY_VIT, *fast, "--out", "pre.pt"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # neither the corpus nor the training drew a bar
    assert "data      fractal: 24 training images, no validation set (1x12x12, 3 classes)" in out
    assert load_checkpoint(tmp_path / "pre.pt")["data"]["classes"] == ["ifs0", "ifs1", "ifs2"]
