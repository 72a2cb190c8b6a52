"""`fit` under torchrun without the CLI (issue #25): a script that calls fit twice and never touches the process
group ends cleanly (fit joins once, stays joined, the group is destroyed at exit)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import os, sys, time
sys.path.insert(0, {tests!r})
import torch.distributed as dist
from test_ddp import toy_setup
from vitnb.train import fit

for i in range(2):
    model, data, cfg, _ = toy_setup(batch_size=8)
    history = fit(model, data, data, cfg, progress=False, verbose=False)
    print(f"fit {{i}}: rank {{dist.get_rank()}}, loss {{history.final['train_loss']:.6f}}", flush=True)
if dist.get_rank() == 0:
    time.sleep(1)  # rank 0 still busy (writing files) while rank 1 exits
"""


@pytest.mark.slow  # torchrun starts two Python processes
def test_a_script_that_calls_fit_twice_ends_cleanly(tmp_path):
    script = tmp_path / "twice.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "terminate called" not in run.stderr
    # The ranks share one stdout and print writes a line and its newline separately, so two ranks' lines can
    # interleave ("fit 1: rank 0, loss 1.3fit 1: rank 1, loss 1.3\n\n"): read the records, not the lines.
    records = sorted(re.findall(r"fit (\d): rank (\d), loss (\d+\.\d{6})", run.stdout))
    assert [(i, r) for i, r, _ in records] == [(str(i), str(r)) for i in (0, 1) for r in (0, 1)], run.stdout
    assert len({loss for _, _, loss in records}) == 1  # the same run each time, on both ranks
