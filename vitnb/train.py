"""One training loop for the notebooks, the CLI, the benchmarks and MAE pretraining.

`fit(model, train_set, val_set, TrainConfig(...), checkpoint="runs/x.pt")` trains with AdamW, warmup then
cosine decay and gradient clipping (`vitnb.optim`), a moving average of the weights if asked; shows a progress
bar; validates and writes an atomic checkpoint every epoch; `resume=True` continues a killed run to the same
weights as an uninterrupted one; under `torchrun` it trains with DistributedDataParallel (rank 0 logs and
checkpoints). It minimises its `objective`: `Classification` by default; `vitnb.pretrain`'s masked
reconstruction trains a `MaskedAutoencoder` through the same loop. It returns a `History`, one row per epoch
(`vitnb.plotting.plot_history` draws it).

fit is a few named steps: `_setup` (device, DDP, loader, optimizer, EMA), `_restore` (resume),
`train_one_epoch` (made of `optimizer_step`s), `epoch_record` and `checkpoint_payload`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import check_resumable, checkpoint_header, load_checkpoint, model_kind
from .config import TrainConfig
from .data import BatchLoader, ImageTensorDataset, as_image_dataset
from .distributed import fit_session, init_distributed
from .errors import UsageError
from .evaluation import predict
from .interface import check_data
from .io import save_tensors
from .optim import ModelEma, make_optimizer, make_scheduler, total_steps
from .runtime import autocast, memory_format_for, pick_device, resolve_precision

__all__ = [
    "Classification",
    "History",
    "Objective",
    "Run",
    "checkpoint_payload",
    "epoch_record",
    "fit",
    "optimizer_step",
    "train_one_epoch",
]


# --- across ranks (joining and leaving the process group: vitnb.distributed) ------------------------
def _all_sum(values: list, world_size: int) -> list:
    """The sums of `values` over all ranks; None entries stay None."""
    if world_size == 1:
        return values
    t = torch.tensor([0.0 if v is None else v for v in values], dtype=torch.float64)
    dist.all_reduce(t)
    return [None if v is None else s for v, s in zip(values, t.tolist(), strict=True)]


# --- what fit returns, what it minimises, what its steps share ------------------------------------
class History(list):
    """One dict per epoch (see `epoch_record`): epoch, train_loss, train_acc (None for an objective without
    labels), the objective's validation column (`val_acc` for classification, `val_loss` for MAE; None without a
    validation set), lr, images_per_s, epoch_time, train_time (seconds in training steps so far), time (seconds so
    far, evaluation included). Validation scores the moving average of the weights when ema_decay > 0."""

    def column(self, key: str) -> list:
        return [r.get(key) for r in self]

    @property
    def final(self) -> dict:
        return self[-1] if self else {}


class Objective(Protocol):
    """What fit minimises, and how it validates.

    loss(run, x, y): the batch's loss (a scalar tensor to backpropagate) and its number of correct predictions
        (None for an objective without labels); it calls `run.ddp_model` under `autocast(run.device, run.precision)`.
    score_sum(run, dataset): the sum over `dataset`'s examples of the validation score of `run.eval_model`; fit
        divides by the number of examples and records the mean as column `val_metric`.
    find_unused_parameters: True if some trainable parameters get no gradient (DistributedDataParallel must know).
    """

    val_metric: ClassVar[str]
    find_unused_parameters: ClassVar[bool]

    def loss(self, run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int | None]: ...

    def score_sum(self, run: Run, dataset: ImageTensorDataset) -> float: ...


class Classification:
    """Cross-entropy on the labels (with cfg.label_smoothing); validated by top-1 accuracy (`val_acc`, with
    test-time flips if cfg.eval_flip)."""

    val_metric: ClassVar[str] = "val_acc"
    find_unused_parameters: ClassVar[bool] = False

    def loss(self, run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        with autocast(run.device, run.precision):
            logits = run.ddp_model(x)  # (B, num_classes)
        if not isinstance(logits, torch.Tensor):  # e.g. a MaskedAutoencoder's (loss, pred, mask)
            raise UsageError(f"{type(run.model).__name__} returns no logits: pass fit the objective it trains for, "
                             "e.g. vitnb.pretrain.MaskedReconstruction() for a MaskedAutoencoder")  # fmt: skip
        loss = F.cross_entropy(logits.float(), y, label_smoothing=run.cfg.label_smoothing)
        return loss, (logits.argmax(1) == y).sum().item()

    def score_sum(self, run: Run, dataset: ImageTensorDataset) -> float:
        preds = predict(run.eval_model, dataset, run.cfg.eval_batch_size, run.precision, flip=run.cfg.eval_flip)
        return (preds == dataset.labels).sum().item()


@dataclass
class Run:
    """What the steps of `fit` share: the model, its optimisation state, where and how it trains."""

    model: nn.Module  # the model being trained, as the caller passed it
    ddp_model: nn.Module  # what the training step calls: `model` in DistributedDataParallel when world_size > 1
    cfg: TrainConfig
    objective: Objective
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


# --- setting up and resuming -----------------------------------------------------------------------
def _check_inputs(model, train_set, val_set, checkpoint, resume):
    """(train_set, val_set) as in-memory data sets, checked against the model; UsageError for what cannot train."""
    train_set = as_image_dataset(train_set)
    check_data(model, train_set, "training set")
    if val_set is not None:
        val_set = as_image_dataset(val_set)
        check_data(model, val_set, "validation set")
    if resume and checkpoint is None:
        raise UsageError("resume=True needs a checkpoint path")
    if checkpoint is not None:
        model_kind(model)  # raises for a model the checkpoint format cannot hold, before any training
    return train_set, val_set


def _setup(model, train_set, cfg, device, checkpoint, objective) -> tuple[Run, BatchLoader]:
    """Pick the device and precision, join DDP if launched by torchrun, build the loader and the optimizer."""
    device = pick_device(device)
    precision = resolve_precision(cfg.precision, device)
    rank, world_size = init_distributed(device)
    model.to(device, memory_format=memory_format_for(model))
    ddp_model, ids = model, [device.index] if device.type == "cuda" else None
    if world_size > 1:
        unused = objective.find_unused_parameters
        ddp_model = nn.parallel.DistributedDataParallel(model, ids, find_unused_parameters=unused)
    augment = dict(augment=cfg.augment, pad=cfg.crop_pad)
    shard = dict(drop_last=world_size > 1, rank=rank, world_size=world_size)  # this rank's part of each batch
    loader = BatchLoader(train_set, cfg.batch_size, shuffle=True, seed=cfg.seed, **augment, **shard)
    if len(loader) == 0:
        raise UsageError(
            f"{len(train_set)} training images make no full global batch of "
            f"{cfg.batch_size * world_size}; lower --batch-size"
        )
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, len(loader))
    scaler = torch.amp.GradScaler("cuda") if precision == "amp" else None
    checkpoint = None if checkpoint is None else Path(checkpoint)
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    run = Run(model, ddp_model, cfg, objective, optimizer, scheduler, scaler, device, precision, rank, world_size,
              checkpoint, ema)  # fmt: skip
    return run, loader


def _restore(run: Run, verbose: bool) -> History:
    """Continue the run in `run.checkpoint`: model, EMA, optimizer, scheduler and RNG state; returns its history."""
    state = load_checkpoint(run.checkpoint)
    check_resumable(state, run.model, run.checkpoint, run.cfg.ema_decay)
    if run.ema is not None:
        run.ema.load(state["model"], state["ema_steps"])
    run.model.load_state_dict(state.get("raw_model", state["model"]))
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if verbose and run.rank == 0:
        print(f"resumed from {run.checkpoint} after epoch {state['epoch']}")
    return History(state["history"])


# --- an epoch --------------------------------------------------------------------------------------
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
    finite = torch.isfinite(loss.detach()).all().float().cpu()
    if run.world_size > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    if finite:
        return
    where = f"; the last good checkpoint ({run.checkpoint}) is untouched" if run.checkpoint else ""
    raise FloatingPointError(
        f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}{where}. "
        f"Training diverged: lower the learning rate (now {run.scheduler.get_last_lr()[0]:.3g}, "
        f"peak {run.cfg.lr:.3g}), keep gradient clipping on, or check the data for NaNs"
    )


def train_one_epoch(run: Run, loader: BatchLoader, epoch: int, budget: int, bar, step_callbacks=()) -> list:
    """One pass over `loader`, stopping at step `budget` of the run; this process's [loss sum, correct, seen]
    (correct is None for an objective without labels).

    After every optimizer step each of `step_callbacks` is called as f(step, images, model): the run's steps so
    far (1-based), the training images all ranks have seen so far, and the model being trained."""
    run.ddp_model.train()
    loader.set_epoch(epoch)
    t0 = time.perf_counter()
    loss_sum, correct, seen = 0.0, 0, 0
    for step, (x, y) in enumerate(loader):
        if epoch * len(loader) + step >= budget:
            break
        x = x.to(run.device, non_blocking=True, memory_format=run.memory_format)  # (B, C, H, W)
        y = y.to(run.device, non_blocking=True)  # (B,)
        loss, batch_correct = run.objective.loss(run, x, y)
        _check_finite(run, loss, epoch, step)
        optimizer_step(run, loss)
        loss_sum += loss.item() * len(y)
        correct = None if batch_correct is None else correct + batch_correct
        seen += len(y)
        bar.update()
        if step_callbacks:
            n = len(loader.dataset)
            images = epoch * n + min((step + 1) * loader.batch_size * run.world_size, n)
            for callback in step_callbacks:
                callback(epoch * len(loader) + step + 1, images, run.model)
        acc = {} if correct is None else {"acc": f"{correct / seen:.3f}"}
        img_s = f"{seen * run.world_size / (time.perf_counter() - t0):.0f}"
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", **acc, img_s=img_s)
    return [loss_sum, correct, seen]


def _validate(run: Run, dataset: ImageTensorDataset | None) -> float | None:
    """The objective's mean validation score of `run.eval_model` over the whole set, each rank scoring its slice."""
    if dataset is None:
        return None
    part = dataset.subset(torch.arange(run.rank, len(dataset), run.world_size))
    total = run.objective.score_sum(run, part) if len(part) else 0.0
    total, n = _all_sum([total, len(part)], run.world_size)
    return total / n


