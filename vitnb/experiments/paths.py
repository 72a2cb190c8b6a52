"""Where the notebooks' runs live, and the checkpoints that one notebook hands to the next.

One rule, whether vitnb runs from a checkout or is installed: relative `runs/...` paths go under $VITNB_RUNS
if it is set, else under `runs/` in the project the working directory belongs to: the nearest folder at or
above it that holds a pyproject.toml (as git finds its repository), else the working directory itself. So a
notebook running in `notebooks/` and a benchmark running in the project's root see the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "FMNIST_VIT_PATH",
    "FRACTAL_VIT_PATH",
    "MAE_VIT_PATH",
    "project_root",
    "run_path",
    "runs_root",
    "shown_path",
]

FRACTAL_VIT_PATH = "runs/05_pretraining/vit_fractal.pt"  # notebook 05 writes them, notebook 06 finetunes them
MAE_VIT_PATH = "runs/05_pretraining/vit_mae.pt"
FMNIST_VIT_PATH = "runs/06_finetuning/vit_fmnist.pt"  # notebook 06 writes it, notebooks 02, 03 and 07 read it


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above `start` (default: the working directory) that holds a pyproject.toml,
    else `start` itself."""
    here = Path.cwd() if start is None else Path(start).resolve()
    return next((folder for folder in (here, *here.parents) if (folder / "pyproject.toml").is_file()), here)


def runs_root() -> Path:
    """Parent of `runs/`: $VITNB_RUNS's parent if set, else `project_root()`."""
    if "VITNB_RUNS" in os.environ:
        return Path(os.environ["VITNB_RUNS"]).parent
    return project_root()


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
