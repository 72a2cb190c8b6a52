"""Where the notebooks' runs live, and the checkpoints that one notebook hands to the next.

Relative `runs/...` paths are resolved against the project checkout (or $VITNB_RUNS), so a notebook
running in `notebooks/` and a benchmark running in the repo root see the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..data import checkout_root

FRACTAL_VIT_PATH = "runs/05_pretraining/vit_fractal.pt"  # notebook 05 writes them, notebook 06 finetunes them
MAE_VIT_PATH = "runs/05_pretraining/vit_mae.pt"
FMNIST_VIT_PATH = "runs/06_finetuning/vit_fmnist.pt"  # notebook 06 writes it, notebooks 02, 03 and 07 read it


def runs_root() -> Path:
    """Parent of `runs/`: $VITNB_RUNS's parent if set, else the source checkout, else the working folder."""
    if "VITNB_RUNS" in os.environ:
        return Path(os.environ["VITNB_RUNS"]).parent
    return checkout_root() or Path.cwd()


def run_path(path: str | os.PathLike) -> Path:
    """An absolute path for `path`; relative `runs/...` ones go under $VITNB_RUNS if set, others under `runs_root()`."""
    path = Path(path)
    if path.is_absolute():
        return path
    if "VITNB_RUNS" in os.environ and path.parts[:1] == ("runs",):
        return Path(os.environ["VITNB_RUNS"]).joinpath(*path.parts[1:])
    return runs_root() / path


def shown_path(path: str | os.PathLike) -> Path:
    """`path` as messages show it: relative to `runs_root()` when it lies there, so no machine's folders leak out."""
    path = Path(path)
    return path.relative_to(runs_root()) if path.is_relative_to(runs_root()) else path
