"""The trainer: determinism, exact resume, NaN guard, clear errors, finetuning surgery, CNN, CLI."""

import math

import pytest
import torch

from vitnb import VisionTransformer, preset
from vitnb.checkpoint import load_checkpoint, save_model
from vitnb.cli import main
from vitnb.cnn import resnet18
from vitnb.data import ImageTensorDataset
from vitnb.finetune import (
    freeze_all_but_head,
    from_pretrained,
    label_subset,
    load_trained,
    results_table,
    summarize,
)
from vitnb.train import TrainConfig, evaluate, fit, resolve_precision, warmup_cosine

FAST = dict(batch_size=16, lr=3e-3, warmup_epochs=0.5, precision="fp32", eval_batch_size=64, augment=False)


def toy_data(n=64, size=8, classes=4, seed=0) -> ImageTensorDataset:
    """Learnable toy images: class c lights pixel row c of every 4-pixel band, over noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 60, (n, 1, size, size), generator=g)
    for i, c in enumerate(labels.tolist()):
        images[i, :, c::4] += 180
    names = [chr(ord("a") + c) for c in range(classes)]
    return ImageTensorDataset(images.clamp(0, 255).to(torch.uint8), labels, names, (0.3,), (0.3,))


def toy_vit(size=8, classes=4):
    torch.manual_seed(0)
    return VisionTransformer(preset("cpu", img_size=size, num_classes=classes, embed_dim=24, depth=2, num_heads=2))


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def metrics(history):
    return [(r["train_loss"], r["train_acc"], r["val_acc"], r["lr"]) for r in history]


def test_schedule_warms_up_then_decays_to_the_floor():
    lrs = [warmup_cosine(s, 100, 10, 1.0, 0.01) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(0.01, abs=1e-3)


def test_training_learns_and_is_deterministic(tmp_path):
    train, val = toy_data(), toy_data(32, seed=1)
    runs = []
    for _ in range(2):
        model = toy_vit()
        history = fit(model, train, val, TrainConfig(epochs=3, **FAST), progress=False, verbose=False)
        runs.append((weights(model), metrics(history)))
    assert_same(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert runs[0][1][-1][2] > 0.5  # val accuracy well above chance (0.25)
    assert set(history[0]) >= {"epoch", "train_loss", "train_acc", "val_acc", "lr", "time", "epoch_time"}
    fig = history.plot("toy")
    assert len(fig.axes) == 3


def test_resume_after_a_kill_ends_where_an_uninterrupted_run_ends(tmp_path):
    train, val = toy_data(), toy_data(32, seed=1)
    cfg = TrainConfig(epochs=3, **FAST)
    model = toy_vit()
    full = fit(model, train, val, cfg, checkpoint=tmp_path / "a.pt", progress=False, verbose=False)
    expected = weights(model)

    class Killed(Exception):
        pass

    def kill_after_epoch_1(epoch, record, model):
        if epoch == 1:
            raise Killed

    model = toy_vit()
    with pytest.raises(Killed):
        fit(
            model,
            train,
            val,
            cfg,
            checkpoint=tmp_path / "b.pt",
            callbacks=[kill_after_epoch_1],
            progress=False,
            verbose=False,
        )
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 1
    model = toy_vit()  # a fresh process would start from a fresh model
    torch.manual_seed(123)  # and from a different global RNG state
    resumed = fit(model, train, val, cfg, checkpoint=tmp_path / "b.pt", resume=True, progress=False, verbose=False)
    assert_same(expected, weights(model))
    assert metrics(resumed) == metrics(full)

    # max_epochs_this_run stops early; resuming twice more finishes the same way
    model = toy_vit()
    for _ in range(3):
        fit(
            model,
            train,
            val,
            cfg,
            checkpoint=tmp_path / "c.pt",
            resume=True,
            max_epochs_this_run=1,
            progress=False,
            verbose=False,
        )
    assert_same(expected, weights(model))


def test_checkpoint_is_plain_and_rebuilds_the_model(tmp_path):
    model = toy_vit()
    fit(
        model,
        toy_data(),
        None,
        TrainConfig(epochs=1, **FAST),
        checkpoint=tmp_path / "m.pt",
        progress=False,
        verbose=False,
    )
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    assert ckpt.keys() >= {
        "model",
        "optimizer",
        "scheduler",
        "epoch",
        "history",
        "rng",
        "loader",
        "config",
        "train_config",
        "kind",
    }
    again, _ = load_trained(tmp_path / "m.pt")
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(again(x), model.eval()(x))


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(FloatingPointError, match=r"epoch 1, step \d+.*lower the learning rate"):
        fit(
            toy_vit(),
            toy_data(),
            None,
            TrainConfig(epochs=2, **{**FAST, "lr": 1e10, "grad_clip": 0}),
            progress=False,
            verbose=False,
        )

    def poison(epoch, record, model):
        model.head.bias.data.fill_(float("nan"))

    path = tmp_path / "good.pt"
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 1\b.*untouched"):
        fit(
            toy_vit(),
            toy_data(),
            None,
            TrainConfig(epochs=3, **FAST),
            checkpoint=path,
            callbacks=[poison],
            progress=False,
            verbose=False,
        )
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


@pytest.mark.parametrize(
    "data, match",
    [
        (toy_data(size=16), r"shape \(1, 16, 16\).*expects \(1, 8, 8\)"),
        (toy_data(classes=6), r"labels up to 5.*4 outputs.*reset_classifier"),
        (toy_data().subset(torch.tensor([], dtype=torch.long)), "empty"),
    ],
)
def test_bad_data_is_refused_before_training(tmp_path, data, match):
    with pytest.raises(ValueError, match=match):
        fit(toy_vit(), data, None, TrainConfig(epochs=1, **FAST), checkpoint=tmp_path / "x.pt", progress=False)
    assert not (tmp_path / "x.pt").exists()


def test_precision_is_chosen_sensibly(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) in ("fp32", "bf16")
    monkeypatch.setenv("VITNB_PRECISION", "fp32")
    assert resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("amp", cpu)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="crop_pad"):
        TrainConfig(crop_pad=-1)


def test_bf16_autocast_path_trains(tmp_path):
    model = toy_vit()
    history = fit(
        model, toy_data(32), None, TrainConfig(epochs=1, **{**FAST, "precision": "bf16"}), progress=False, verbose=False
    )
    assert history.final["train_loss"] < 2 and next(model.parameters()).dtype == torch.float32


def test_fractional_epochs_train_part_of_the_data():
    history = fit(toy_vit(), toy_data(), None, TrainConfig(epochs=0.5, **FAST), progress=False, verbose=False)
    assert len(history) == 1 and history.final["images_per_s"] > 0
    assert history.final["lr"] == pytest.approx(1e-5)  # the schedule ends where the budget ends


def test_finetuning_surgery_and_linear_probe(tmp_path):
    source = toy_vit()
    save_model(tmp_path / "pre.pt", source)
    model = from_pretrained(tmp_path / "pre.pt", num_classes=3, img_size=12, mode="linear")
    assert model.head.out_features == 3 and model.pos_embed.shape == (1, 1 + 9, 24)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head")}
    data = toy_data(size=12, classes=3)
    fit(model, data, None, TrainConfig(epochs=1, **FAST), progress=False, verbose=False)
    for k, v in frozen.items():
        assert torch.equal(model.state_dict()[k], v), k
    assert label_subset(toy_data(), 5).labels.bincount().tolist() == [5, 5, 5, 5]
    assert label_subset(toy_data(), 5).labels.equal(label_subset(toy_data(), 5).labels)


def test_resnet18_baseline_trains_with_the_same_trainer(tmp_path):
    model = resnet18(in_chans=1, num_classes=4)
    assert model.conv1.stride == (1, 1) and isinstance(model.maxpool, torch.nn.Identity)
    # torchvision's 11,689,512 - a 7x7x3 stem + a 3x3x1 stem - 996 classes
    assert sum(p.numel() for p in model.parameters()) == 11_169_732
    fit(
        model,
        toy_data(32),
        None,
        TrainConfig(epochs=1, **FAST),
        checkpoint=tmp_path / "r.pt",
        progress=False,
        verbose=False,
    )
    again, ckpt = load_trained(tmp_path / "r.pt")
    assert ckpt["kind"] == "resnet18"
    assert evaluate(again, toy_data(8)) == evaluate(model, toy_data(8))
    freeze_all_but_head(again)
    assert [n for n, p in again.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]


def test_results_table_lists_methods_and_budgets():
    rows = [
        {"method": m, "labels_per_class": k, "fraction": k / 100, "test_acc": 0.5, "train_time": 3.0}
        for m in ("ViT", "ResNet")
        for k in (1, 10)
    ]
    table = results_table(rows)
    assert "ViT" in table and "ResNet" in table and "10% (10/class)" in table
    assert "0.500 in    3 s" in table and "seeds" not in table


def test_results_over_seeds_are_mean_and_range():
    rows = [
        {"method": "ViT", "labels_per_class": 10, "fraction": 0.1, "seed": s, "test_acc": a, "train_time": t}
        for s, a, t in ((0, 0.60, 10.0), (1, 0.70, 20.0), (2, 0.80, 30.0))
    ]
    table = results_table(rows + [{**r, "labels_per_class": 100, "fraction": 1.0, "train_time": 100.0} for r in rows])
    assert "0.700 (0.600-0.800) in   20 s   0.700 (0.600-0.800) in  100 s" in table  # columns stay apart
    (summary,) = summarize(rows)
    assert summary["seeds"] == 3 and summary["train_time"] == 20.0
    assert math.isclose(summary["test_acc"], 0.70) and (summary["acc_min"], summary["acc_max"]) == (0.60, 0.80)
    table = results_table(rows)
    assert "0.700 (0.600-0.800) in   20 s" in table and "over 3 seeds" in table


def test_cli_pretrain_finetune_evaluate_end_to_end(tmp_path, monkeypatch, capsys):
    """In-process (`python -m vitnb` calls this same `main`), so the test takes seconds."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VITNB_PROFILE", "quick")
    for command in ("pretrain", "finetune", "evaluate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--epochs" in capsys.readouterr().out or command == "evaluate"
    tiny = ["--model-opt", "depth=1", "--model-opt", "embed_dim=24", "--model-opt", "num_heads=2"]
    common = ["--epochs", "1", "--batch-size", "16", "--precision", "fp32", "--no-progress"]
    main(
        [
            "pretrain",
            "--dataset",
            "fractal",
            "--fractal-classes",
            "4",
            "--fractal-per-class",
            "8",
            *common,
            "--out",
            "pre.pt",
            *tiny,
        ]
    )
    assert "done: train acc" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "pre.pt")["epoch"] == 1
    main(
        [
            "finetune",
            "--checkpoint",
            "pre.pt",
            "--labels-per-class",
            "3",
            "--val-per-class",
            "2",
            *common,
            "--out",
            "fine.pt",
        ]
    )
    out = capsys.readouterr().out
    assert "finetuning (full)" in out and "val acc" in out
    main(["evaluate", "--checkpoint", "fine.pt", "--shift", "1"])
    assert "fashion_mnist test accuracy" in capsys.readouterr().out
    with pytest.raises(ValueError, match="empty"):
        main(["finetune", "--labels-per-class", "0", *common])
