"""One training loop for the notebooks, the CLI and the benchmarks.

`fit(model, train_set, val_set, TrainConfig(...), checkpoint="runs/x.pt")` trains with AdamW, linear
warmup then cosine decay, label smoothing and gradient clipping; shows a tqdm progress bar (loss,
accuracy, images/s); evaluates every epoch; writes an atomic checkpoint every epoch; and returns a
`History` that `History.plot()` draws. With `TrainConfig(ema_decay=0.999)` it keeps an exponential
moving average of the weights (`ModelEma`), validates and saves it, and leaves it in the model at the
end; `eval_flip=True` validates on each image and its mirror image (`predict(..., flip=True)`).
`resume=True` continues a killed run from its last checkpoint and ends with the same weights as an
uninterrupted run. Under `torchrun --nproc_per_node=N` the same call trains with
DistributedDataParallel (gloo on CPU, nccl on GPU); every rank keeps the same EMA, rank 0 logs and
checkpoints.

fit is a few named steps: `_setup` (device, DDP, loader, optimizer, EMA), `_restore` (resume),
`train_one_epoch` (made of `optimizer_step`s), `epoch_record` and `checkpoint_payload`. Data sets may
be an `ImageTensorDataset` or any map-style data set of (image tensor, int label) pairs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from .checkpoint import KINDS, checkpoint_header, load_checkpoint, model_kind
from .config import TrainConfig
from .data import BatchLoader, ImageTensorDataset, as_image_dataset
from .distributed import fit_session, init_distributed
from .interface import check_data
from .io import save_tensors
from .runtime import (
    autocast,
    eval_mode,
    memory_format_for,
    model_device,
    pick_device,
    resolve_precision,
)

# --- seeds, device and precision -----------------------------------------------------------------


# --- distributed ---------------------------------------------------------------------------------
# Joining and leaving the process group: vitnb.distributed (init_distributed, process_group).
def _all_sum(values: list[float], world_size: int) -> list[float]:
    if world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def _all_finite(loss: torch.Tensor, world_size: int) -> bool:
    finite = torch.isfinite(loss.detach()).all()
    if world_size > 1:
        flag = finite.float().cpu()
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag)
    return bool(finite)


# --- checks on the inputs ------------------------------------------------------------------------


# --- optimisation --------------------------------------------------------------------------------
def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters in two groups: matrices decay; biases, norms, pos_embed, cls_token do not."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token"))  # 1-D: biases and norm scales
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    groups = [g for g in param_groups(model, cfg.weight_decay) if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters (all requires_grad=False)")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), foreach=True)


def warmup_cosine(step: int, total: int, warmup: int, peak: float, floor: float) -> float:
    """Learning rate at `step` (0-based): linear warmup to `peak`, then cosine decay to `floor`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    return max(1, round(cfg.epochs * steps_per_epoch))


def make_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    total = total_steps(cfg, steps_per_epoch)
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total // 2)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, total, warmup, 1.0, cfg.min_lr / cfg.lr)
    )


# --- moving average of the weights ----------------------------------------------------------------
def ema_update_fn(decay: float):
    """AveragedModel's multi_avg_fn for an EMA whose decay warms up: min(decay, (1 + t) / (10 + t)) at step t.

    It gets the averaged and the current tensors of one device and dtype, and `t` (AveragedModel's count of
    updates so far). Integer tensors (BatchNorm's batch counter) are copied, not averaged.
    """

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], t: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():
            torch._foreach_copy_(averaged, current)
            return
        t = int(t)
        weight = 1.0 - min(decay, (1 + t) / (10 + t))  # of the current weights
        torch._foreach_lerp_(averaged, current, weight)  # averaged += weight * (current - averaged)

    return update


