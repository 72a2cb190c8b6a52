"""How a distributed run reports failures, in one process (the runs themselves are in test_ddp_cli.py): the error
line names the rank, torchrun's summary gets the same line, the process group's own errors read as one line."""

import json

import pytest
import torch.distributed as dist

from vitnb import distributed
from vitnb.cli import main
from vitnb.errors import UsageError


@pytest.fixture
def rank1(monkeypatch, tmp_path):
    """The environment torchrun gives the second of two processes (without a group to join)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(tmp_path / "error.json"))
    return tmp_path / "error.json"


def test_under_torchrun_the_error_line_names_the_rank_and_reaches_torchrun(rank1, capsys):
    assert main(["finetune", "--epochs", "0"]) == 2
    line = "error: rank 1: argument --epochs: must be > 0, got 0 (see `python -m vitnb finetune --help`)"
    assert capsys.readouterr().err == line + "\n"
    message = json.loads(rank1.read_text())["message"]  # what torchrun's summary prints for this rank
    assert message["message"] == line and int(message["extraInfo"]["timestamp"]) > 0


def test_outside_torchrun_the_error_line_is_unchanged(monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["finetune", "--epochs", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: argument --epochs")


def test_a_lost_peer_reads_as_one_line():
    err = dist.DistBackendError(
        "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer "
        "[127.0.0.1]:29873. This is typically caused by a remote worker crashing. Check the logs. GLHF!"
    )
    assert distributed.is_distributed_error(err) and not distributed.is_distributed_error(ValueError("x"))
    assert distributed.lost_contact(err, timeout=30) == (
        "stopped: another process failed (see its error line) or did not answer within 30 s "
        "(Connection closed by peer [127.0.0.1]:29873)"
    )


def test_the_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("VITNB_DIST_TIMEOUT", raising=False)
    assert distributed.default_timeout() == distributed.DEFAULT_TIMEOUT
    monkeypatch.setenv("VITNB_DIST_TIMEOUT", "12.5")
    assert distributed.default_timeout() == 12.5
    monkeypatch.setenv("VITNB_DIST_TIMEOUT", "soon")
    with pytest.raises(UsageError, match="VITNB_DIST_TIMEOUT must be a number of seconds > 0, got 'soon'"):
        distributed.default_timeout()


def test_a_single_process_joins_no_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.process_group() as (rank, world_size):
        assert (rank, world_size, dist.is_initialized()) == (0, 1, False)
