"""Run folders for library users: config.json and a metrics.csv that `fit` fills, continued on resume; only rank 0
writes."""

import csv
import json

import pytest

from vitnb.config import TrainConfig
from vitnb.errors import UsageError
from vitnb.runs import MetricsCsv, RunFolder
from vitnb.train import fit


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_library_run_writes_its_folder_and_resumes_its_metrics(tmp_path, toy, tiny_vit):
    train, val = toy(16), toy(8, seed=1)
    cfg = TrainConfig(epochs=2, batch_size=8, precision="fp32")
    run = RunFolder(tmp_path / "runs" / "m.pt")
    assert run.path == tmp_path / "runs" / "m.run"
    run.write_config(run.config(tiny_vit(), train, val, cfg, device="cpu"))
    config = json.loads((run.path / "config.json").read_text())
    assert config["model"]["kind"] == "vit" and config["train"] == cfg.to_dict()
    assert config["data"]["classes"] == ["a", "b", "c", "d"] and (
        config["data"]["train_size"],
        config["data"]["val_size"],
    ) == (16, 8)
    assert (config["device"], config["precision"], config["checkpoint"]) == ("cpu", "fp32", str(run.checkpoint))

    model = tiny_vit()
    common = dict(checkpoint=run.checkpoint, device="cpu", progress=False, verbose=False)
    fit(model, train, val, cfg, max_epochs_this_run=1, callbacks=(run.metrics_csv(),), **common)
    (first,) = _rows(run.path / "metrics.csv")
    history = fit(model, train, val, cfg, resume=True, callbacks=(run.metrics_csv(resume=True),), **common)
    rows = _rows(run.path / "metrics.csv")
    assert rows[0] == first and [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["val_acc"]) == history[1]["val_acc"]


def test_only_rank_0_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    metrics = MetricsCsv(tmp_path / "run" / "metrics.csv")
    metrics(1, {"epoch": 1, "train_loss": 0.5}, None)
    RunFolder(tmp_path / "m.pt").write_config({"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_named_like_a_run_folder_is_refused(tmp_path):
    with pytest.raises(UsageError, match="m.run ends in .run"):
        RunFolder(tmp_path / "m.run")