class ModelEma(AveragedModel):
    """Exponential moving average (EMA) of a model's parameters and buffers: `ema.module` is the averaged model.

    It starts as a copy of `model`. After optimizer step t (t = 1, 2, ...) `ema.update_parameters(model)` sets
    ema = d * ema + (1 - d) * weights with d = min(decay, (1 + t) / (10 + t)), so the first steps weigh more
    and the average leaves the initialisation quickly. torch's AveragedModel does the bookkeeping
    (`n_averaged` = 1 + steps, a buffer) and groups the tensors by device and dtype for one fused update each.
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__(model, multi_avg_fn=ema_update_fn(decay), use_buffers=True)
        self.requires_grad_(False)
        self.update_parameters(model)  # the copy of the initial weights: n_averaged = 1, t = 0

    @property
    def steps(self) -> int:
        """Optimizer steps averaged so far."""
        return int(self.n_averaged) - 1

    def load(self, state_dict: dict, steps: int) -> None:
        """Continue an average saved as (`ema.module.state_dict()`, `ema.steps`)."""
        self.module.load_state_dict(state_dict)
        self.n_averaged.fill_(steps + 1)


# --- history -------------------------------------------------------------------------------------
class History(list):
    """One dict per epoch (see `epoch_record`): epoch, train_loss, train_acc, val_acc, lr, images_per_s,
    epoch_time, train_time (seconds in training steps so far), time (seconds so far, evaluation included).

    val_acc scores the weights fit validates: the moving average when ema_decay > 0, else the trained weights.
    """

    def column(self, key: str) -> list:
        return [r.get(key) for r in self]

    @property
    def final(self) -> dict:
        return self[-1] if self else {}

    def plot(self, title: str | None = None, axes=None):
        """Loss, accuracy and learning rate per epoch, side by side; returns the figure."""
        import matplotlib.pyplot as plt

        if axes is None:
            fig, axes = plt.subplots(1, 3, figsize=(11, 3), dpi=80)
        else:
            fig = axes[0].figure
        epochs = self.column("epoch")
        axes[0].plot(epochs, self.column("train_loss"), "o-", label="train")
        axes[0].set(xlabel="epoch", ylabel="loss", title="training loss")
        axes[1].plot(epochs, self.column("train_acc"), "o-", label="train")
        if any(v is not None for v in self.column("val_acc")):
            axes[1].plot(epochs, self.column("val_acc"), "s-", label="validation")
        axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy")
        axes[1].legend()
        axes[2].plot(epochs, self.column("lr"), "o-")
        axes[2].set(xlabel="epoch", ylabel="learning rate (end of epoch)", title="schedule")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig


# --- evaluation ----------------------------------------------------------------------------------


def class_scores(model: nn.Module, x: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """The model's logits (B, num_classes) for images x (B, C, H, W); with `flip`, the mean of the softmax of
    x and of its horizontal mirror image (test-time augmentation). Either way the predicted class is the argmax."""
    logits = model(x)  # (B, num_classes)
    if not flip:
        return logits
    mirrored = model(x.flip(-1))  # the width axis
    return (logits.float().softmax(-1) + mirrored.float().softmax(-1)) / 2


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset,
    batch_size: int = 1024,
    precision: str = "auto",
    device: str | torch.device | None = None,
    transform=None,
    flip: bool = False,
) -> torch.Tensor:
    """Predicted class of every image (N,), computed on the model's device.

    dataset: an `ImageTensorDataset` or any map-style data set of (image tensor, int label) pairs.
    device: move the model there first (default: leave it where it is).
    transform: maps each batch before normalisation (for an ImageTensorDataset, floats in 0..255),
        e.g. `lambda x: shift_image(x, 2, 0)`.
    flip: average the softmax of each image and its horizontal mirror image (see `class_scores`); twice the cost.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    dataset = as_image_dataset(dataset)
    check_data(model, dataset, "data set")
    if device is not None:
        model.to(pick_device(device))
    device = model_device(model)
    precision = resolve_precision(precision, device)
    memory_format = memory_format_for(model)
    preds = []
    with eval_mode(model):
        for i in range(0, len(dataset), batch_size):
            images = dataset.images[i : i + batch_size].float()  # (B, C, H, W)
            x = dataset.normalize(images if transform is None else transform(images))
            with autocast(device, precision):
                scores = class_scores(model, x.to(device, memory_format=memory_format), flip)  # (B, num_classes)
            preds.append(scores.argmax(1).cpu())
    return torch.cat(preds)


def evaluate(model: nn.Module, dataset, **kwargs) -> float:
    """Top-1 accuracy of `model` on `dataset` (see `predict` for the data sets and options it takes, e.g. flip=True)."""
    dataset = as_image_dataset(dataset)
    return (predict(model, dataset, **kwargs) == dataset.labels).float().mean().item()


# --- finetuning ----------------------------------------------------------------------------------
def freeze_all_but_head(model: nn.Module) -> nn.Module:
    """Linear probe: only the classifier head (`model.classifier`) stays trainable."""
    for p in model.parameters():
        p.requires_grad = False
    for p in model.classifier.parameters():
        p.requires_grad = True
    return model


