"""One training loop for the notebooks, the CLI and the benchmarks.

`fit(model, train_set, val_set, TrainConfig(...), checkpoint="runs/x.pt")` trains with AdamW, linear
warmup then cosine decay, label smoothing and gradient clipping; shows a tqdm progress bar (loss,
accuracy, images/s); evaluates every epoch; writes an atomic checkpoint every epoch; and returns a
`History` that `History.plot()` draws. `resume=True` continues a killed run from its last checkpoint and
ends with the same weights as an uninterrupted run. Under `torchrun --nproc_per_node=N` the same call
trains with DistributedDataParallel (gloo on CPU, nccl on GPU); rank 0 logs and checkpoints.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .data import BatchLoader, ImageTensorDataset

PRECISIONS = ("auto", "fp32", "bf16", "amp")


@dataclass
class TrainConfig:
    """Everything about a training run except the model and the data."""

    epochs: float = 10  # a fraction trains part of the last epoch (e.g. 0.1 = a tenth of the data once)
    batch_size: int = 256  # per process; under DDP the global batch is batch_size * world_size
    lr: float = 1e-3  # peak learning rate, reached after the warmup
    min_lr: float = 1e-5  # the cosine decays to this
    warmup_epochs: float = 1.0  # linear warmup from ~0 (fractions allowed; capped at half the run)
    weight_decay: float = 0.05  # not applied to biases, norms, position embeddings, cls token
    label_smoothing: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    augment: bool = True  # random crop (crop_pad px of padding) + horizontal flip
    crop_pad: int = 2  # 0 = flips only (shifts cost a ViT with large patches a lot early in training)
    seed: int = 0
    precision: str = "auto"  # 'auto' | 'fp32' | 'bf16' (CPU/GPU autocast) | 'amp' (CUDA fp16 + scaler)
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not self.epochs > 0:
            raise ValueError(f"TrainConfig.epochs must be positive, got {self.epochs!r}")
        for name in ("batch_size", "eval_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if not isinstance(self.crop_pad, int) or self.crop_pad < 0:
            raise ValueError(f"TrainConfig.crop_pad must be an int >= 0, got {self.crop_pad!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be positive, got {self.lr}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# --- device and precision ------------------------------------------------------------------------
def pick_device(device: str | torch.device | None = None) -> torch.device:
    """`device` if given (or $VITNB_DEVICE), else cuda, then mps, then cpu."""
    device = device or os.environ.get("VITNB_DEVICE")
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_fast_bf16() -> bool:
    """True if this CPU does bf16 matmuls in hardware (AMX or AVX512-BF16), where bf16 autocast pays off.

    Without them PyTorch emulates bf16 and it is several times *slower* than fp32 (an AVX2-only CPU).
    """
    cpu = torch.cpu
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'amp' on CUDA, 'bf16' on a CPU with fast bf16, else 'fp32'. $VITNB_PRECISION overrides 'auto'."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = os.environ.get("VITNB_PRECISION", "auto")
    if precision == "auto":
        if device.type == "cuda":
            return "amp"
        return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    if precision == "amp" and device.type != "cuda":
        raise ValueError(f"precision='amp' needs a CUDA device, got {device}; use 'bf16' or 'fp32'")
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast context for a resolved precision ('fp32' -> no autocast)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "amp":
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


# --- distributed ---------------------------------------------------------------------------------
def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun set up (env RANK/WORLD_SIZE); returns (rank, world_size)."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _all_sum(values: list[float], world_size: int) -> list[float]:
    if world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def _memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last for CNNs that ask for it (2x faster convolutions on CPU here), else the default."""
    return torch.channels_last if getattr(model, "channels_last", False) else torch.contiguous_format


def _all_finite(loss: torch.Tensor, world_size: int) -> bool:
    finite = torch.isfinite(loss.detach()).all()
    if world_size > 1:
        flag = finite.float().cpu()
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag)
    return bool(finite)


# --- checks on the inputs ------------------------------------------------------------------------
def model_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """(C, H, W) the model expects, or (C,) if any image size works, or None if unknown."""
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        return None
    if getattr(cfg, "img_size", None) and not getattr(cfg, "any_size", False):
        return (cfg.in_chans, cfg.img_size, cfg.img_size)
    return (cfg.in_chans,)


