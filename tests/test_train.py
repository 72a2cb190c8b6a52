"""The trainer: learning, determinism, exact resume, NaN guard, any data set, clear errors on bad input,
the moving average of the weights (EMA) and test-time flips."""

import dataclasses
import math
import random

import pytest
import torch
from helpers import tiny_vit, toy_images
from PIL import Image

import vitnb
from vitnb.checkpoint import load_checkpoint, load_model, save_model
from vitnb.cnn import PixelClassifier, resnet18, resnet_small
from vitnb.config import TrainConfig
from vitnb.evaluation import evaluate, predict
from vitnb.optim import ModelEma, freeze_all_but_head, warmup_cosine
from vitnb.runtime import cpu_has_fast_bf16, eval_mode, pick_device, resolve_precision, seed_everything
from vitnb.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest

FAST = dict(batch_size=16, lr=3e-3, warmup_epochs=0.5, precision="fp32", eval_batch_size=64, augment=False)
QUIET = dict(progress=False, verbose=False)
CHANCE_LOSS = math.log(4)  # cross-entropy of a uniform guess over the toy set's 4 classes


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


def test_training_learns_and_is_deterministic(toy):
    train, val = toy(), toy(32, seed=1)
    runs = []
    for _ in range(2):
        model = tiny_vit()
        history = fit(model, train, val, TrainConfig(epochs=3, **FAST), **QUIET)
        runs.append((weights(model), metrics(history)))
    assert_same(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert history.final["train_loss"] < CHANCE_LOSS - 0.3
    assert history.final["val_acc"] >= 0.9  # chance is 0.25
    assert list(history.final) == [
        "epoch",
        "train_loss",
        "train_acc",
        "val_acc",
        "lr",
        "images_per_s",
        "epoch_time",
        "train_time",
        "time",
    ]
    assert history.column("epoch") == [1, 2, 3]


@pytest.mark.parametrize("ema_decay", [0.0, 0.9], ids=["plain", "ema"])
def test_resume_after_a_kill_ends_where_an_uninterrupted_run_ends(tmp_path, toy, ema_decay):
    train, val = toy(), toy(32, seed=1)
    cfg = TrainConfig(epochs=2, ema_decay=ema_decay, **FAST)
    model = tiny_vit()
    full = fit(model, train, val, cfg, checkpoint=tmp_path / "a.pt", **QUIET)
    expected = weights(model)

    class Killed(Exception):
        pass

    def kill_after_epoch_1(epoch, record, model):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        fit(tiny_vit(), train, val, cfg, checkpoint=tmp_path / "b.pt", callbacks=[kill_after_epoch_1], **QUIET)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 1
    model = tiny_vit()  # a fresh process would start from a fresh model
    torch.manual_seed(123)  # and from a different global RNG state
    resumed = fit(model, train, val, cfg, checkpoint=tmp_path / "b.pt", resume=True, **QUIET)
    assert_same(expected, weights(model))
    assert metrics(resumed) == metrics(full)
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    for key in ("model", "raw_model") if ema_decay else ("model",):
        assert_same(a[key], b[key])
    assert a.get("ema_steps") == b.get("ema_steps") == (8 if ema_decay else None)  # 2 epochs of 4 steps

    # max_epochs_this_run stops early; resuming once more finishes the same way
    model = tiny_vit()
    for _ in range(2):
        fit(model, train, val, cfg, checkpoint=tmp_path / "c.pt", resume=True, max_epochs_this_run=1, **QUIET)
    assert_same(expected, weights(model))


def test_fit_writes_the_one_checkpoint_format(tmp_path, toy):
    model = tiny_vit()
    data = toy()
    fit(model, data, None, TrainConfig(epochs=1, **FAST), checkpoint=tmp_path / "m.pt", **QUIET)
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    assert set(ckpt) == {
        *("format", "version", "kind", "config", "model", "data"),
        *("optimizer", "scheduler", "epoch", "history", "rng", "loader", "train_config", "precision", "world_size"),
    }
    assert (ckpt["format"], ckpt["version"], ckpt["kind"], ckpt["epoch"]) == ("vitnb", 1, "vit", 1)
    assert ckpt["config"] == model.cfg.to_dict() and ckpt["data"] == data.meta()
    again, _ = load_model(tmp_path / "m.pt")
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(again(x), model.eval()(x))


# --- moving average of the weights and test-time flips --------------------------------------------
def test_ema_is_the_warmed_up_average_of_the_weight_trajectory(monkeypatch, toy):
    optimizer_step = vitnb.train.optimizer_step
    trajectory = []  # the trained weights after every optimizer step

    def recording_step(run, loss):
        optimizer_step(run, loss)
        trajectory.append(weights(run.model))

    monkeypatch.setattr("vitnb.train.optimizer_step", recording_step)
    model = tiny_vit()
    expected = weights(model)  # the average starts at the initial weights
    fit(model, toy(), None, TrainConfig(epochs=3, ema_decay=0.5, **FAST), **QUIET)
    assert len(trajectory) == 12  # 3 epochs of 4 steps: the decay warms up (2/11, 3/12, ...) to 0.5 at step 8
    for t, w in enumerate(trajectory, start=1):
        d = min(0.5, (1 + t) / (10 + t))
        expected = {k: d * expected[k] + (1 - d) * w[k] for k in w}
    ended = weights(model)
    for k in expected:
        torch.testing.assert_close(ended[k], expected[k], rtol=0, atol=1e-6, msg=k)
    gap = max((ended[k] - trajectory[-1][k]).abs().max().item() for k in ended)
    assert gap > 1e-4, gap  # the average is not the last trained weights (100 times the tolerance above)


def test_ema_leaves_training_alone_and_saves_the_average_as_the_model(tmp_path, toy, monkeypatch):
    train_set, val = toy(), toy(32, seed=1)
    plain, averaged = tiny_vit(), tiny_vit()
    history = fit(plain, train_set, val, TrainConfig(epochs=2, **FAST), checkpoint=tmp_path / "p.pt", **QUIET)
    validated = []  # the weights fit scores on the validation set

    def recording_predict(model, *args, **kwargs):
        validated.append(weights(model))
        return predict(model, *args, **kwargs)

    monkeypatch.setattr("vitnb.train.predict", recording_predict)
    cfg = TrainConfig(epochs=2, ema_decay=0.9, **FAST)
    ema_history = fit(averaged, train_set, val, cfg, checkpoint=tmp_path / "e.pt", **QUIET)

    ckpt = load_checkpoint(tmp_path / "e.pt")
    assert_same(ckpt["raw_model"], weights(plain))  # the same training, bit for bit: ema_decay=0 is plain training
    assert [m[:2] + m[3:] for m in metrics(history)] == [m[:2] + m[3:] for m in metrics(ema_history)]
    assert "raw_model" not in load_checkpoint(tmp_path / "p.pt")
    assert ckpt["ema_steps"] == 8 and ckpt["train_config"]["ema_decay"] == 0.9
    assert_same(ckpt["model"], weights(averaged))  # the model ends with the average, saved as "model"
    assert not torch.equal(ckpt["model"]["head.weight"], ckpt["raw_model"]["head.weight"])
    assert len(validated) == 2
    assert_same(validated[-1], ckpt["model"])  # validation scores the average
    assert ema_history.final["val_acc"] == evaluate(averaged, val)


def test_ema_averages_buffers_and_copies_integer_ones():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)).train()
    ema = ModelEma(model, decay=0.8)
    start = weights(model)
    model(torch.randn(4, 3))  # BatchNorm updates its running statistics and its batch counter
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update_parameters(model)  # step 1: d = min(0.8, 2/11)
    d = 2 / 11
    now, averaged = weights(model), weights(ema.module)
    for k in ("0.weight", "1.running_mean", "1.running_var"):
        torch.testing.assert_close(averaged[k], d * start[k] + (1 - d) * now[k], rtol=0, atol=1e-6)
    assert averaged["1.num_batches_tracked"] == now["1.num_batches_tracked"] == 1
    assert ema.steps == 1 and not any(p.requires_grad for p in ema.parameters())
    again = ModelEma(model, decay=0.8)
    again.load(ema.module.state_dict(), ema.steps)  # continue the average, as resume does
    assert again.steps == 1 and torch.equal(again.module[0].weight, ema.module[0].weight)


