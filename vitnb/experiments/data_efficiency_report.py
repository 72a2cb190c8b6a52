"""Notebook 06's results in a table and in words, computed from `data_efficiency.run`'s rows.

`results_table` is the notebook's table; `findings` writes its results paragraphs, every number and every
comparison word taken from the measurements, so that the text cannot drift from the table.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError
from .data_efficiency import PLATEAU_GAIN, gap_share, last_doubling_gain, summary
from .results import markdown_table

__all__ = ["findings", "results_table"]


def _step_batch(groups: Sequence[dict]) -> str:
    """The header of the time-per-step column: 'per step of B' when every run trained with batch B."""
    batches = {s["batch_size"] for s in groups}
    return f"per step of {batches.pop()}" if len(batches) == 1 else "per step (of its batch)"


def results_table(rows: Sequence[dict], rising: set[tuple[str, int]] = frozenset()) -> str:
    """A markdown table: one line per method, one column per label budget (mean test accuracy in %, with the
    seeds' min-max when there are several, and a dagger on the cells in `rising`), then the method's time per
    optimiser step (of the runs' batch) and the seconds of its longest run. The header names each budget's
    training images."""
    if not rows:
        raise UsageError("no runs to tabulate: pass data_efficiency.run's rows")
    groups = summary(rows)
    budgets = sorted({(s["labels_per_class"], s["fraction"], s["images"]) for s in groups})
    names = list(dict.fromkeys(s["method"] for s in groups))
    by = {(s["method"], s["labels_per_class"]): s for s in groups}
    cells = []
    for name in names:
        line = [name]
        for k, _, _ in budgets:
            s = by.get((name, k))
            spread = f" ({100 * s['min']:.1f}-{100 * s['max']:.1f})" if s and s["n"] > 1 else ""
            mark = " †" if (name, k) in rising else ""
            line.append(f"{100 * s['mean']:.1f}{spread}{mark}" if s else "-")
        mine = [s for s in groups if s["method"] == name]
        speed = statistics.fmean(s["images_per_s"] for s in mine)
        line += [f"{1000 * mine[0]['batch_size'] / speed:.0f} ms", f"{max(s['train_time'] for s in mine):.0f} s"]
        cells.append(line)
    seeds = sorted({(s["labels_per_class"], s["n"]) for s in groups})
    header = ["method", *(f"{100 * f:.3g}% ({k}/class, {n:,} images)" for k, f, n in budgets)]
    header += [_step_batch(groups), "longest run"]
    runs = ", ".join(f"{n} at {k}/class" for k, n in seeds) if len({n for _, n in seeds}) > 1 else seeds[0][1]
    notes = [f"test accuracy (%) of the final weights; seeds per cell: {runs}; brackets: the seeds' min-max"]
    if rising:
        notes.append(f"† still rising: the last doubling of images added {100 * PLATEAU_GAIN:.0f} point or more")
    return markdown_table(header, cells) + "\n\n" + "; ".join(notes)


_CLEAR = 0.01  # a change in accuracy below one point on 5,000 test images is within a few standard errors


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _pts(a: float, b: float) -> str:
    """a - b in points, computed from the values as printed (one decimal), so the text adds up."""
    return f"{round(100 * a, 1) - round(100 * b, 1):.1f}"


@dataclass
class _Results:
    """What the paragraphs read: the runs, their summaries by (method, labels per class), the budgets, the cells
    still rising and the last doubling's gains, and the names of the ViT from scratch, the CNN and the floor."""

    rows: Sequence[dict]
    rising: set[tuple[str, int]]
    scratch: str
    cnn: str
    floor: str

    def __post_init__(self) -> None:
        self.groups = {(s["method"], s["labels_per_class"]): s for s in summary(self.rows)}
        self.budgets = sorted(
            {(s["labels_per_class"], s["fraction"], s["n"], s["images"]) for s in self.groups.values()}
        )
        self.gains = last_doubling_gain(self.rows)

    def share(self, k: int) -> str:
        """The budget of `k` labels per class as a share of the labels, e.g. '1%'."""
        return f"{100 * next(b[1] for b in self.budgets if b[0] == k):.3g}%"

    def acc(self, name: str, k: int) -> float:
        return self.groups[(name, k)]["mean"]

    def apart(self, a: str, b: str, k: int) -> bool:
        """Every seed of `a` above every seed of `b` at `k` labels per class."""
        return self.groups[(a, k)]["min"] > self.groups[(b, k)]["max"]


def _plateaus(r: _Results) -> str:
    flat_budgets = [k for k, *_ in r.budgets if not any(key[1] == k and key in r.rising for key in r.gains)]
    order = list(dict.fromkeys(x["method"] for x in r.rows))
    late = sorted((key for key in r.gains if key in r.rising), key=lambda key: (key[1], order.index(key[0])))
    flat_text = ""
    if flat_budgets:
        most = max(r.gains[key] for key in r.gains if key[1] in flat_budgets)
        where = " and ".join(r.share(k) for k in flat_budgets)
        flat_text = (
            f"At {where} of the labels every curve had flattened (the last doubling of images added at most "
            f"{100 * most:.2f} points), so {'that column measures' if len(flat_budgets) == 1 else 'those measure'} "
            "what each model learns from its labels. "
        )
    late_text = (
        "Still rising when their budget ended (what the last doubling added): "
        + "; ".join(f"{name} at {r.share(k)} ({100 * r.gains[(name, k)]:+.2f} points)" for name, k in late)
        + ". Their accuracies are lower bounds on what their labels allow."
        if late
        else "No curve was still rising when its budget ended."
    )
    return f"**Plateaus.** {flat_text}{late_text}"


def _low_budget(r: _Results, k: int, n: int) -> str:
    """The CNN against the ViT from scratch, and the ViT against the floor, at `k` labels per class (`n` seeds)."""
    cnn, scratch, floor, acc = r.cnn, r.scratch, r.floor, r.acc
    if n == 1:
        clear = "in its one seed"
    else:
        clear = "on every seed" if r.apart(cnn, scratch, k) else "though the seeds' ranges overlap"
    lead = (
        f"The small ResNet wins, {clear}: {_pct(acc(cnn, k))} against {_pct(acc(scratch, k))} for the ViT from "
        f"scratch, {_pts(acc(cnn, k), acc(scratch, k))} points ahead"
        if acc(cnn, k) - acc(scratch, k) > 0
        else f"The ViT from scratch wins, {clear}: {_pct(acc(scratch, k))} against {_pct(acc(cnn, k))} for the "
        f"small ResNet, {_pts(acc(scratch, k), acc(cnn, k))} points ahead"
    )
    side = "even below" if acc(scratch, k) < acc(floor, k) else "above"
    still = [name for name in (cnn, scratch) if (name, k) in r.rising]
    caveat = (
        "" if not still else f" The {still[0]} was still rising." if len(still) == 1 else " Both were still rising."
    )
    return (
        f"**{r.share(k)} of the labels ({k} per class).** {lead}; the ViT from scratch is {side} logistic "
        f"regression on the pixels ({_pct(acc(floor, k))}).{caveat}"
    )


def _pretrained(r: _Results, name: str) -> str:
    """What pretraining route `name` adds over the ViT from scratch at every budget, and whether it is established."""
    groups, scratch, acc = r.groups, r.scratch, r.acc
    seed_spread = {k: groups[(scratch, k)]["max"] - groups[(scratch, k)]["min"] for k, _, n, _ in r.budgets if n > 1}
    parts, doubtful = [], []
    for k, _, n, _ in r.budgets:
        if (name, k) not in groups:
            continue
        gain = acc(name, k) - acc(scratch, k)
        closed = gap_share(r.rows, name, k, scratch, r.cnn, r.rising)
        closed = f", {100 * closed:.0f}% of the gap to the ResNet" if closed is not None else ""
        parts.append(
            f"{_pct(acc(name, k))} at {r.share(k)} ({_pts(acc(name, k), acc(scratch, k))} points over scratch{closed})"
        )
        reasons = []
        if n == 1 and seed_spread and abs(gain) < max(seed_spread.values()):
            k_spread = max(seed_spread, key=seed_spread.get)
            reasons.append(
                f"one seed, and a gain smaller than the {100 * seed_spread[k_spread]:.1f}-point spread of two "
                f"seeds of the ViT from scratch at {r.share(k_spread)}"
            )
        if (scratch, k) in r.rising and r.gains[(scratch, k)] > r.gains[(name, k)]:
            reasons.append("the ViT from scratch was still rising faster")
        if reasons:
            doubtful.append(f"at {r.share(k)} ({'; '.join(reasons)})")
    beats = [r.share(k) for k, *_ in r.budgets if (name, k) in groups and acc(name, k) > acc(r.cnn, k)]
    versus = f"it beats the ResNet at {', '.join(beats)}" if beats else "it does not reach the ResNet at any budget"
    note = f" The gain is not established {' and '.join(doubtful)}." if doubtful else ""
    return f"**{name}:** {'; '.join(parts)}; {versus}.{note}"


def _all_labels(r: _Results) -> str:
    k_full, _, n_full, images_full = r.budgets[-1]
    ranked = sorted((s for s in r.groups.values() if s["labels_per_class"] == k_full), key=lambda s: -s["mean"])
    listing = ", ".join(f"{s['method']} {_pct(s['mean'])}" for s in ranked)
    full_rising = [s["method"] for s in ranked if (s["method"], k_full) in r.rising]
    seeds = "one seed" if n_full == 1 else f"{n_full} seeds"
    still = (
        f"; still rising when the budget ended: {', '.join(full_rising)}, so those accuracies are not plateaus"
        if full_rising
        else "; every curve had flattened"
    )
    return f"**All the labels** ({seeds}, {images_full:,} images per run{still}): {listing}."


def _translation(r: _Results, robustness: dict[str, Sequence[float]]) -> str:
    """The cost of moving the image on the canvas for both models, and of the canvas itself. What the ViT does at
    a shift of a whole patch is left to the reader (notebook 06's exercise 3), so it is not stated here."""
    vit, res = robustness[r.scratch], robustness[r.cnn]
    k_full = r.budgets[-1][0]
    pad = len(vit) - 1
    mid = pad // 2
    moved = [name for name, accs in ((r.scratch, vit), (r.cnn, res)) if accs[0] - min(accs[1:]) >= _CLEAR]
    if len(moved) == 2:
        invariant = "Neither model is invariant."
    elif moved:
        invariant = f"The {moved[0]} is not invariant; the other loses less than a point at every shift."
    else:
        invariant = "Both models lose less than a point at every shift."
    worst = min(range(1, pad + 1), key=lambda s: res[s])
    res_worst = f"The ResNet is worst at a shift of {worst} pixel{'s' if worst != 1 else ''} ({_pct(res[worst])})"
    if worst < pad:
        back = "recovers" if res[pad] - res[worst] >= _CLEAR else "stays about as low"
        res_worst += f" and {back} at {pad} ({_pct(res[pad])})"
    return (
        f"**Translation.** {invariant} Moving the image {mid} pixels on the canvas costs the ResNet "
        f"{_pts(res[0], res[mid])} points ({_pct(res[0])} to {_pct(res[mid])}) and the ViT {_pts(vit[0], vit[mid])} "
        f"({_pct(vit[0])} to {_pct(vit[mid])}). {res_worst}. The bigger canvas alone, at shift 0, "
        f"costs the ViT {_pts(r.acc(r.scratch, k_full), vit[0])} points against its score on the plain test images "
        f"({_pct(r.acc(r.scratch, k_full))}), and the ResNet {_pts(r.acc(r.cnn, k_full), res[0])}."
    )


def _cost(r: _Results) -> str:
    names = (r.scratch, r.cnn)
    # the mean over the budgets' mean speeds, as in results_table's time-per-step column
    speed = {
        name: statistics.fmean(s["images_per_s"] for s in r.groups.values() if s["method"] == name) for name in names
    }
    batch = next(x["batch_size"] for x in r.rows if x["method"] == r.scratch)
    ratio = speed[r.cnn] / speed[r.scratch]
    cost = "longer" if ratio > 1 else "shorter"
    return (
        f"**Cost.** A ViT step takes {abs(ratio - 1) * 100:.0f}% {cost} than a ResNet step of the same batch "
        f"({1000 * batch / speed[r.scratch]:.0f} ms against {1000 * batch / speed[r.cnn]:.0f} ms for {batch} images), "
        "so at equal images the ResNet also trained for less time. The pretrained ViT's time leaves out its "
        "pretraining (notebook 05)."
    )


def findings(
    rows: Sequence[dict],
    robustness: dict[str, Sequence[float]],
    rising: set[tuple[str, int]] = frozenset(),
    scratch: str = "ViT from scratch",
    cnn: str = "small ResNet",
    floor: str = "pixels (logistic regression)",
) -> str:
    """Notebook 06's results paragraphs, written from its numbers: a markdown list with one point each for the
    plateaus, the CNN against the ViT at the label budgets below 100%, pretraining, all the labels, translation
    and cost. Every number and every comparison word ("ahead", "below", "falls further") is computed here.

    rows: `run`'s rows (with learning curves); robustness: `translation_robustness` of `scratch` and `cnn` on the
    canvas; rising: `still_rising(rows)`.
    """
    r = _Results(rows, rising, scratch, cnn, floor)
    out = [_plateaus(r)]
    out += [_low_budget(r, k, n) for k, _, n, _ in r.budgets[:-1]]
    pretrained = [name for name in dict.fromkeys(x["method"] for x in rows) if name not in (scratch, cnn, floor)]
    out += [_pretrained(r, name) for name in pretrained]
    out += [_all_labels(r), _translation(r, robustness), _cost(r)]
    return "\n".join(f"* {line}" for line in out)
