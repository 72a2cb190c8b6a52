"""Command line: `python -m vitnb COMMAND --help`.

    python -m vitnb fetch-data
    python -m vitnb pretrain --epochs 5 --out runs/pretrain/vit_fractal.pt          # fractals, generated offline
    python -m vitnb finetune --checkpoint runs/pretrain/vit_fractal.pt --labels-per-class 60 --epochs 20
    python -m vitnb evaluate --checkpoint runs/finetune/model.pt --shift 2
    python -m vitnb predict shoe.png shirt.jpg --checkpoint runs/finetune/model.pt --top-k 3
    python -m vitnb export --checkpoint runs/finetune/model.pt                      # -> model.safetensors
    python -m vitnb explore --checkpoint runs/finetune/model.pt --out explorer.html  # attention maps, one page

Training commands call `vitnb.train.fit`, print a summary before they start and write a run folder beside
the checkpoint (`model.pt` -> `model.run/` with `config.json` and a per-epoch `metrics.csv`: vitnb.runs).
A mistake of the user's (a bad value, a missing file, a checkpoint that does not fit the data: a
`vitnb.errors.UsageError`, or an OSError about a file the user named) prints one `error: ...` line and exits
with status 2; a diverged run prints one line and exits with 1. Any other exception is a bug in vitnb and
keeps its traceback. `--debug` shows the traceback of every error.
Distributed: `torchrun --nproc_per_node=2 -m vitnb finetune ...`; the processes leave together once rank 0
has written everything, and an error in one prints `error: rank R: ...` and ends the run (vitnb.distributed).

    parser.py    the argument parser and its argument types (no torch: `--help` answers at once)
    commands.py  the commands, which import what they need
"""

from __future__ import annotations

import os
import sys

from ..errors import UsageError
from .commands import COMMANDS
from .parser import build_parser

__all__ = ["main"]


def _one_line(err: BaseException) -> str:
    """The message of an error on one line (OSErrors as 'file: reason')."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).splitlines()) or type(err).__name__


def _join_group(args) -> bool:
    """Under torchrun, join the process group before a training command loads anything; True if joined.

    `main` leaves it: every process at a final barrier once rank 0 has written the checkpoint and the run
    folder, or, on an error, at once after printing its error line, so the others stop instead of waiting for
    it (see vitnb.distributed)."""
    if not hasattr(args, "dist_timeout") or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    from ..distributed import init_distributed
    from ..runtime import pick_device

    init_distributed(pick_device(args.device), args.dist_timeout)
    return True


def _leave_group(ok: bool) -> None:
    from ..distributed import leave

    leave(ok)


def _error(message: str, cause: bool = True) -> None:
    """Print `error: MESSAGE` to stderr. Under torchrun the line reads `error: rank R: MESSAGE`, so it says which
    process failed, and a process that failed by itself (`cause`) also hands the line to torchrun's summary."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        print(f"error: {message}", file=sys.stderr, flush=True)
        return
    line = f"error: rank {os.environ.get('RANK', '0')}: {message}"
    # One write for the line and its newline: the ranks share stderr, and print's two writes can interleave.
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    if cause:
        from ..distributed import report_to_torchrun

        report_to_torchrun(line)


def _lost_contact(err: BaseException, args) -> str | None:
    """The message for an error of the process group itself (a peer gone, a timeout), else None."""
    if "vitnb.distributed" not in sys.modules:  # no process group was joined (and --help stays torch-free)
        return None
    from ..distributed import is_distributed_error, lost_contact

    return lost_contact(err, getattr(args, "dist_timeout", None)) if is_distributed_error(err) else None


def _exit_status(err: Exception, args) -> int | None:
    """How `main` reports an error on one line: its exit status, after printing the line; None for a bug (the
    caller raises it, with its traceback).

    2: the user's mistake (a UsageError, or an OSError about a file the user named: missing, unreadable, not a
    directory); 1: training diverged (a non-finite loss stops every rank at the same step), or under torchrun
    the process group failed (another process failed or timed out)."""
    if isinstance(err, UsageError) or (isinstance(err, OSError) and err.filename is not None):
        _error(_one_line(err))
        return 2
    if isinstance(err, FloatingPointError):
        _error(_one_line(err))
        return 1
    message = _lost_contact(err, args)
    if message is not None:
        _error(message, cause=False)
        return 1
    return None


def main(argv: list[str] | None = None) -> int:
    """Run `python -m vitnb ARGV`; returns the exit status (0 done, 1 training failed, 2 a usage error,
    130 interrupted). Usage errors, a diverged run and, under torchrun, a process that lost the others print
    one `error: ...` line to stderr (`error: rank R: ...` under torchrun); with --debug they raise, with their
    traceback. Any other exception is a bug and raises."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    args, joined = None, False
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        joined = _join_group(args)
        COMMANDS[args.command](args)
        if joined:
            joined = False
            _leave_group(ok=True)  # the final barrier: its errors are reported below like any other
    except SystemExit as exit_:  # --help
        return exit_.code or 0
    except KeyboardInterrupt:
        if debug:
            raise
        _error("interrupted")
        return 130
    except Exception as err:
        status = None if debug else _exit_status(err, args)
        if status is None:
            raise
        return status
    finally:
        if joined:  # after the error line is printed: the others learn of the failure when the group closes
            _leave_group(ok=False)
    return 0