def model_num_classes(model: nn.Module) -> int | None:
    cfg = getattr(model, "cfg", None)
    return getattr(cfg, "num_classes", None)


def check_data(model: nn.Module, dataset: ImageTensorDataset, name: str = "training set") -> None:
    """Raise a ValueError saying what is wrong and what to do if `dataset` cannot train `model`."""
    if dataset is None or len(dataset) == 0:
        raise ValueError(f"the {name} is empty; check the data set name, split and --labels-per-class selection")
    expected = model_input_shape(model)
    got = tuple(dataset.images.shape[1:])
    if expected is not None and got[: len(expected)] != expected:
        raise ValueError(
            f"the {name} has images of shape {got} (C, H, W) but the model expects {expected}; "
            f"build the model for this data (e.g. preset('cpu', img_size={got[1]}, in_chans={got[0]})), "
            f"call model.set_input_size({got[1]}) for another size, or resize the data"
        )
    num_classes = model_num_classes(model)
    top = int(dataset.labels.max())
    if num_classes is not None and top >= num_classes:
        raise ValueError(
            f"the {name} has labels up to {top} ({top + 1} classes) but the model has {num_classes} outputs; "
            f"build it with num_classes={dataset.num_classes} or call model.reset_classifier({dataset.num_classes})"
        )


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


# --- history -------------------------------------------------------------------------------------
class History(list):
    """One dict per epoch: epoch, train_loss, train_acc, val_acc, lr, epoch_time, train_time, time."""

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
@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: ImageTensorDataset,
    batch_size: int = 1024,
    precision: str = "auto",
    device: torch.device | str | None = None,
    transform=None,
) -> torch.Tensor:
    """Predicted class of every image (N,). `transform` (optional) maps uint8-as-float images before
    normalisation, e.g. `lambda x: shift_image(x, 2, 0)`."""
    device = pick_device(device) if not isinstance(device, torch.device) else device
    precision = resolve_precision(precision, device)
    was_training = model.training
    model.eval()
    preds = []
    for i in range(0, len(dataset), batch_size):
        images = dataset.images[i : i + batch_size].float()  # (B, C, H, W) in 0..255
        x = dataset.normalize(images if transform is None else transform(images))
        with autocast(device, precision):
            preds.append(model(x.to(device, memory_format=_memory_format(model))).argmax(1).cpu())
    model.train(was_training)
    return torch.cat(preds)


def evaluate(model: nn.Module, dataset: ImageTensorDataset, **kwargs) -> float:
    """Top-1 accuracy of `model` on `dataset` (see `predict` for the options)."""
    return (predict(model, dataset, **kwargs) == dataset.labels).float().mean().item()


def _evaluate_sharded(model, dataset, cfg, device, precision, rank, world_size) -> float:
    """Accuracy over the whole set, each rank scoring its own slice."""
    shard = torch.arange(rank, len(dataset), world_size)
    part = dataset.subset(shard)
    correct = (predict(model, part, cfg.eval_batch_size, precision, device) == part.labels).sum().item()
    correct, n = _all_sum([correct, len(part)], world_size)
    return correct / n


# --- the loop ------------------------------------------------------------------------------------
def model_spec(model: nn.Module) -> dict:
    """How to rebuild `model` from a checkpoint: {'kind': ..., 'config': dict}."""
    cfg = getattr(model, "cfg", None)
    kind = getattr(model, "kind", "vit")
    return {"kind": kind, "config": cfg.to_dict() if cfg is not None else {}}


