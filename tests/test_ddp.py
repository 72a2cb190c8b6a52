"""DistributedDataParallel on the CPU: 2 processes (gloo) train exactly like 1 process on the combined batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import toy_images

from vitnb import VisionTransformer, preset
from vitnb.checkpoint import load_checkpoint
from vitnb.train import TrainConfig, fit

GLOBAL_BATCH = 16


def toy_setup(batch_size: int):
    """Model, data and config shared by the worker processes and the single-process reference."""
    data = toy_images(64)
    torch.manual_seed(0)
    model = VisionTransformer(preset("cpu", img_size=8, num_classes=4, embed_dim=24, depth=2, num_heads=2))
    cfg = TrainConfig(epochs=2, batch_size=batch_size, lr=3e-3, warmup_epochs=0.5, precision="fp32")
    return model, data, cfg


@pytest.mark.slow  # torchrun starts two Python processes
def test_two_processes_match_one_process_on_the_combined_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(Path(__file__).parent / "ddp_worker.py"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for key, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][key]), key  # DDP keeps the replicas identical

    model, data, cfg = toy_setup(batch_size=GLOBAL_BATCH)
    history = fit(model, data, data, cfg, progress=False, verbose=False)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(ranks[0]["model"][key], value, atol=1e-4, rtol=1e-4, msg=key)
    for a, b in zip(ranks[0]["history"], history, strict=True):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and a["val_acc"] == b["val_acc"]
    ckpt = load_checkpoint(tmp_path / "ddp.pt")  # rank 0 checkpointed
    assert (ckpt["world_size"], ckpt["epoch"], len(ckpt["history"])) == (2, 2, 2)