def test_predict_with_flip_averages_the_softmax_of_the_image_and_its_mirror(toy):
    model, data = tiny_vit(lively=True), toy(16, seed=3)
    x = data.normalize(data.images)  # (16, 1, 8, 8)
    with torch.no_grad():
        expected = (model(x).softmax(-1) + model(x.flip(-1)).softmax(-1)).argmax(1)
    flipped = predict(model, data, flip=True)
    assert torch.equal(flipped, expected)
    assert (flipped != predict(model, data)).sum() == 3  # on this seed's batch the mirror changes 3 of 16
    as_tensors = torch.utils.data.TensorDataset(x, data.labels)  # the generic (float image) path
    assert torch.equal(predict(model, as_tensors, flip=True, batch_size=5), expected)
    assert evaluate(model, data, flip=True) == (expected == data.labels).float().mean().item()


def test_fit_validates_with_flips_when_eval_flip(toy):
    def columns(data):  # the classes as vertical stripes, so that a mirror image looks like another class
        return dataclasses.replace(data, images=data.images.transpose(-1, -2).contiguous())

    train_set, val = columns(toy()), columns(toy(32, seed=1))
    model = tiny_vit()
    history = fit(model, train_set, val, TrainConfig(epochs=1, eval_flip=True, **FAST), **QUIET)
    assert evaluate(model, val) == 1.0
    assert history.final["val_acc"] == evaluate(model, val, flip=True) < 0.75  # mirrors vote for other classes