# --- the loop ------------------------------------------------------------------------------------
@dataclass
class Run:
    """What the steps of `fit` share: the model, its optimisation state, where and how it trains."""

    model: nn.Module
    net: nn.Module  # the model, wrapped in DistributedDataParallel when world_size > 1
    cfg: TrainConfig
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None  # CUDA fp16 ('amp') only
    device: torch.device
    precision: str
    rank: int
    world_size: int
    checkpoint: Path | None
    ema: ModelEma | None  # the moving average of the weights when cfg.ema_decay > 0

    @property
    def memory_format(self) -> torch.memory_format:
        return memory_format_for(self.model)

    @property
    def eval_model(self) -> nn.Module:
        """The weights fit validates, saves as "model" and returns: the moving average if there is one."""
        return self.model if self.ema is None else self.ema.module


def _check_inputs(model, train_set, val_set, checkpoint, resume):
    """(train_set, val_set) as in-memory data sets, checked against the model; ValueError for what cannot train."""
    train_set = as_image_dataset(train_set)
    check_data(model, train_set, "training set")
    if val_set is not None:
        val_set = as_image_dataset(val_set)
        check_data(model, val_set, "validation set")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    if checkpoint is not None:
        model_kind(model)  # raises for a model the checkpoint format cannot hold, before any training
    return train_set, val_set


def _setup(model, train_set, cfg, device, checkpoint) -> tuple[Run, BatchLoader]:
    """Pick the device and precision, join DDP if launched by torchrun, build the loader and the optimizer."""
    device = pick_device(device)
    precision = resolve_precision(cfg.precision, device)
    rank, world_size = init_distributed(device)
    model.to(device, memory_format=memory_format_for(model))
    net = model
    if world_size > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    loader = BatchLoader(
        train_set,
        cfg.batch_size,
        shuffle=True,
        augment=cfg.augment,
        pad=cfg.crop_pad,
        drop_last=world_size > 1,
        seed=cfg.seed,
        rank=rank,
        world_size=world_size,
    )
    if len(loader) == 0:
        raise ValueError(
            f"{len(train_set)} training images make no full global batch of "
            f"{cfg.batch_size * world_size}; lower --batch-size"
        )
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, len(loader))
    scaler = torch.amp.GradScaler("cuda") if precision == "amp" else None
    checkpoint = None if checkpoint is None else Path(checkpoint)
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    run = Run(model, net, cfg, optimizer, scheduler, scaler, device, precision, rank, world_size, checkpoint, ema)
    return run, loader


def check_resumable(state: dict, model: nn.Module, path: str | Path) -> None:
    """Raise a ValueError unless `state` is a run of fit for a model of exactly this kind and config."""
    kind = model_kind(model)
    try:
        saved = KINDS[state["kind"]].config_class.from_dict(state["config"]).to_dict()  # defaults filled in
    except (TypeError, ValueError):
        saved = state["config"]
    ours = model.cfg.to_dict()
    if state["kind"] != kind or saved != ours:
        keys = sorted(set(saved) | set(ours))
        diff = ", ".join(
            f"{k}: {saved.get(k)!r} there, {ours.get(k)!r} here" for k in keys if saved.get(k) != ours.get(k)
        )
        raise ValueError(
            f"cannot resume from {path}: it holds a {state['kind']} model of another config than this {kind} ({diff}); "
            f"pass the model it was trained with (vitnb.load_model rebuilds it) or write to another checkpoint path"
        )
    missing = [k for k in ("optimizer", "scheduler", "epoch", "history", "rng") if k not in state]
    if missing:
        raise ValueError(
            f"cannot resume from {path}: it holds a model but no training state ({', '.join(missing)}); "
            f"it was written by save_model, not fit(checkpoint=...). To train from its weights, "
            f"load them with vitnb.load_model and fit without resume=True"
        )


def _check_same_ema(state: dict, cfg: TrainConfig, path: Path) -> None:
    """A ValueError unless the run in `state` and this one both average the weights, or both do not."""
    saved = "raw_model" in state
    if saved != (cfg.ema_decay > 0):
        had = "with a moving average of the weights" if saved else "without a moving average of the weights"
        raise ValueError(
            f"cannot resume from {path}: it was trained {had}, this run has ema_decay={cfg.ema_decay}; "
            f"resume with the ema_decay of its train_config ({state.get('train_config', {}).get('ema_decay', 0.0)}) "
            f"or write to another checkpoint path"
        )


def _restore(run: Run, verbose: bool) -> History:
    """Continue the run in `run.checkpoint`: model, EMA, optimizer, scheduler and RNG state; returns its history."""
    state = load_checkpoint(run.checkpoint)
    check_resumable(state, run.model, run.checkpoint)
    _check_same_ema(state, run.cfg, run.checkpoint)
    if run.ema is not None:
        run.ema.load(state["model"], state["ema_steps"])
    run.model.load_state_dict(state.get("raw_model", state["model"]))
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if verbose and run.rank == 0:
        print(f"resumed from {run.checkpoint} after epoch {state['epoch']}")
    return History(state["history"])


