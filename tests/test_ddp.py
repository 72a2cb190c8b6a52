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
from vitnb.config import TrainConfig
from vitnb.mae import MAEConfig, MaskedAutoencoder
from vitnb.pretrain import MaskedReconstruction
from vitnb.train import fit

GLOBAL_BATCH = 16


def toy_setup(batch_size: int, kind: str = "vit"):
    """Model, data, config and objective shared by the worker processes and the single-process reference:
    a tiny ViT classifier ('vit') or a masked autoencoder around it ('mae')."""
    data = toy_images(64)
    torch.manual_seed(0)
    vit = preset("cpu", img_size=8, num_classes=4, embed_dim=24, depth=2, num_heads=2)
    cfg = TrainConfig(epochs=2, batch_size=batch_size, lr=3e-3, warmup_epochs=0.5, precision="fp32")
    if kind == "mae":
        return MaskedAutoencoder(MAEConfig(vit, decoder_dim=16, decoder_depth=1)), data, cfg, MaskedReconstruction()
    return VisionTransformer(vit), data, cfg, None


def torchrun(tmp_path, kind: str) -> list[dict]:
    """Train `toy_setup(kind)` in two processes (ddp_worker.py); returns each rank's weights and history."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    worker = str(Path(__file__).parent / "ddp_worker.py")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run = subprocess.run(
        [*launch, worker, str(tmp_path), kind],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.slow  # torchrun starts two Python processes
def test_two_processes_match_one_process_on_the_combined_batch(tmp_path):
    ranks = torchrun(tmp_path, "vit")
    for key, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][key]), key  # DDP keeps the replicas identical

    model, data, cfg, _ = toy_setup(batch_size=GLOBAL_BATCH)
    history = fit(model, data, data, cfg, progress=False, verbose=False)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(ranks[0]["model"][key], value, atol=1e-4, rtol=1e-4, msg=key)
    for a, b in zip(ranks[0]["history"], history, strict=True):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and a["val_acc"] == b["val_acc"]
    ckpt = load_checkpoint(tmp_path / "ddp.pt")  # rank 0 checkpointed
    assert (ckpt["world_size"], ckpt["epoch"], len(ckpt["history"])) == (2, 2, 2)


@pytest.mark.slow  # torchrun starts two Python processes
def test_mae_pretraining_trains_under_ddp(tmp_path):
    """The encoder's head gets no gradient in an autoencoder: DDP must be told (find_unused_parameters)."""
    ranks = torchrun(tmp_path, "mae")
    for key, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][key]), key  # DDP keeps the replicas identical
    history = ranks[0]["history"]
    assert len(history) == 2 and history[0]["train_acc"] is None
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    losses = [[(r["train_loss"], r["val_loss"]) for r in rank["history"]] for rank in ranks]
    assert losses[0] == losses[1]  # summed over the ranks
    ckpt = load_checkpoint(tmp_path / "ddp.pt")
    assert (ckpt["kind"], ckpt["world_size"], ckpt["epoch"]) == ("mae", 2, 2)