def test_step_callbacks_see_every_step_the_images_so_far_and_a_training_model(toy):
    data = toy(40)  # 40 images in batches of 16: steps of 16, 16 and 8 images per epoch
    seen, scores = [], []

    def record(step, images, model):
        seen.append((step, images, model.training))
        if step == 3:
            scores.append(evaluate(model, data))  # scoring mid-run leaves the model training (checked next step)

    history = fit(tiny_vit(), data, None, TrainConfig(epochs=2, **FAST), step_callbacks=[record], **QUIET)
    assert [(s, n) for s, n, _ in seen] == [(1, 16), (2, 32), (3, 40), (4, 56), (5, 72), (6, 80)]
    assert all(training for _, _, training in seen) and len(scores) == 1 and len(history) == 2


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, toy):
    with pytest.raises(FloatingPointError, match=r"epoch 1, step \d+.*lower the learning rate"):
        fit(tiny_vit(), toy(), None, TrainConfig(epochs=2, **{**FAST, "lr": 1e10, "grad_clip": 0}), **QUIET)

    def poison(epoch, record, model):
        model.head.bias.data.fill_(float("nan"))

    path = tmp_path / "good.pt"
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 1\b.*untouched"):
        fit(tiny_vit(), toy(), None, TrainConfig(epochs=3, **FAST), checkpoint=path, callbacks=[poison], **QUIET)
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_precision_is_chosen_from_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("VITNB_PRECISION", raising=False)
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setenv("VITNB_PRECISION", "fp32")
    assert resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("amp", cpu)


def test_bf16_autocast_path_trains(toy):
    model = tiny_vit()
    history = fit(model, toy(), None, TrainConfig(epochs=2, **{**FAST, "precision": "bf16"}), **QUIET)
    assert history.final["train_loss"] < CHANCE_LOSS - 0.2
    assert next(model.parameters()).dtype == torch.float32  # autocast, not a bf16 model