def optimizer_step(run: Run, loss: torch.Tensor) -> None:
    """Backward pass, gradient clipping, one optimizer step (through the AMP scaler if any), one schedule step,
    one update of the moving average of the weights (if any)."""
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
    else:
        loss.backward()
    if run.cfg.grad_clip:
        nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.scheduler.step()
    if run.ema is not None:
        run.ema.update_parameters(run.model)


def _check_finite(run: Run, loss: torch.Tensor, epoch: int, step: int) -> None:
    """FloatingPointError (on every rank at once, so none waits forever) if the loss is NaN or infinite."""
    if _all_finite(loss, run.world_size):
        return
    where = f"; the last good checkpoint ({run.checkpoint}) is untouched" if run.checkpoint else ""
    raise FloatingPointError(
        f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}{where}. "
        f"Training diverged: lower the learning rate (now {run.scheduler.get_last_lr()[0]:.3g}, "
        f"peak {run.cfg.lr:.3g}), keep gradient clipping on, or check the data for NaNs"
    )


def train_one_epoch(run: Run, loader: BatchLoader, epoch: int, budget: int, bar, step_callbacks=()) -> list[float]:
    """One pass over `loader`, stopping at step `budget` of the run; this process's [loss sum, correct, seen].

    After every optimizer step each of `step_callbacks` is called as f(step, images, model): the run's steps so
    far (1-based), the training images all ranks have seen so far, and the model being trained."""
    run.net.train()
    loader.set_epoch(epoch)
    t0 = time.perf_counter()
    loss_sum, correct, seen = 0.0, 0, 0
    for step, (x, y) in enumerate(loader):
        if epoch * len(loader) + step >= budget:
            break
        x = x.to(run.device, non_blocking=True, memory_format=run.memory_format)  # (B, C, H, W)
        y = y.to(run.device, non_blocking=True)  # (B,)
        with autocast(run.device, run.precision):
            logits = run.net(x)  # (B, num_classes)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=run.cfg.label_smoothing)
        _check_finite(run, loss, epoch, step)
        optimizer_step(run, loss)
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        bar.update()
        if step_callbacks:
            images = epoch * len(loader.dataset) + min(
                (step + 1) * loader.batch_size * run.world_size, len(loader.dataset)
            )
            for callback in step_callbacks:
                callback(epoch * len(loader) + step + 1, images, run.model)
        bar.set_postfix(
            loss=f"{loss_sum / seen:.3f}",
            acc=f"{correct / seen:.3f}",
            img_s=f"{seen * run.world_size / (time.perf_counter() - t0):.0f}",
        )
    return [loss_sum, correct, seen]


def _evaluate_sharded(run: Run, dataset: ImageTensorDataset) -> float:
    """Accuracy of `run.eval_model` over the whole set (with flips if cfg.eval_flip), each rank scoring its slice."""
    part = dataset.subset(torch.arange(run.rank, len(dataset), run.world_size))
    correct = 0
    if len(part):
        preds = predict(run.eval_model, part, run.cfg.eval_batch_size, run.precision, flip=run.cfg.eval_flip)
        correct = (preds == part.labels).sum().item()
    correct, n = _all_sum([correct, len(part)], run.world_size)
    return correct / n


def epoch_record(run: Run, epoch: int, sums, val_acc, train_seconds: float, epoch_seconds: float, last: dict) -> dict:
    """The History row of an epoch, from the summed [loss, correct, seen] of all ranks; times add to `last`'s."""
    loss_sum, correct, seen = sums
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum / seen,
        "train_acc": correct / seen,
        "val_acc": val_acc,
        "lr": run.scheduler.get_last_lr()[0],
        "images_per_s": seen / train_seconds,
        "epoch_time": epoch_seconds,
        "train_time": last.get("train_time", 0.0) + train_seconds,
        "time": last.get("time", 0.0) + epoch_seconds,
    }


def checkpoint_payload(run: Run, train_set, history: History) -> dict:
    """Everything a checkpoint holds after an epoch: model and data (see vitnb.checkpoint), run state to resume.

    "model" holds the weights to use: the moving average when there is one; then "raw_model" holds the trained
    weights and "ema_steps" the optimizer steps averaged, to resume.
    """
    epoch = history.final["epoch"]
    ema = {} if run.ema is None else {"raw_model": run.model.state_dict(), "ema_steps": run.ema.steps}
    return {
        **checkpoint_header(run.model, train_set),
        "model": run.eval_model.state_dict(),
        **ema,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "epoch": epoch,
        "history": list(history),
        "rng": {"torch": torch.get_rng_state()},
        "loader": {"seed": run.cfg.seed, "epoch": epoch},
        "train_config": run.cfg.to_dict(),
        "precision": run.precision,
        "world_size": run.world_size,
    }


