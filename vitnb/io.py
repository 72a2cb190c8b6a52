"""Files written whole or not at all.

`atomic_write` writes to a uniquely named temp file beside the target, then renames it: a crash mid-write
never leaves a half-written file where a good one was, and several processes writing the same file at once
(ranks under torchrun preparing the same data) each leave a complete copy.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch

__all__ = ["atomic_write", "save_tensors"]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(f)` on a uniquely named temp file beside `path`, then rename it to `path`.

    Readers see either the old file or the complete new one; the temp file is removed if `write` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_tensors(path: str | os.PathLike, payload: dict) -> Path:
    """Write `payload` (tensors, numbers, strings, lists, dicts) to `path` atomically with torch.save."""
    return atomic_write(path, lambda f: torch.save(payload, f))