def test_fractional_epochs_train_part_of_the_data(toy):
    history = fit(tiny_vit(), toy(), None, TrainConfig(epochs=0.5, **FAST), **QUIET)
    assert len(history) == 1
    record = history.final
    seen = 32  # half an epoch of 64 images: 2 batches of 16
    assert record["images_per_s"] == pytest.approx(seen / record["train_time"])
    assert record["train_time"] <= record["epoch_time"] == record["time"]
    assert record["lr"] == pytest.approx(1e-5)  # the schedule ends where the budget ends


def test_any_map_style_data_set_trains_like_an_image_tensor_dataset(toy):
    data = toy()
    as_tensors = torch.utils.data.TensorDataset(data.normalize(data.images), data.labels)
    cfg = TrainConfig(epochs=1, **FAST)
    runs = []
    for dataset in (data, as_tensors, list(data)):  # the fast uint8 path, a TensorDataset, a list of pairs
        model = tiny_vit()
        history = fit(model, dataset, dataset, cfg, **QUIET)
        runs.append((weights(model), metrics(history), predict(model, dataset), evaluate(model, dataset)))
    for other in runs[1:]:
        assert_same(runs[0][0], other[0])
        assert runs[0][1] == other[1] and torch.equal(runs[0][2], other[2]) and runs[0][3] == other[3]


def test_predict_runs_where_the_model_is(monkeypatch, toy):
    model, data = tiny_vit(), toy(8)
    expected = predict(model, data)
    monkeypatch.setenv("VITNB_DEVICE", "meta")  # a device the model is not on: predict must not move inputs there
    assert torch.equal(predict(model, data), expected)
    assert torch.equal(predict(model, data, device="cpu"), expected)


def test_eval_mode_restores_the_mode_it_found(toy):
    model = tiny_vit().train()
    model.blocks[1].eval()  # e.g. a frozen part of a model being finetuned
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and model.blocks[0].training and not model.blocks[1].mlp.fc1.training
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError
    assert model.training
    predict(model, toy(4))  # predicts in eval mode, and leaves every mode as it found it
    assert model.training and model.blocks[0].training and not model.blocks[1].training


def test_the_small_resnet_has_the_series_vits_size():
    model = resnet_small()
    widths = [model.conv1.out_channels] + [getattr(model, f"layer{i}")[0].conv2.out_channels for i in (1, 2, 3, 4)]
    assert widths == [16, 16, 32, 64, 128] and [len(getattr(model, f"layer{i}")) for i in (1, 2, 3, 4)] == [1] * 4
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    vit = sum(p.numel() for p in vitnb.VisionTransformer(vitnb.preset("cpu_small")).parameters())
    assert abs(sum(p.numel() for p in model.parameters()) / vit - 1) < 0.05


def test_the_pixel_floor_learns_a_linearly_separable_task():
    data = toy_images(64, size=8, classes=4)  # class c brightens rows c and c + 4: a linear rule
    model = PixelClassifier(in_chans=1, num_classes=4, img_size=8)
    assert evaluate(model, data) < 0.9
    fit(model, data, None, TrainConfig(epochs=20, **FAST), **QUIET)
    assert evaluate(model, data) == 1.0
    with pytest.raises(ValueError, match="8"):
        fit(model, toy_images(8, size=6), None, TrainConfig(epochs=1, batch_size=4), **QUIET)


@pytest.mark.slow  # an 11M-parameter CNN
def test_resnet18_trains_with_the_same_trainer(tmp_path, toy):
    model = resnet18(in_chans=1, num_classes=4)
    assert model.conv1.stride == (1, 1) and isinstance(model.maxpool, torch.nn.Identity)
    # torchvision's 11,689,512 - a 7x7x3 stem + a 3x3x1 stem - 996 classes
    assert sum(p.numel() for p in model.parameters()) == 11_169_732
    fit(model, toy(32), None, TrainConfig(epochs=1, **FAST), checkpoint=tmp_path / "r.pt", **QUIET)
    again, ckpt = load_model(tmp_path / "r.pt")
    assert ckpt["kind"] == "resnet"
    assert torch.equal(predict(again, toy(8)), predict(model, toy(8)))
    freeze_all_but_head(again)
    assert [n for n, p in again.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]