def epoch_record(run: Run, epoch: int, sums, val_score, train_seconds: float, epoch_seconds: float, last: dict) -> dict:
    """The History row of an epoch, from the summed [loss, correct, seen] of all ranks; times add to `last`'s."""
    loss_sum, correct, seen = sums
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum / seen,
        "train_acc": None if correct is None else correct / seen,
        run.objective.val_metric: val_score,
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
    scores = [("train loss", record["train_loss"]), ("train acc", record["train_acc"])]
    scores += [(key.replace("_", " "), record.get(key)) for key in ("val_acc", "val_loss")]
    shown = "".join(f", {name} {value:.4f}" for name, value in scores if value is not None)
    return f"epoch {record['epoch']:3d}: {shown[2:]}, {record['images_per_s']:.0f} img/s, {record['epoch_time']:.1f} s"


def _epoch(run: Run, loader: BatchLoader, val_set, epoch: int, budget: int, bar, step_callbacks, last) -> dict:
    """Train one epoch and validate; returns its History row."""
    t0 = time.perf_counter()
    sums = train_one_epoch(run, loader, epoch, budget, bar, step_callbacks)
    train_seconds = time.perf_counter() - t0
    sums = _all_sum(sums, run.world_size)
    val_score = _validate(run, val_set)
    return epoch_record(run, epoch, sums, val_score, train_seconds, time.perf_counter() - t0, last)


