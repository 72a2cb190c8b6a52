"""Where and how a model runs: seeds, the device, the precision, and a model's train/eval mode.

The engine (`vitnb.train`), the maps (`vitnb.rollout`, `vitnb.faithfulness`) and the CLI all take these from
here. The process group of a distributed run is `vitnb.distributed`.
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from .config import PRECISIONS
from .errors import UsageError
from .interface import ImageClassifier

__all__ = [
    "autocast",
    "cpu_has_fast_bf16",
    "eval_mode",
    "memory_format_for",
    "model_device",
    "pick_device",
    "resolve_precision",
    "seed_everything",
]


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python's and torch's global generators; return a torch.Generator seeded the same way."""
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """`device` if given (or $VITNB_DEVICE), else cuda, then mps, then cpu.

    Under torchrun a bare 'cuda' means this process's own GPU, cuda:$LOCAL_RANK, so N processes on one
    machine use N GPUs.
    """
    device = device or os.environ.get("VITNB_DEVICE")
    if device:
        device = torch.device(device)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def cpu_has_fast_bf16() -> bool:
    """True if this CPU does bf16 matmuls in hardware (AMX or AVX512-BF16), where bf16 autocast pays off.

    Without them PyTorch emulates bf16 in software, which is slower than fp32.
    """
    cpu = torch.cpu
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'amp' on CUDA, 'bf16' on a CPU with fast bf16, else 'fp32'. $VITNB_PRECISION overrides 'auto'."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = os.environ.get("VITNB_PRECISION", "auto")
    if precision == "auto":
        if device.type == "cuda":
            return "amp"
        return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    if precision == "amp" and device.type != "cuda":
        raise UsageError(f"precision='amp' needs a CUDA device, got {device}; use 'bf16' or 'fp32'")
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast context for a resolved precision ('fp32' -> no autocast)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "amp":
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def memory_format_for(model: nn.Module) -> torch.memory_format:
    """channels_last for models that ask for it (CNNs: faster convolutions), else the default."""
    fast = isinstance(model, ImageClassifier) and model.channels_last
    return torch.channels_last if fast else torch.contiguous_format


@contextmanager
def eval_mode(model: nn.Module):
    """Run the block with `model` in eval mode, then give every submodule back the train/eval mode it had."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))