def test_linear_probe_trains_only_the_new_head(tmp_path, toy):
    save_model(tmp_path / "pre.pt", tiny_vit())
    model, _ = load_model(tmp_path / "pre.pt", num_classes=3, img_size=12)
    freeze_all_but_head(model)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head")}
    head = model.head.weight.clone()
    fit(model, toy(size=12, classes=3), None, TrainConfig(epochs=1, **FAST), **QUIET)
    for k, v in frozen.items():
        assert torch.equal(model.state_dict()[k], v), k
    assert not torch.equal(model.head.weight, head)


def test_seed_everything_seeds_python_and_torch():
    g = seed_everything(7)
    first = (random.random(), torch.rand(2), torch.rand(2, generator=g))
    g = seed_everything(7)
    again = (random.random(), torch.rand(2), torch.rand(2, generator=g))
    assert first[0] == again[0] and torch.equal(first[1], again[1]) and torch.equal(first[2], again[2])


def test_the_train_and_data_api_is_exported():
    names = {"ImageTensorDataset", "fashion_mnist", "load_dataset", "TrainConfig", "fit", "evaluate"}
    assert names | {"predict", "History", "seed_everything"} <= set(vitnb.__all__)
    assert vitnb.seed_everything is seed_everything


# --- bad input: one table ------------------------------------------------------------------------
class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        yield torch.zeros(1, 8, 8), 0


def pictures(n=4):
    return [(Image.new("L", (8, 8)), i % 4) for i in range(n)]


def fit_quick(model, data, tmp_path, **kwargs):
    return fit(model, data, None, TrainConfig(epochs=1, **FAST), checkpoint=tmp_path / "run.pt", **QUIET, **kwargs)


