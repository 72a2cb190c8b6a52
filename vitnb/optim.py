"""Optimisation for `fit`: AdamW's parameter groups, the warmup-cosine schedule, the moving average of the
weights (`ModelEma`) and the linear probe (`freeze_all_but_head`)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .config import TrainConfig
from .errors import UsageError

__all__ = [
    "ModelEma",
    "ema_update_fn",
    "freeze_all_but_head",
    "make_optimizer",
    "make_scheduler",
    "param_groups",
    "total_steps",
    "warmup_cosine",
]


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
    """AdamW over `param_groups(model, cfg.weight_decay)` at peak learning rate cfg.lr."""
    groups = [g for g in param_groups(model, cfg.weight_decay) if g["params"]]
    if not groups:
        raise UsageError("the model has no trainable parameters (all requires_grad=False); unfreeze some to train")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), foreach=True)


def warmup_cosine(step: int, total: int, warmup: int, peak: float, floor: float) -> float:
    """Learning rate at `step` (0-based): linear warmup to `peak`, then cosine decay to `floor`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of a run of cfg.epochs (which may be fractional) epochs."""
    return max(1, round(cfg.epochs * steps_per_epoch))


def make_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: warmup over cfg.warmup_epochs (at most half the run), cosine decay to cfg.min_lr."""
    total = total_steps(cfg, steps_per_epoch)
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total // 2)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, total, warmup, 1.0, cfg.min_lr / cfg.lr)
    )


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


def freeze_all_but_head(model: nn.Module) -> nn.Module:
    """Linear probe: only the classifier head (`model.classifier`) stays trainable."""
    for p in model.parameters():
        p.requires_grad = False
    for p in model.classifier.parameters():
        p.requires_grad = True
    return model