def _epoch_line(record: dict) -> str:
    val = f", val acc {record['val_acc']:.4f}" if record["val_acc"] is not None else ""
    return (
        f"epoch {record['epoch']:3d}: train loss {record['train_loss']:.4f}, train acc {record['train_acc']:.4f}"
        f"{val}, {record['images_per_s']:.0f} img/s, {record['epoch_time']:.1f} s"
    )


def fit(
    model: nn.Module,
    train_set,
    val_set=None,
    cfg: TrainConfig | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    verbose: bool = True,
    max_epochs_this_run: int | None = None,
    callbacks: tuple = (),
    step_callbacks: tuple = (),
) -> History:
    """Train `model` in place on `train_set`, evaluating on `val_set` after every epoch.

    With cfg.ema_decay > 0 the model ends with the averaged weights (a `ModelEma` of the run), which are
    also the ones validated and saved as the checkpoint's "model"; callbacks see the trained weights.
    With cfg.eval_flip validation averages each image with its mirror image (`predict(..., flip=True)`).

    train_set, val_set: `ImageTensorDataset`s, or any map-style data sets of (image tensor, int label).
    checkpoint: path written atomically after every epoch (see vitnb.checkpoint for what it holds).
    resume: continue from `checkpoint` if it exists (same result as never stopping); a checkpoint of
        another model kind or config is a ValueError, and is left as it is.
    max_epochs_this_run: stop after this many epochs (the run can be resumed later).
    callbacks: functions called as f(epoch, record, model) after every epoch's checkpoint.
    step_callbacks: functions called as f(step, images, model) after every optimizer step (step counts from 1,
        images are the training images seen so far), e.g. to score a learning curve at chosen steps; a callback
        that evaluates the model must leave it in training mode (`evaluate` does).
    Raises ValueError for data that does not fit the model and FloatingPointError on a non-finite loss.

    Under torchrun fit joins the process group if nobody has and returns after a barrier (every rank done, the
    last checkpoint written), still in the group; on an error it leaves a group it joined at once, so the other
    ranks stop too. To own the group, wrap the script in `vitnb.distributed.process_group()`.
    """
    with fit_session(device):
        return _fit(
            model,
            train_set,
            val_set,
            cfg,
            checkpoint,
            resume,
            device,
            progress,
            verbose,
            max_epochs_this_run,
            callbacks,
            step_callbacks,
        )


def _fit(
    model,
    train_set,
    val_set,
    cfg,
    checkpoint,
    resume,
    device,
    progress,
    verbose,
    max_epochs_this_run,
    callbacks,
    step_callbacks,
) -> History:
    """`fit` inside the process group (if any)."""
    cfg = cfg or TrainConfig()
    train_set, val_set = _check_inputs(model, train_set, val_set, checkpoint, resume)
    run, loader = _setup(model, train_set, cfg, device, checkpoint)
    torch.manual_seed(cfg.seed)  # stochastic depth and anything else drawn from the global generator
    history = _restore(run, verbose) if resume and run.checkpoint.exists() else History()
    budget = total_steps(cfg, len(loader))
    num_epochs = math.ceil(budget / len(loader))
    start = len(history)
    stop = num_epochs if max_epochs_this_run is None else min(num_epochs, start + max_epochs_this_run)
    steps = min(budget, stop * len(loader)) - start * len(loader)
    with tqdm(total=steps, disable=not progress or run.rank != 0, unit="batch", leave=True) as bar:
        for epoch in range(start, stop):
            bar.set_description(f"epoch {epoch + 1}/{num_epochs}")
            t0 = time.perf_counter()
            sums = train_one_epoch(run, loader, epoch, budget, bar, step_callbacks)
            train_seconds = time.perf_counter() - t0
            sums = _all_sum(sums, run.world_size)
            val_acc = None if val_set is None else _evaluate_sharded(run, val_set)
            record = epoch_record(run, epoch, sums, val_acc, train_seconds, time.perf_counter() - t0, history.final)
            history.append(record)
            if verbose and run.rank == 0:
                bar.write(_epoch_line(record))
            if run.checkpoint is not None and run.rank == 0:
                save_tensors(run.checkpoint, checkpoint_payload(run, train_set, history))
            for callback in callbacks:
                callback(epoch + 1, record, model)
    if run.ema is not None:
        model.load_state_dict(run.ema.module.state_dict())
    model.eval()
    return history