def fit(
    model: nn.Module,
    train_set: ImageTensorDataset,
    val_set: ImageTensorDataset | None = None,
    cfg: TrainConfig | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    verbose: bool = True,
    max_epochs_this_run: int | None = None,
    callbacks: tuple = (),
) -> History:
    """Train `model` in place on `train_set`, evaluating on `val_set` after every epoch.

    checkpoint: path written atomically after every epoch (model, optimizer, scheduler, epoch, history,
        RNG and loader state, configs), readable with torch.load(weights_only=True).
    resume: continue from `checkpoint` if it exists (same result as never stopping).
    max_epochs_this_run: stop after this many epochs (the run can be resumed later).
    callbacks: functions called as f(epoch, record, model) after every epoch's checkpoint.
    Raises ValueError for data that does not fit the model and FloatingPointError on a non-finite loss.
    """
    cfg = cfg or TrainConfig()
    check_data(model, train_set, "training set")
    if val_set is not None:
        check_data(model, val_set, "validation set")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    device = pick_device(device)
    precision = resolve_precision(cfg.precision, device)
    rank, world_size = init_distributed(device)
    memory_format = _memory_format(model)
    model.to(device, memory_format=memory_format)
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
    history, start_epoch = History(), 0
    torch.manual_seed(cfg.seed)  # stochastic depth and anything else drawn from the global generator

    if resume and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start_epoch = History(state["history"]), state["epoch"]
        torch.set_rng_state(state["rng"]["torch"])
        if verbose and rank == 0:
            print(f"resumed from {checkpoint} after epoch {start_epoch}")

    budget = total_steps(cfg, len(loader))
    num_epochs = math.ceil(budget / len(loader))
    last_epoch = num_epochs if max_epochs_this_run is None else min(num_epochs, start_epoch + max_epochs_this_run)
    steps = min(budget, last_epoch * len(loader)) - start_epoch * len(loader)
    bar = tqdm(total=steps, disable=not progress or rank != 0, unit="batch", leave=True)
    elapsed = history.final.get("time", 0.0)
    train_elapsed = history.final.get("train_time", 0.0)
    for epoch in range(start_epoch, last_epoch):
        net.train()
        loader.set_epoch(epoch)
        bar.set_description(f"epoch {epoch + 1}/{num_epochs}")
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for step, (x, y) in enumerate(loader):
            if epoch * len(loader) + step >= budget:
                break
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            with autocast(device, precision):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            if not _all_finite(loss, world_size):  # every rank stops together, none waits forever
                bar.close()
                where = f"; the last good checkpoint ({checkpoint}) is untouched" if checkpoint else ""
                raise FloatingPointError(
                    f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}{where}. "
                    f"Training diverged: lower the learning rate (now {scheduler.get_last_lr()[0]:.3g}, "
                    f"peak {cfg.lr:.3g}), keep gradient clipping on, or check the data for NaNs"
                )
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            n = len(y)
            loss_sum += loss.item() * n
            correct += (logits.argmax(1) == y).sum().item()
            seen += n
            bar.update()
            bar.set_postfix(
                loss=f"{loss_sum / seen:.3f}",
                acc=f"{correct / seen:.3f}",
                img_s=f"{seen * world_size / (time.perf_counter() - t0):.0f}",
            )
        train_seconds = time.perf_counter() - t0
        loss_sum, correct, seen = _all_sum([loss_sum, correct, seen], world_size)
        val_acc = None
        if val_set is not None:
            val_acc = _evaluate_sharded(model, val_set, cfg, device, precision, rank, world_size)
        epoch_seconds = time.perf_counter() - t0
        elapsed += epoch_seconds
        train_elapsed += train_seconds
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "val_acc": val_acc,
            "lr": scheduler.get_last_lr()[0],
            "images_per_s": seen / train_seconds,
            "epoch_time": epoch_seconds,
            "train_time": train_elapsed,
            "time": elapsed,
        }
        history.append(record)
        if verbose and rank == 0:
            val = f", val acc {val_acc:.4f}" if val_acc is not None else ""
            bar.write(
                f"epoch {epoch + 1:3d}: train loss {record['train_loss']:.4f}, train acc "
                f"{record['train_acc']:.4f}{val}, {record['images_per_s']:.0f} img/s, {epoch_seconds:.1f} s"
            )
        if checkpoint is not None and rank == 0:
            save_checkpoint(
                checkpoint,
                {
                    **model_spec(model),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "history": list(history),
                    "rng": {"torch": torch.get_rng_state()},
                    "loader": {"seed": cfg.seed, "epoch": epoch + 1},
                    "train_config": cfg.to_dict(),
                    "precision": precision,
                    "world_size": world_size,
                },
            )
        for callback in callbacks:
            callback(epoch + 1, record, model)
    bar.close()
    model.eval()
    return history
