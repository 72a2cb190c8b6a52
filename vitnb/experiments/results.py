"""Results of repeated runs: one summary per group of runs, one markdown table writer, one CSV writer."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError

__all__ = ["markdown_table", "summarize", "write_csv"]


def summarize(
    rows: Sequence[dict], by: Sequence[str], metric: str = "test_acc", also: Sequence[str] = ()
) -> list[dict]:
    """One dict per group of rows that share the values of the `by` keys, in the order groups first appear.

    Each holds the `by` values, `n` (runs in the group) and the `mean`, `min` and `max` of `metric` over
    the group; then, for every key in `also`, its value if it is the same for every run of the group
    (e.g. a parameter count), else its mean (e.g. a training time).
    """
    if not rows:
        raise UsageError("no rows to summarize")
    missing = [k for k in (*by, metric, *also) if k not in rows[0]]
    if missing:
        raise UsageError(f"rows have no key(s) {missing}; they have {sorted(rows[0])}")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    out = []
    for key, runs in groups.items():
        values = [r[metric] for r in runs]
        summary = {**dict(zip(by, key, strict=True)), "n": len(runs)}
        summary.update(mean=statistics.fmean(values), min=min(values), max=max(values))
        for k in also:
            column = [r[k] for r in runs]
            summary[k] = column[0] if all(v == column[0] for v in column) else statistics.fmean(column)
        out.append(summary)
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A markdown table: a header line, a separator line and one line per row (cells are str()-ed)."""
    if any(len(r) != len(header) for r in rows):
        raise UsageError(f"every row needs {len(header)} cells, one per header column {list(header)}")
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """Write dicts (runs or summaries) to a CSV file, one column per key; list values are joined with ';'."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ";".join(map(str, v)) if isinstance(v, list) else v for k, v in r.items()})
    return path
