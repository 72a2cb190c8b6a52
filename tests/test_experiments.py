"""The notebooks' protocols (vitnb.experiments): profiles, paths, summaries and tables, pretraining and
finetuning helpers, data efficiency, translation robustness, their figures; and the library's independence."""

import ast
import importlib.util
import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from helpers import tiny_vit
from torch import nn

import vitnb
from vitnb import preset
from vitnb.checkpoint import load_checkpoint, save_model
from vitnb.config import SERIES_PRESET
from vitnb.errors import UsageError
from vitnb.experiments import data_efficiency, get_profile, paths, pretraining
from vitnb.experiments.data_efficiency import make_model, translation_robustness
from vitnb.experiments.data_efficiency_report import findings, results_table
from vitnb.experiments.figures import plot_data_efficiency, plot_learning_curves, plot_translation
from vitnb.experiments.pretraining import from_pretrained, train_val_split
from vitnb.experiments.results import markdown_table, summarize, write_csv
from vitnb.patches import place_on_canvas
from vitnb.plotting import plot_class_samples, plot_reconstructions
from vitnb.train import TrainConfig, fit

PACKAGE = Path(vitnb.__file__).parent
FAST = dict(batch_size=16, lr=3e-3, warmup_epochs=0.5, precision="fp32", eval_batch_size=64, augment=False)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Many tiny steps in every test here: one thread (the conftest fixture)."""


# --- the library never imports the experiments -----------------------------------------------------
def experiment_imports(source: str, module: str) -> list[str]:
    """The import statements of `source` (the code of `module`, e.g. 'vitnb.train') that reach vitnb.experiments."""
    package = module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            start = ".".join(filter(None, (base, node.module)))
            targets = [start, *(f"{start}.{alias.name}" for alias in node.names)]
        else:
            continue
        if any(t == "vitnb.experiments" or t.startswith("vitnb.experiments.") for t in targets):
            found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize(
    "source, found",
    [
        ("from .experiments import get_profile", True),
        ("from . import experiments", True),
        ("from .experiments.ablation import BASE", True),
        ("import vitnb.experiments.profiles", True),
        ("def f():\n    from vitnb.experiments import results", True),
        ("from .data import fashion_mnist", False),
        ("from . import plotting", False),
        ("import experiments", False),
    ],
)
def test_the_import_check_sees_every_form_of_import(source, found):
    assert bool(experiment_imports(source, "vitnb.cli")) is found


def test_no_library_module_imports_the_experiments():
    library = [p for p in PACKAGE.rglob("*.py") if "experiments" not in p.relative_to(PACKAGE).parts]
    assert len(library) > 10
    offenders = {
        str(p.relative_to(PACKAGE)): lines
        for p in library
        if (
            lines := experiment_imports(
                p.read_text(), "vitnb." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
            )
        )
    }
    assert offenders == {}, "the library must not depend on vitnb.experiments (the notebooks' protocols)"


def test_the_experiment_modules_left_the_library():
    for old in ("vitnb.finetune", "vitnb.ablation", "vitnb.profiles"):
        assert importlib.util.find_spec(old) is None, old
    assert not hasattr(vitnb, "get_profile") and vitnb.seed_everything is vitnb.runtime.seed_everything


# --- profiles and paths ----------------------------------------------------------------------------
def test_profiles(monkeypatch):
    assert get_profile("quick").name == "quick" and get_profile("quick").nb06_seeds[0] == [0, 1]
    assert get_profile("full").nb05_corpus_classes == 1000
    monkeypatch.setenv("VITNB_PROFILE", "quick")
    assert repr(get_profile()) == "Profile('quick')"
    with pytest.raises(UsageError, match="'quick' or 'full', got 'medium'"):
        get_profile("medium")
    with pytest.raises(AttributeError, match="no setting 'nope'"):
        getattr(get_profile("full"), "nope")  # noqa: B009 (the attribute access is the test)


def test_run_paths_follow_vitnb_runs(monkeypatch, tmp_path):
    monkeypatch.delenv("VITNB_RUNS", raising=False)
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").touch()
    for cwd in (project, project / "notebooks"):  # the project's root (benchmarks) and a notebook's folder agree
        monkeypatch.chdir(cwd)
        assert paths.runs_root() == project
        assert paths.run_path(paths.FMNIST_VIT_PATH) == project / "runs/06_finetuning/vit_fmnist.pt"
    outside = tmp_path / "outside"  # no pyproject.toml above: the working directory
    outside.mkdir()
    monkeypatch.chdir(outside)
    assert paths.runs_root() == outside
    assert paths.project_root(project / "notebooks") == project
    monkeypatch.setenv("VITNB_RUNS", str(tmp_path / "elsewhere"))
    assert paths.runs_root() == tmp_path
    assert paths.run_path("runs/05_pretraining/x.pt") == tmp_path / "elsewhere/05_pretraining/x.pt"
    assert paths.run_path("notes/x.txt") == tmp_path / "notes/x.txt"
    assert paths.run_path(tmp_path / "abs.pt") == tmp_path / "abs.pt"


# --- summaries, tables, CSV ------------------------------------------------------------------------
RUNS = [
    {"method": "ViT", "labels_per_class": 10, "fraction": 0.1, "seed": s, "test_acc": a, "train_time": t}
    | {"batch_size": 128}
    for s, a, t in ((0, 0.60, 10.0), (1, 0.70, 20.0), (2, 0.80, 30.0))
]


def test_summarize_gives_mean_min_max_n_per_group():
    rows = RUNS + [{**r, "method": "CNN", "test_acc": 0.5, "train_time": 4.0} for r in RUNS[:2]]
    vit, cnn = summarize(rows, by=("method", "labels_per_class"), also=("fraction", "train_time"))
    assert vit.keys() == {"method", "labels_per_class", "n", "mean", "min", "max", "fraction", "train_time"}
    assert (vit["method"], vit["labels_per_class"], vit["n"], vit["min"], vit["max"]) == ("ViT", 10, 3, 0.6, 0.8)
    assert math.isclose(vit["mean"], 0.7) and vit["train_time"] == 20.0 and vit["fraction"] == 0.1
    assert (cnn["method"], cnn["n"], cnn["mean"], cnn["train_time"]) == ("CNN", 2, 0.5, 4.0)
    (by_seed,) = summarize(RUNS[:1], by=("seed",), metric="train_time")
    assert by_seed == {"seed": 0, "n": 1, "mean": 10.0, "min": 10.0, "max": 10.0}
    with pytest.raises(UsageError, match=r"no key\(s\) \['regime'\]"):
        summarize(RUNS, by=("regime",))
    with pytest.raises(UsageError, match="no rows"):
        summarize([], by=("method",))


def test_markdown_table_and_csv(tmp_path):
    assert markdown_table(["a", "b"], [[1, "x"], [2.5, ""]]) == "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 |  |"
    with pytest.raises(UsageError, match="every row needs 2 cells"):
        markdown_table(["a", "b"], [[1]])
    path = write_csv([{"a": 1, "b": [1, 2]}, {"a": 2, "c": "z"}], tmp_path / "sub" / "t.csv")
    assert path.read_text().splitlines() == ["a,b,c", "1,1;2,", "2,,z"]


def test_results_table_one_line_per_method_one_column_per_budget():
    rows = [
        {
            "method": m,
            "labels_per_class": k,
            "fraction": k / 100,
            "images": 50 * k,
            "test_acc": 0.5,
            "train_time": 3.0 * k,
            "images_per_s": 640.0 if m == "ViT" else 320.0,
            "batch_size": 128,
        }
        for m in ("ViT", "ResNet")
        for k in (1, 10)
    ]
    assert results_table(rows, rising={("ResNet", 10)}).splitlines() == [
        "| method | 1% (1/class, 50 images) | 10% (10/class, 500 images) | per step of 128 | longest run |",
        "|---|---|---|---|---|",
        "| ViT | 50.0 | 50.0 | 200 ms | 30 s |",
        "| ResNet | 50.0 | 50.0 † | 400 ms | 30 s |",
        "",
        "test accuracy (%) of the final weights; seeds per cell: 1; brackets: the seeds' min-max; "
        "† still rising: the last doubling of images added 1 point or more",
    ]


def test_results_table_over_seeds_shows_the_range():
    runs = [{**r, "images_per_s": 128.0, "images": 1000} for r in RUNS]
    rows = runs + [{**r, "labels_per_class": 100, "fraction": 1.0, "train_time": 100.0} for r in runs[:1]]
    assert results_table(rows).splitlines() == [
        "| method | 10% (10/class, 1,000 images) | 100% (100/class, 1,000 images) | per step of 128 | longest run |",
        "|---|---|---|---|---|",
        "| ViT | 70.0 (60.0-80.0) | 60.0 | 1000 ms | 100 s |",
        "",
        "test accuracy (%) of the final weights; seeds per cell: 3 at 10/class, 1 at 100/class; "
        "brackets: the seeds' min-max",
    ]


def test_curve_steps_double_up_to_the_end_of_the_run():
    assert data_efficiency.curve_steps(600, 8) == [5, 9, 19, 38, 75, 150, 300, 600]
    assert data_efficiency.curve_steps(3, 8) == [1, 2, 3]  # a short run: fewer points, never step 0
    with pytest.raises(UsageError, match="total >= 1 steps and points >= 1"):
        data_efficiency.curve_steps(0, 8)


def curve_row(method, k, seed, curve, acc=None):
    acc = curve[-1][1] if acc is None else acc
    return {
        "method": method,
        "labels_per_class": k,
        "fraction": k / 100,
        "seed": seed,
        "images": curve[-1][0],
        "test_acc": acc,
        "train_time": 1.0,
        "images_per_s": 100.0,
        "batch_size": 128,
        "curve": curve,
    }


def test_still_rising_flags_a_cell_whose_last_doubling_added_a_point():
    rows = [
        curve_row("flat", 1, 0, [(50, 0.5), (100, 0.70), (200, 0.705)]),
        curve_row("flat", 1, 1, [(50, 0.5), (100, 0.70), (200, 0.71)]),
        curve_row("rising", 1, 0, [(50, 0.5), (100, 0.60), (200, 0.62)]),
        curve_row("rising", 1, 1, [(50, 0.5), (100, 0.60), (200, 0.60)]),  # the mean over seeds decides: +1.0
    ]
    gains = data_efficiency.last_doubling_gain(rows)
    assert gains[("flat", 1)] == pytest.approx(0.0075) and gains[("rising", 1)] == pytest.approx(0.01)
    assert data_efficiency.still_rising(rows) == {("rising", 1)}
    with pytest.raises(UsageError, match="has no learning curve; pass curve_test"):
        data_efficiency.last_doubling_gain([{**rows[0], "curve": []}])


def test_findings_are_written_from_the_numbers():
    names = ("pixels (logistic regression)", "small ResNet", "ViT from scratch", "ViT + MAE pretraining")
    accs = {1: (0.70, 0.80, 0.60, 0.75), 100: (0.80, 0.90, 0.85, 0.86)}
    rows = []
    for k, row in accs.items():
        for name, acc in zip(names, row, strict=True):
            for seed in (0, 1) if k == 1 else (0,):
                climb = 0.07 if (name, k) == ("ViT from scratch", 1) else 0.005  # +7 points: still rising
                row = curve_row(
                    name,
                    k,
                    seed,
                    [(100, acc - climb), (200, acc)],
                    acc=acc + (0.001 if seed else -0.001 if k == 1 else 0.0),
                )
                rows.append({**row, "images_per_s": 100.0 if name.startswith("ViT") else 125.0})
    robustness = {"ViT from scratch": [0.80, 0.70, 0.60, 0.55, 0.50], "small ResNet": [0.88, 0.80, 0.50, 0.30, 0.30]}
    text = findings(rows, robustness, data_efficiency.still_rising(rows))
    assert "**Plateaus.** At 100% of the labels every curve had flattened (the last doubling of images added at" in text
    assert (
        "Still rising when their budget ended (what the last doubling added): ViT from scratch at 1% (+7.00 points)."
        in text
    )
    assert (
        "The small ResNet wins, on every seed: 80.0% against 60.0% for the ViT from scratch, 20.0 points ahead; "
        "the ViT from scratch is even below logistic regression on the pixels (70.0%). The ViT from scratch was "
        "still rising." in text
    )
    # at 1% the scratch cell is still rising: no share of the gap, and the gain is not established; at 100% the one
    # seed's +1.0 points exceed the two seeds' 0.2-point spread at 1%, and every cell is flat
    assert (
        "75.0% at 1% (15.0 points over scratch); 86.0% at 100% (1.0 points over scratch, 20% of the gap to the "
        "ResNet); it does not reach the ResNet at any budget. The gain is not established at 1% (the ViT from "
        "scratch was still rising faster)." in text
    )
    assert (
        "**Translation.** Neither model is invariant. Moving the image 2 pixels on the canvas costs the ResNet" in text
    )
    assert "patch-aligned" not in text and "recover:" not in text  # the ViT at a whole-patch shift: exercise 3's answer
    steady = {**robustness, "small ResNet": [0.88, 0.88, 0.875, 0.88, 0.88]}  # never a point lost
    assert "The ViT from scratch is not invariant; the other loses less than a point at every shift." in findings(
        rows, steady, data_efficiency.still_rising(rows)
    )
    assert "The ResNet is worst at a shift of 3 pixels (30.0%) and stays about as low at 4 (30.0%)" in text
    recovering = {**robustness, "small ResNet": [0.88, 0.80, 0.50, 0.30, 0.32]}  # 2 points back at the patch shift
    assert "and recovers at 4 (32.0%)" in findings(rows, recovering, data_efficiency.still_rising(rows))
    assert "costs the ViT 5.0 points against its score on the plain test images (85.0%)" in text
    flat = [{**r, "curve": [(100, r["test_acc"]), (200, r["test_acc"])]} for r in rows]  # no cell rising
    assert "No curve was still rising when its budget ended." in findings(flat, robustness, set())
    assert "A ViT step takes 25% longer than a ResNet step of the same batch (1280 ms against 1024 ms" in text


def test_train_val_split_holds_out_a_fixed_share_of_every_class(toy):
    data = toy(n=40, classes=4)
    train, val = train_val_split(data, 3, seed=1)
    assert val.labels.bincount().tolist() == [3, 3, 3, 3] and train.labels.bincount().tolist() == [7, 7, 7, 7]
    pairs = {tuple(x.flatten().tolist()) for x in torch.cat([train.images, val.images])}
    assert len(pairs) == 40  # disjoint, and together the whole set
    assert torch.equal(train_val_split(data, 3, seed=1)[1].images, val.images)


def test_from_pretrained_fresh_head_resampled_positions_and_linear_probe(tmp_path, toy):
    save_model(tmp_path / "pre.pt", tiny_vit())
    model = from_pretrained(tmp_path / "pre.pt", num_classes=3, img_size=12, mode="linear")
    assert model.training and model.head.out_features == 3 and model.pos_embed.shape == (1, 1 + 9, 24)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head")}
    fit(model, toy(size=12, classes=3), None, TrainConfig(epochs=1, **FAST), progress=False, verbose=False)
    for k, v in frozen.items():
        assert torch.equal(model.state_dict()[k], v), k
    full = from_pretrained(tmp_path / "pre.pt", num_classes=4)
    assert all(p.requires_grad for p in full.parameters()) and full.pos_embed.shape == (1, 1 + 4, 24)
    with pytest.raises(ValueError, match="mode must be 'full'.*or 'linear'.*got 'probe'"):
        from_pretrained(tmp_path / "pre.pt", 3, mode="probe")


def test_pretrain_fractal_trains_on_the_corpus_and_writes_a_checkpoint(tmp_path, monkeypatch, toy):
    corpora = []

    def corpus(num_classes, per_class):  # a toy stands in for the rendered fractals
        corpora.append((num_classes, per_class))
        return toy(n=num_classes * per_class, size=28, classes=num_classes)

    monkeypatch.setattr(pretraining.fractal, "dataset", corpus)
    cfg = preset("cpu", num_classes=3, embed_dim=24, depth=1, num_heads=2)
    model, history, (train, val) = pretraining.pretrain_fractal(
        tmp_path / "f.pt", 3, 10, 2, cfg=cfg, train_cfg=TrainConfig(epochs=1, **FAST), progress=False
    )
    assert corpora == [(3, 10)] and (len(train), len(val)) == (24, 6)
    assert len(history) == 1 and history.final["val_acc"] is not None
    ckpt = load_checkpoint(tmp_path / "f.pt")
    assert ckpt["epoch"] == 1 and ckpt["config"] == cfg.to_dict()


def test_load_or_pretrain_pretrains_only_when_the_checkpoint_is_missing(tmp_path, monkeypatch):
    calls = []
    routes = {
        "there": (tmp_path / "there.pt", lambda path, progress: calls.append(path)),
        "missing": (tmp_path / "missing.pt", lambda path, progress: calls.append(path)),
    }
    monkeypatch.setattr(pretraining, "ROUTES", routes)
    (tmp_path / "there.pt").write_bytes(b"")
    assert pretraining.load_or_pretrain("there") == tmp_path / "there.pt" and calls == []
    assert pretraining.load_or_pretrain("missing") == tmp_path / "missing.pt"
    assert calls == [tmp_path / "missing.pt"]
    with pytest.raises(ValueError, match="unknown pretraining route 'jft'; choose from"):
        pretraining.load_or_pretrain("jft")


def test_pretrain_mae_vit_saves_an_encoder_that_loads_into_a_classifier(tmp_path, monkeypatch, toy):
    monkeypatch.setenv("VITNB_PROFILE", "quick")  # 30 images per class, one epoch
    monkeypatch.setattr(pretraining, "fashion_mnist", lambda train: toy(n=400, size=28, classes=10))
    mae, history = pretraining.pretrain_mae_vit(tmp_path / "mae.pt", progress=False)
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"]) and mae.mask_ratio == 0.75
    ckpt = load_checkpoint(tmp_path / "mae.pt")
    assert ckpt["route"] == "mae" and ckpt["config"] == preset(SERIES_PRESET).to_dict()
    for key, value in mae.encoder.state_dict().items():
        assert torch.equal(ckpt["model"][key], value), key
    model = from_pretrained(tmp_path / "mae.pt", num_classes=3)
    assert torch.equal(model.blocks[0].attn.qkv.weight, mae.encoder.blocks[0].attn.qkv.weight)
    assert model.head.out_features == 3


def test_linear_probe_trains_a_new_head_on_a_copy_of_the_frozen_encoder(toy):
    encoder = tiny_vit(classes=5)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    probe = pretraining.linear_probe(encoder, toy(n=40, classes=3), TrainConfig(epochs=2, **FAST))
    assert not probe.training and probe.head.out_features == 3 and probe.cfg.num_classes == 3
    assert [n for n, p in probe.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    for key, value in encoder.state_dict().items():  # the encoder itself is untouched
        assert torch.equal(value, before[key]), key
    for key, value in probe.state_dict().items():  # the probe's body is the encoder's, its head is new and trained
        if not key.startswith("head."):
            assert torch.equal(value, before[key]), key
    assert encoder.head.out_features == 5 and probe.head.weight.abs().max() > 0


def test_load_or_train_fmnist_vit_trains_a_stand_in_once(tmp_path, monkeypatch, toy, capsys):
    monkeypatch.setenv("VITNB_PROFILE", "quick")  # 50 images per class, one epoch
    monkeypatch.setattr(data_efficiency, "fashion_mnist", lambda train: toy(n=600, size=28, classes=10))
    path = tmp_path / "vit.pt"
    model = data_efficiency.load_or_train_fmnist_vit(path, verbose=False)
    ckpt = load_checkpoint(path)
    assert (ckpt["profile"], ckpt["stand_in"], ckpt["epochs"]) == ("quick", True, 1)
    assert ckpt["config"] == preset(SERIES_PRESET).to_dict() and not model.training
    again = data_efficiency.load_or_train_fmnist_vit(path)
    assert capsys.readouterr().out.startswith(f"loaded {path} (test accuracy ")
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(again(x), model(x))


def test_make_model_builds_every_method(tmp_path, monkeypatch):
    save_model(tmp_path / "pre.pt", tiny_vit(size=28, classes=5))
    monkeypatch.setattr(data_efficiency, "load_or_pretrain", lambda route: tmp_path / "pre.pt")
    assert make_model("vit_scratch", 7).cfg == preset(SERIES_PRESET, num_classes=7)
    mae = make_model("vit_mae", 10)
    assert mae.head.out_features == 10 and mae.training and mae.blocks[0].attn.qkv.weight.requires_grad
    assert mae.cfg.embed_dim == 24  # the checkpoint's model, not a new one
    probe = make_model("vit_mae_probe", 10)  # a linear probe: only the new head trains
    assert [n for n, p in probe.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    assert make_model("resnet_small", 3).fc.out_features == 3 and make_model("resnet18", 3).fc.in_features == 512
    assert make_model("pixels", 4)(torch.zeros(2, 1, 28, 28)).shape == (2, 4)
    with pytest.raises(UsageError, match="unknown model 'vit'; choose from"):
        make_model("vit")


# --- data efficiency and translation ---------------------------------------------------------------
def test_data_efficiency_runs_every_method_at_every_budget_on_the_same_images(toy):
    train, test = toy(n=40, size=28, classes=4), toy(n=8, size=28, classes=4, seed=1)
    methods = {"floor": {"model": "pixels", "lr": 0.1, "batch_size": 4}}
    rows, kept = data_efficiency.run(
        methods,
        train,
        test,
        [(2, 16), (4, 16)],
        seeds=(0, 1),
        keep=[("floor", 4)],
        progress=False,
        curve_test=test,
        curve_points=3,
    )
    assert [(r["labels_per_class"], r["seed"]) for r in rows] == [(2, 0), (2, 1), (4, 0), (4, 1)]
    # 4 steps per run: scored after steps 1, 2 and 4, at the images seen by then (an epoch of 8 is 2 steps of 4)
    assert [[seen for seen, _ in r["curve"]] for r in rows] == [[4, 8, 16]] * 4
    assert all(r["curve"][-1][1] == r["test_acc"] for r in rows)  # curve_test is the test set here
    assert [r["fraction"] for r in rows] == [0.2, 0.2, 0.4, 0.4]
    assert [len(r["history"]) for r in rows] == [2, 2, 1, 1]  # 16 images: twice over 8, once over 16
    assert [r["images"] for r in rows] == [16] * 4 and all(r["images_per_s"] > 0 for r in rows)
    assert list(kept) == [("floor", 4)] and not kept[("floor", 4)].training
    assert [(s["labels_per_class"], s["n"]) for s in data_efficiency.summary(rows)] == [(2, 2), (4, 2)]
    table = results_table(rows)
    assert table.splitlines()[0].startswith("| method | 20% (2/class, 16 images) | 40% (4/class, 16 images) |")
    assert "| per step of 4 |" in table.splitlines()[0]  # the runs' batch
    assert "seeds per cell: 2" in table


class TopLeftPixel(nn.Module):
    """Class 0 when the top-left pixel is bright, else class 1: moving the image away flips the answer."""

    def __init__(self):
        super().__init__()
        self.threshold = nn.Parameter(torch.zeros(()))

    def forward(self, x):  # (B, 1, H, W) -> (B, 2)
        pixel = x[:, 0, 0, 0]
        return torch.stack([pixel, self.threshold.expand_as(pixel)], dim=1)


def test_translation_robustness_moves_images_across_a_padded_canvas(toy):
    data = toy(n=6, size=8, classes=1)
    data.images[:, :, 0, 0] = 255  # every image has a bright top-left pixel; the canvas is background (0)
    vit = tiny_vit(size=8, classes=2, class_token=False, global_pool="avg", pos_embed="sincos")
    result = translation_robustness({"pixel": TopLeftPixel(), "vit": vit}, data, pad=4)
    assert result["pixel"] == [1.0, 0.0, 0.0, 0.0, 0.0] and len(result["vit"]) == 5
    assert vit.cfg.img_size == 8  # scored on a 12-px canvas through a copy: the model itself is unchanged


def test_place_on_canvas_never_crops():
    x = torch.arange(1, 5.0).reshape(1, 1, 2, 2)
    canvas = place_on_canvas(x, 2, 1, 2)
    assert canvas.shape == (1, 1, 4, 4) and canvas.sum() == x.sum() and torch.equal(canvas[..., 2:4, 1:3], x)
    with pytest.raises(UsageError, match=r"offset \(3, 0\) must lie in 0..pad=2"):
        place_on_canvas(x, 2, 3, 0)


# --- figures ---------------------------------------------------------------------------------------
def test_experiment_figures(toy):
    fig = plot_class_samples(toy(n=12, classes=3), num_classes=3, per_class=4, title="t")
    assert len(fig.axes) == 12 and fig.axes[0].get_title(loc="left") == "a"
    plt.close(fig)
    runs = [{**r, "images_per_s": 1.0, "images": 100} for r in RUNS]
    summary = data_efficiency.summary(runs + [{**r, "method": "CNN"} for r in runs])
    fig = plot_data_efficiency(summary, colors={"CNN": "#123456"}, rising={("CNN", 10)})
    ax = fig.axes[0]
    assert [c.get_label() for c in ax.containers] == ["ViT", "CNN"]
    assert ax.get_xlabel() == "% of labels (training images per run)"
    assert matplotlib.colors.to_hex(ax.containers[1].lines[0].get_color()) == "#123456"
    markers = [line for line in ax.lines if line.get_marker() == "o"]
    assert [matplotlib.colors.to_hex(m.get_markerfacecolor()) for m in markers][1] == "#ffffff"  # open: rising
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10%\n(100)"]
    assert "bars: min-max over the seeds" in ax.texts[0].get_text()
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1  # the legend sits outside
    plt.close(fig)
    curves = [curve_row("ViT", k, s, [(10 * k, 0.1 * s), (20 * k, 0.5 + 0.1 * s)]) for k in (1, 10) for s in (0, 1)]
    fig = plot_learning_curves(curves + [curve_row("CNN", 10, 0, [(100, 0.2), (200, 0.9)])], rising={("CNN", 10)})
    assert len(fig.axes) == 2 and [ax.get_xscale() for ax in fig.axes] == ["log", "log"]
    vit, cnn = fig.axes[1].lines
    assert list(vit.get_xdata()) == [100, 200] and list(vit.get_ydata()) == pytest.approx([5, 55])  # seed mean
    assert cnn.get_label() == "CNN (still rising)" and cnn.get_linestyle() == "--"
    assert len(fig.axes[1].collections) == 1  # the seed band of the ViT; one seed of the CNN draws none
    plt.close(fig)
    fig = plot_translation({"a": [0.9, 0.8, 0.7], "b": [0.7, 0.7, 0.7]}, patch_size=2)
    assert [list(line.get_xdata()) for line in fig.axes[0].lines[:2]] == [[0, 1, 2], [0, 1, 2]]
    assert list(fig.axes[0].lines[0].get_ydata()) == pytest.approx([90, 80, 70])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1", "2\n(one patch)"]
    plt.close(fig)
    with pytest.raises(UsageError, match=r"one accuracy per shift, got lengths \[2, 3\]"):
        plot_translation({"a": [0.9, 0.8], "b": [0.7, 0.7, 0.7]})


def test_reconstruction_grid_shares_one_grey_scale():
    images, faint = torch.rand(3, 1, 8, 8), 0.1 * torch.rand(3, 1, 8, 8)
    fig = plot_reconstructions({"image": images, "reconstruction": faint}, patch_size=4)
    assert len(fig.axes) == 6 and fig.axes[0].get_ylabel() == "image"
    both = torch.cat([images, faint])
    assert {im.get_clim() for ax in fig.axes for im in ax.get_images()} == {(both.min().item(), both.max().item())}
    plt.close(fig)
    with pytest.raises(UsageError, match="one shape"):
        plot_reconstructions({"a": images, "b": images[:2]})


def test_reconstruction_grid_covers_hidden_patches_in_a_colour_of_their_own():
    images = torch.rand(3, 1, 8, 8)  # a 2x2 grid of 4-pixel patches
    hidden = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 0]])
    fig = plot_reconstructions({"image": images, "masked": images}, patch_size=4, hidden=hidden, hidden_rows=["masked"])
    image_row, masked_row = fig.axes[:3], fig.axes[3:]
    assert [len(ax.patches) for ax in image_row] == [0, 0, 0]  # only the named rows are covered
    assert [len(ax.patches) for ax in masked_row] == [2, 0, 3]
    corners = sorted(p.get_xy() for p in masked_row[0].patches)  # patches 0 (top left) and 3 (bottom right)
    assert corners == [(-0.5, -0.5), (3.5, 3.5)] and masked_row[0].patches[0].get_width() == 4
    red, green, blue, alpha = masked_row[2].patches[0].get_facecolor()
    assert alpha > 0.5 and red - blue > 0.5  # a coloured tint, not a grey of the image's scale
    assert masked_row[0].patches[0].get_hatch()
    (legend,) = fig.legends
    assert "hidden" in legend.get_texts()[0].get_text()
    plt.close(fig)
    with pytest.raises(UsageError, match="hidden needs patch_size"):
        plot_reconstructions({"masked": images}, hidden=hidden, hidden_rows=["masked"])
    with pytest.raises(UsageError, match="hidden needs patch_size"):
        plot_reconstructions({"masked": images}, patch_size=4, hidden=hidden[:, :3], hidden_rows=["masked"])
    with pytest.raises(UsageError, match="hidden_rows names rows"):
        plot_reconstructions({"masked": images}, patch_size=4, hidden=hidden, hidden_rows=["image"])
    with pytest.raises(UsageError, match="hidden_rows names rows"):
        plot_reconstructions({"masked": images}, patch_size=4, hidden_rows=["masked"])


def test_shown_path_hides_the_machines_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("VITNB_RUNS", str(tmp_path / "runs"))
    assert paths.shown_path(paths.run_path("runs/06/vit.pt")) == Path("runs/06/vit.pt")
    assert paths.shown_path("/elsewhere/vit.pt") == Path("/elsewhere/vit.pt")