# --- the loop --------------------------------------------------------------------------------------
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
    objective: Objective | None = None,
) -> History:
    """Train `model` in place on `train_set` for `objective` (default `Classification()`), validating on `val_set`
    after every epoch. With cfg.ema_decay > 0 the model ends with the averaged weights (a `ModelEma`), which are
    also the ones validated and saved as the checkpoint's "model"; callbacks see the trained weights.

    train_set, val_set: `ImageTensorDataset`s, or any map-style data sets of (image tensor, int label).
    checkpoint: path written atomically after every epoch (see vitnb.checkpoint for what it holds).
    resume: continue from `checkpoint` if it exists (same result as never stopping); a checkpoint of another
        model kind or config is a UsageError, and is left as it is.
    max_epochs_this_run: stop after this many epochs (the run can be resumed later).
    callbacks: functions called as f(epoch, record, model) after every epoch's checkpoint.
    step_callbacks: functions called as f(step, images, model) after every optimizer step (see `train_one_epoch`);
        a callback that evaluates the model must leave it in training mode (`evaluate` does).
    Raises UsageError for data that does not fit the model and FloatingPointError on a non-finite loss.

    Under torchrun fit joins the process group if nobody has and returns after a barrier (every rank done, the
    last checkpoint written), still in the group; on an error it leaves a group it joined at once, so the other
    ranks stop too. To own the group, wrap the script in `vitnb.distributed.process_group()`.
    """
    with fit_session(device):
        cfg = cfg or TrainConfig()
        train_set, val_set = _check_inputs(model, train_set, val_set, checkpoint, resume)
        run, loader = _setup(model, train_set, cfg, device, checkpoint, objective or Classification())
        torch.manual_seed(cfg.seed)  # stochastic depth, MAE's masks: anything drawn from the global generator
        history = _restore(run, verbose) if resume and run.checkpoint.exists() else History()
        budget = total_steps(cfg, len(loader))
        num_epochs, start = math.ceil(budget / len(loader)), len(history)
        stop = num_epochs if max_epochs_this_run is None else min(num_epochs, start + max_epochs_this_run)
        steps = min(budget, stop * len(loader)) - start * len(loader)
        with tqdm(total=steps, disable=not progress or run.rank != 0, unit="batch", leave=True) as bar:
            for epoch in range(start, stop):
                bar.set_description(f"epoch {epoch + 1}/{num_epochs}")
                record = _epoch(run, loader, val_set, epoch, budget, bar, step_callbacks, history.final)
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
