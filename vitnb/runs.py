"""Run folders: what a training run was (config.json) and how each epoch went (metrics.csv), beside its checkpoint.

    runs/finetune/model.pt     the checkpoint `fit(checkpoint=...)` writes after every epoch
    runs/finetune/model.run/   config.json: model, training configuration, data set, device, precision
                               metrics.csv: one row per finished epoch (the records of `fit`'s History)

    run = RunFolder("runs/finetune/model.pt")
    run.write_config(run.config(model, train_set, val_set, cfg))
    fit(model, train_set, val_set, cfg, checkpoint=run.checkpoint, resume=resume, callbacks=(run.metrics_csv(resume),))

Under torchrun only rank 0 writes: the other ranks' calls do nothing, so a script runs the same code on every rank.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from .checkpoint import data_info, load_checkpoint, model_kind
from .config import TrainConfig
from .distributed import env_rank
from .errors import UsageError
from .model import num_params
from .runtime import pick_device, resolve_precision

__all__ = ["MetricsCsv", "RunFolder"]


class MetricsCsv:
    """A `fit` callback that appends one row per finished epoch to a CSV file (its columns: the first record's keys).

    The file is started afresh with `history`, the records of the epochs already trained (a resumed run's
    checkpoint history), so it always holds the whole run. Only rank 0 writes.
    """

    def __init__(self, path: str | os.PathLike, history: list[dict] = ()):
        self.path = Path(path)
        if env_rank() != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        for record in history:
            self._append(record)

    def __call__(self, epoch: int, record: dict, model=None) -> None:
        if env_rank() == 0:
            self._append(record)

    def _append(self, record: dict) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(record))
            if new:
                writer.writeheader()
            writer.writerow(record)


class RunFolder:
    """The run folder of a checkpoint: `runs/x/model.pt` -> `runs/x/model.run/` (config.json, metrics.csv)."""

    def __init__(self, checkpoint: str | os.PathLike):
        self.checkpoint = Path(checkpoint)
        if self.checkpoint.suffix == ".run":
            raise UsageError(
                f"the checkpoint {self.checkpoint} ends in .run, the suffix of run folders; "
                f"name it e.g. {self.checkpoint.with_suffix('.pt')}"
            )
        self.path = self.checkpoint.with_suffix(".run")

    def config(self, model, train_set, val_set=None, cfg: TrainConfig | None = None, device=None) -> dict:
        """What config.json records: the model (kind, config, parameters), the training configuration, the data
        set (name, classes, preprocessing, sizes), the device and precision `fit` resolves, the checkpoint."""
        cfg = cfg or TrainConfig()
        device = pick_device(device)
        return {
            "model": {"kind": model_kind(model), "config": model.cfg.to_dict(), "parameters": num_params(model, False)},
            "train": cfg.to_dict(),
            "data": {
                **(data_info(train_set) or {}),
                "train_size": len(train_set),
                "val_size": None if val_set is None else len(val_set),
            },
            "device": str(device),
            "precision": resolve_precision(cfg.precision, device),
            "checkpoint": str(self.checkpoint.resolve()),
        }

    def write_config(self, config: dict) -> Path:
        """Write config.json (making the folder); returns its path."""
        path = self.path / "config.json"
        if env_rank() == 0:
            self.path.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def metrics_csv(self, resume: bool = False) -> MetricsCsv:
        """The `fit` callback writing metrics.csv; `resume`: it starts with the epochs the checkpoint holds."""
        resumed = resume and env_rank() == 0 and self.checkpoint.exists()
        return MetricsCsv(
            self.path / "metrics.csv", load_checkpoint(self.checkpoint).get("history", []) if resumed else []
        )
