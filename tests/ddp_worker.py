"""Launched by test_ddp.py under torchrun: train a tiny ViT or MAE (argv[2]) with DDP and save this rank's weights."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_ddp import GLOBAL_BATCH, toy_setup  # noqa: E402

from vitnb.distributed import process_group  # noqa: E402
from vitnb.train import fit  # noqa: E402

if __name__ == "__main__":
    out, kind = Path(sys.argv[1]), sys.argv[2]
    model, data, cfg, objective = toy_setup(GLOBAL_BATCH // 2, kind)
    with process_group("cpu") as (rank, _):  # fit runs inside it; the group is left after the last save
        history = fit(
            model, data, data, cfg, checkpoint=out / "ddp.pt", progress=False, verbose=False, objective=objective
        )
        torch.save({"model": model.state_dict(), "history": list(history)}, out / f"rank{rank}.pt")