BAD_INPUT = {
    "images of another size": (
        lambda tmp_path: fit_quick(tiny_vit(), toy_images(size=16), tmp_path),
        ValueError,
        r"training set has images of shape \(1, 16, 16\).*expects \(1, 8, 8\).*set_input_size",
    ),
    "more classes than outputs": (
        lambda tmp_path: fit_quick(tiny_vit(), toy_images(classes=6), tmp_path),
        ValueError,
        r"labels up to 5.*4 outputs.*reset_classifier\(6\)",
    ),
    "empty training set": (
        lambda tmp_path: fit_quick(tiny_vit(), toy_images().subset(torch.tensor([], dtype=torch.long)), tmp_path),
        ValueError,
        "the training set is empty",
    ),
    "PIL images, not tensors": (
        lambda tmp_path: fit_quick(tiny_vit(), pictures(), tmp_path),
        TypeError,
        r"map-style data set .*item 0 of the list is \(Image, int\).*v2.ToImage",
    ),
    "an iterable-style data set": (
        lambda tmp_path: fit_quick(tiny_vit(), Stream(), tmp_path),
        TypeError,
        r"map-style data set \(len\(\) and \[i\]\).*a Stream has no len\(\) or \[i\]",
    ),
    "TensorDataset of flat vectors": (
        lambda tmp_path: fit_quick(
            tiny_vit(), torch.utils.data.TensorDataset(torch.zeros(4, 64), torch.zeros(4, dtype=torch.long)), tmp_path
        ),
        TypeError,
        r"images of shape \(64,\), not \(C, H, W\)",
    ),
    "batch_size 0": (
        lambda tmp_path: TrainConfig(batch_size=0),
        ValueError,
        "batch_size must be a positive int, got 0",
    ),
    "batch_size -1 in predict": (
        lambda tmp_path: predict(tiny_vit(), toy_images(4), batch_size=-1),
        ValueError,
        "batch_size must be a positive int, got -1",
    ),
    "epochs 0": (lambda tmp_path: TrainConfig(epochs=0), ValueError, "epochs must be positive, got 0"),
    "unknown precision": (lambda tmp_path: TrainConfig(precision="fp8"), ValueError, "precision must be one of"),
    "negative crop_pad": (lambda tmp_path: TrainConfig(crop_pad=-1), ValueError, "crop_pad must be an int >= 0"),
    "ema_decay 1": (
        lambda tmp_path: TrainConfig(ema_decay=1.0),
        ValueError,
        r"ema_decay must be in \[0, 1\) \(0 turns the weight average off.*got 1.0",
    ),
    "negative ema_decay": (lambda tmp_path: TrainConfig(ema_decay=-0.1), ValueError, r"ema_decay must be in \[0, 1\)"),
    "ema_decay a string": (lambda tmp_path: TrainConfig(ema_decay="0.9"), ValueError, r"got '0.9'"),
    "eval_flip a string": (
        lambda tmp_path: TrainConfig(eval_flip="no"),
        ValueError,
        "eval_flip must be True or False, got 'no'",
    ),
    "evaluate on images of another size": (
        lambda tmp_path: evaluate(tiny_vit(), toy_images(size=16)),
        ValueError,
        r"data set has images of shape \(1, 16, 16\)",
    ),
    "resume without a checkpoint path": (
        lambda tmp_path: fit(tiny_vit(), toy_images(), cfg=TrainConfig(epochs=1, **FAST), resume=True, **QUIET),
        ValueError,
        "resume=True needs a checkpoint path",
    ),
    "a checkpoint for a model it cannot hold": (
        lambda tmp_path: fit_quick(
            torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4)), toy_images(), tmp_path
        ),
        ValueError,
        "vitnb checkpoints hold a VisionTransformer, ResNet, PixelClassifier or MaskedAutoencoder, not a Sequential",
    ),
    "resume with another config of the same shapes": (
        lambda tmp_path: fit_quick(tiny_vit(drop_path_rate=0.1), toy_images(), tmp_path, resume=True),
        ValueError,
        r"cannot resume from .*run.pt: .*another config .*\(drop_path_rate: 0.0 there, 0.1 here\)",
    ),
    "resume a ViT run with a ResNet": (
        lambda tmp_path: fit_quick(resnet18(num_classes=4), toy_images(), tmp_path, resume=True),
        ValueError,
        r"cannot resume from .*: it holds a vit model of another config than this resnet",
    ),
    "resume a run without a weight average with one": (
        lambda tmp_path: fit(
            tiny_vit(),
            toy_images(),
            cfg=TrainConfig(epochs=1, ema_decay=0.9, **FAST),
            checkpoint=tmp_path / "run.pt",
            resume=True,
            **QUIET,
        ),
        ValueError,
        r"cannot resume from .*run.pt: it was trained without a moving average .*ema_decay=0.9; resume with .* \(0.0\)",
    ),
    "resume from a save_model file": (
        lambda tmp_path: fit_quick(tiny_vit(), toy_images(), tmp_path / "weights", resume=True),
        ValueError,
        r"no training state \(optimizer, scheduler, epoch, history, rng\).*fit without resume=True",
    ),
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A checkpoint of a finished 1-epoch run of `tiny_vit` (run.pt) and a save_model file (weights/run.pt)."""
    folder = tmp_path_factory.mktemp("run")
    model = tiny_vit()
    fit(model, toy_images(), None, TrainConfig(epochs=1, **FAST), checkpoint=folder / "run.pt", **QUIET)
    save_model(folder / "weights" / "run.pt", model)
    return folder


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_gets_a_clear_error_and_changes_no_file(case, finished_run):
    call, error, match = BAD_INPUT[case]
    before = {p: p.read_bytes() for p in finished_run.rglob("*.pt")}
    with pytest.raises(error, match=match):
        call(finished_run)
    assert {p: p.read_bytes() for p in finished_run.rglob("*.pt")} == before  # nothing written or overwritten


@pytest.mark.parametrize(
    "asked, local_rank, expected",
    [("cuda", "1", "cuda:1"), ("cuda:0", "1", "cuda:0"), ("cuda", None, "cuda"), ("cpu", "1", "cpu")],
)
def test_pick_device_gives_each_torchrun_process_its_own_gpu(monkeypatch, asked, local_rank, expected):
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert pick_device(asked) == torch.device(expected)
