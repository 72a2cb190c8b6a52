"""The process group of a distributed run: joined with a timeout, left cleanly, on success and on error.

torchrun starts N processes and tells each its RANK and WORLD_SIZE; `process_group()` joins them into one
group (gloo on CPU, nccl on CUDA) and leaves it again:

    with process_group(device):     # joins under torchrun (WORLD_SIZE > 1); a no-op in a single process
        fit(...)                    # fit sees the group joined and leaves it to its owner
        ...                         # rank 0 writes its files
    # success: a final barrier (no rank exits while rank 0 still writes), then destroy_process_group()
    # error:   destroy_process_group() at once, no barrier (see below)

`fit` runs inside `fit_session()`: it joins the group if nobody has and ends with a barrier (every rank has
finished, rank 0 has written the last checkpoint), but stays in the group, so a script can call fit again
(joining a second group after leaving one is not reliable under torchrun: the new group can read the old one's
addresses). A group nobody left is destroyed when the process exits (atexit), never left to the interpreter's
teardown, where gloo's threads abort the process ("terminate called without an active exception").

When one rank fails, the others must not wait for it forever. The failing rank leaves the group without a
barrier (the others are somewhere else: a barrier would only wait for them until the timeout), which closes
its connections, so a peer waiting in a collective fails at once; torchrun, seeing one process exit with an
error, stops the others. A peer that is alive but stuck is caught by the group's timeout: joining and every
collective give up after `timeout` seconds (default $VITNB_DIST_TIMEOUT, else 300).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import sys
import time
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from .errors import UsageError
from .runtime import pick_device

__all__ = [
    "DEFAULT_TIMEOUT",
    "default_timeout",
    "env_rank",
    "fit_session",
    "init_distributed",
    "is_distributed_error",
    "launched",
    "leave",
    "lost_contact",
    "process_group",
    "report_to_torchrun",
]

DEFAULT_TIMEOUT = 300.0  # seconds; $VITNB_DIST_TIMEOUT overrides it


def launched() -> bool:
    """True in a process that torchrun started as one of several (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def env_rank() -> int:
    """This process's rank as torchrun set it (0 outside torchrun); readable before the group is joined."""
    return int(os.environ.get("RANK", "0"))


def default_timeout() -> float:
    """Seconds a rank waits for the others (to join, in a collective, at the final barrier)."""
    text = os.environ.get("VITNB_DIST_TIMEOUT")
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"VITNB_DIST_TIMEOUT must be a number of seconds > 0, got {text!r}")
    return value


def init_distributed(device: torch.device, timeout: float | None = None) -> tuple[int, int]:
    """Join the process group torchrun set up (env RANK/WORLD_SIZE), if not yet joined; returns (rank, world_size).

    `timeout` (seconds, default `default_timeout()`) bounds the wait for the other ranks, here and in every
    collective of the group."""
    if not launched():
        return 0, 1
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # nccl binds each process to its own GPU
        seconds = default_timeout() if timeout is None else timeout
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=seconds))
        global _exit_hook
        if not _exit_hook:
            atexit.register(_destroy_at_exit)
            _exit_hook = True
    return dist.get_rank(), dist.get_world_size()


_exit_hook = False


def _destroy_at_exit() -> None:
    """A group still joined when the process ends is destroyed here (no barrier: the process may be ending on
    an error), before the interpreter's teardown."""
    if dist.is_initialized():
        dist.destroy_process_group()


def leave(ok: bool) -> None:
    """Leave the process group: after a barrier if `ok` (every rank got here without error), else at once."""
    if not dist.is_initialized():
        return
    try:
        if ok:
            dist.barrier()
    finally:
        dist.destroy_process_group()


@contextmanager
def process_group(device: str | torch.device | None = None, timeout: float | None = None):
    """Join the process group on entry (under torchrun, unless already joined) and leave it on exit.

    Yields (rank, world_size). On a normal exit every rank waits at a final barrier, so no rank leaves
    while another (rank 0 writing the checkpoint) is still at work, then destroys the group; on an error
    it destroys the group at once and the error propagates. A group joined before entry is left as it is.
    """
    if not launched() or dist.is_initialized():
        yield (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        return
    rank, world_size = init_distributed(pick_device(device), timeout)
    ok = False
    try:
        yield rank, world_size
        ok = True
    finally:
        leave(ok)


def lost_contact(err: BaseException, timeout: float | None = None) -> str:
    """A short account of an error from the process group: what the user should look at, then gloo's or nccl's
    own first sentence, without its source-file prefix."""
    text = " ".join(str(err).split())
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h|hpp):\d+\]\s*", "", text)  # [.../pair.cc:561] Connection closed...
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0] or type(err).__name__
    seconds = default_timeout() if timeout is None else timeout
    return (
        f"stopped: another process failed (see its error line) or did not answer within {seconds:g} s "
        f"({first.rstrip('.')})"
    )


def report_to_torchrun(line: str) -> None:
    """Record a process's one-line error where torchrun looks ($TORCHELASTIC_ERROR_FILE), so its summary of the
    failed run shows that line instead of a link to the docs."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    record = {"message": {"message": line, "extraInfo": {"py_callstack": line, "timestamp": str(int(time.time()))}}}
    try:
        with open(path, "w") as f:
            json.dump(record, f)
    except OSError:
        pass  # the report is a courtesy; the error line on stderr is the record


@contextmanager
def fit_session(device: str | torch.device | None = None, timeout: float | None = None):
    """What `fit` runs in: join the group if launched and nobody has; on success end with a barrier and stay
    joined (for the next fit; left by its owner or at exit); on an error leave at once if joined here (so the
    other ranks stop instead of waiting) or leave that to the owner, through whose `process_group` it passes."""
    if not launched():
        yield
        return
    owner = not dist.is_initialized()
    if owner:
        init_distributed(pick_device(device), timeout)
    try:
        yield
    except BaseException:
        if owner:
            leave(ok=False)
        raise
    dist.barrier()


def is_distributed_error(err: BaseException) -> bool:
    """True for an error raised by the process group itself (a peer gone, a timeout), not by our code."""
    if "torch.distributed" not in sys.modules:  # nothing distributed ran (and `--help` stays torch-free)
        return False
    return isinstance(err, dist.DistError) or (
        isinstance(err, RuntimeError) and any(word in str(err) for word in ("Gloo", "gloo", "NCCL", "Timed out"))
    )
