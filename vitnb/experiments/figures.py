"""The figures of the notebooks' experiments: they draw the rows and summaries that `vitnb.experiments` builds.

    data_efficiency (notebook 06)  plot_data_efficiency, plot_learning_curves, plot_translation
    ablation (notebook 08)         plot_ablation, plot_ablation_curves, ablation_styles

The library's generic figures are `vitnb.plotting`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..errors import UsageError

__all__ = [
    "ablation_styles",
    "plot_ablation",
    "plot_ablation_curves",
    "plot_data_efficiency",
    "plot_learning_curves",
    "plot_translation",
]


# --- data efficiency (notebook 06) ---------------------------------------------------------------
def plot_data_efficiency(
    summary: Sequence[dict],
    colors: dict[str, str] | None = None,
    title: str = "Fashion-MNIST test accuracy vs labelled examples",
    rising: Sequence[tuple[str, int]] = (),
    ax: Axes | None = None,
) -> Figure:
    """Mean test accuracy per method against the % of labels used; bars span the seeds' min to max.

    `summary`: `vitnb.experiments.data_efficiency.summary(rows)` (keys method, labels_per_class, fraction, n,
    mean, min, max). `colors`: {method: colour}, so that a method keeps its colour in every figure.
    `rising`: (method, labels per class) cells still climbing when their budget ended, drawn as open markers.
    `ax`: draw into these axes (e.g. beside `plot_learning_curves`); else a new figure, legend outside.
    """
    colors, rising = colors or {}, set(rising)
    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=80) if ax is None else (ax.figure, ax)
    for name in dict.fromkeys(s["method"] for s in summary):
        mine = sorted((s for s in summary if s["method"] == name), key=lambda s: s["fraction"])
        mean = [100 * s["mean"] for s in mine]
        spread = [[100 * (s["mean"] - s["min"]) for s in mine], [100 * (s["max"] - s["mean"]) for s in mine]]
        x = [100 * s["fraction"] for s in mine]
        bars = ax.errorbar(x, mean, yerr=spread, fmt="-", capsize=3, label=name, color=colors.get(name))
        colour = bars.lines[0].get_color()
        for xi, yi, s in zip(x, mean, mine, strict=True):
            open_marker = (name, s["labels_per_class"]) in rising
            ax.plot(xi, yi, "o", color=colour, mfc="white" if open_marker else colour, zorder=3)
    images = {100 * s["fraction"]: s.get("images") for s in summary}  # training images per run, per budget
    fractions = sorted(images)
    ax.set(xscale="log", xlabel="% of labels (training images per run)", ylabel="test accuracy (%)", title=title)
    ax.set_xticks(fractions, [f"{f:g}%" + (f"\n({images[f]:,})" if images[f] else "") for f in fractions])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    note = "bars: min-max over the seeds" + ("; open marker: still rising" if rising else "")
    ax.text(0.99, 0.02, note, transform=ax.transAxes, ha="right", va="bottom", fontsize="small", color="0.3")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    fig.tight_layout()
    return fig


def plot_learning_curves(
    rows: Sequence[dict], colors: dict[str, str] | None = None, rising: Sequence[tuple[str, int]] = ()
) -> Figure:
    """Test accuracy against training images seen (log axis), one panel per label budget, one line per method.

    `rows`: runs of `vitnb.experiments.data_efficiency.run` with a learning curve ("curve": [(images, accuracy)]);
    the line is the mean over a method's seeds, the band their min to max. Cells in `rising` (method, labels
    per class) are dashed and marked "still rising" in the legend.
    """
    colors, rising = colors or {}, set(rising)
    budgets = sorted({(r["labels_per_class"], r["fraction"]) for r in rows})
    fig, axes = plt.subplots(1, len(budgets), figsize=(3.3 * len(budgets) + 2.2, 3.4), dpi=80, squeeze=False)
    for ax, (k, fraction) in zip(axes[0], budgets, strict=True):
        for name in dict.fromkeys(r["method"] for r in rows):
            runs = [r["curve"] for r in rows if r["method"] == name and r["labels_per_class"] == k]
            if not runs:
                continue
            if len({len(c) for c in runs}) != 1:
                raise UsageError(
                    f"{name} at {k}/class: the seeds' curves have different lengths; record them at the same points"
                )
            images = [seen for seen, _ in runs[0]]
            acc = 100 * np.array([[a for _, a in c] for c in runs])  # (seeds, points)
            dashed = (name, k) in rising
            label = f"{name} (still rising)" if dashed else name
            line = ax.plot(
                images, acc.mean(0), "o-" if not dashed else "o--", ms=3, label=label, color=colors.get(name)
            )[0]
            if len(runs) > 1:
                ax.fill_between(images, acc.min(0), acc.max(0), color=line.get_color(), alpha=0.2, lw=0)
        ax.set(xscale="log", title=f"{100 * fraction:.3g}% of the labels ({k}/class)", xlabel="training images seen")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    handles = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
        fontsize="small",
        title="band: min-max over the seeds",
        title_fontsize="small",
    )
    fig.tight_layout()
    return fig


def plot_translation(
    results: dict[str, Sequence[float]], patch_size: int | None = None, colors: dict[str, str] | None = None
) -> Figure:
    """Test accuracy per model against the shift of the test images on a padded canvas
    ({name: [accuracy at shift 0, 1, ...]}); a dotted line marks the shift of one patch, if given."""
    colors = colors or {}
    lengths = {len(accs) for accs in results.values()}
    if len(lengths) != 1:
        raise UsageError(
            f"every model needs one accuracy per shift, got lengths {sorted(lengths)}: score all on the same shifts"
        )
    shifts = range(lengths.pop())
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=80)
    for name, accs in results.items():
        ax.plot(shifts, [100 * a for a in accs], "o-", label=name, color=colors.get(name))
    ax.set(xlabel="shift of the image on the canvas (pixels right and down)", ylabel="test accuracy (%)")
    ax.set(title="translation robustness", xticks=list(shifts))
    if patch_size is not None:  # labelled under the axis, where no data point can hide the label
        ax.axvline(patch_size, color="grey", ls=":", lw=1)
        ax.set_xticklabels([f"{s}\n(one patch)" if s == patch_size else str(s) for s in shifts])
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    fig.tight_layout()
    return fig


# --- ablation (notebook 08) ---------------------------------------------------------------------
# ablation figures: the baseline in black, the other variants in tab10's colours (grey left out), with markers
_ABLATION_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"]
_ABLATION_COLOURS += ["tab:olive", "tab:cyan"]
_ABLATION_MARKERS = ["s", "^", "D", "v", "P", "X", "<", ">", "*", "h"]
_VERDICT_COLOURS = {"better": "tab:green", "worse": "tab:red", "within": "tab:gray", "baseline": "black"}


def ablation_styles(variants: Sequence[str], baseline: str = "baseline") -> dict[str, dict]:
    """{variant: matplotlib style}: the baseline black with circles, the others a distinct colour and marker each."""
    styles, k = {}, 0
    for v in variants:
        if v == baseline:
            styles[v] = {"color": "black", "marker": "o", "lw": 2.2}
        else:
            n = len(_ABLATION_COLOURS)
            styles[v] = {"color": _ABLATION_COLOURS[k % n], "marker": _ABLATION_MARKERS[k % len(_ABLATION_MARKERS)]}
            styles[v]["ls"] = "-" if k < n else "--"  # beyond nine variants the colours repeat, dashed
            k += 1
    return styles


def _verdict(s: dict) -> str:
    """'baseline', or how a variant compares with it: 'better' / 'worse' beyond both seed ranges, else 'within'."""
    if s["variant"] == "baseline":
        return "baseline"
    return ("better" if s["delta"] > 0 else "worse") if s["beyond_spread"] else "within"


def plot_ablation(summary: Sequence[dict], title: str | None = None) -> Figure:
    """A dot plot of test accuracy per variant in each regime, and training speed relative to the baseline.

    Accuracy: dot = mean over seeds, bar = min..max over seeds; black = the baseline, whose mean is the dashed
    line and whose seed range is the grey band; green / red = better / worse than the baseline by more than
    both seed ranges, grey = within them. Speed: bars from 0, in multiples of the baseline's images/s.
    `summary`: `vitnb.experiments.ablation.compare(rows, throughput)`.
    """
    regimes = list(dict.fromkeys(s["regime"] for s in summary))
    variants = list(dict.fromkeys(s["variant"] for s in summary))
    by = {(s["variant"], s["regime"]): s for s in summary}
    fig, axes = plt.subplots(
        1,
        len(regimes) + 1,
        figsize=(4.2 * len(regimes) + 3.2, 0.38 * len(variants) + 1.9),
        dpi=80,
        sharey=True,
        width_ratios=[4.2] * len(regimes) + [3.2],
        layout="constrained",
    )
    y = np.arange(len(variants))

    for ax, regime in zip(axes, regimes, strict=False):
        if (base := by.get(("baseline", regime))) is not None:
            ax.axvspan(100 * base["min"], 100 * base["max"], color="0.9", zorder=0)
            ax.axvline(100 * base["mean"], color="black", ls="--", lw=0.8, zorder=1)
        for i, v in enumerate(variants):
            if (s := by.get((v, regime))) is None:
                continue
            colour = _VERDICT_COLOURS[_verdict(s)]
            ax.plot([100 * s["min"], 100 * s["max"]], [i, i], color=colour, lw=2, solid_capstyle="butt", zorder=2)
            ax.plot(100 * s["mean"], i, "o", color=colour, ms=7, zorder=3)
        ax.grid(axis="x", color="0.85", lw=0.6)
        ax.set(title=f"test accuracy, {regime}", xlabel="test accuracy (%)")
    handles = [
        Line2D([], [], color=c, marker="o", lw=2, label=label)
        for c, label in [
            ("black", "baseline (band: its seed range)"),
            ("tab:green", "better, beyond both seed ranges"),
            ("tab:gray", "within the seed ranges"),
            ("tab:red", "worse, beyond both seed ranges"),
        ]
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize="small", frameon=False)
    speed = np.array([by[(v, regimes[0])]["speed_rel"] for v in variants], dtype=float)
    axes[-1].barh(y, speed, color=["black" if v == "baseline" else "tab:blue" for v in variants], height=0.6)
    axes[-1].axvline(1.0, color="black", ls="--", lw=0.8)
    axes[-1].set_xlim(0, 1.1 * max(1.0, float(np.nanmax(speed)) if np.isfinite(speed).any() else 1.0))
    axes[-1].set(title="training speed", xlabel="x the baseline's images/s")
    axes[0].set_yticks(y, variants)
    axes[0].invert_yaxis()
    if title:
        fig.suptitle(title)
    return fig


def plot_ablation_curves(
    rows: Sequence[dict], regime: str | None = None, variants: Sequence[str] | None = None
) -> Figure:
    """Learning curves of the ablation's runs: mean test accuracy (curve subset) after every epoch, per variant.

    Each variant has its own colour and marker (`ablation_styles`), the baseline is black; the legend lists the
    variants from the best final accuracy down. `regime`: which regime's runs (default: the first in `rows`).
    """
    regime = regime or next(r["regime"] for r in rows)
    variants = list(variants or dict.fromkeys(r["variant"] for r in rows))
    styles = ablation_styles(variants)
    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=80, layout="constrained")
    final = {}
    for v in variants:
        rs = [r for r in rows if r["variant"] == v and r["regime"] == regime]
        if not rs:
            continue
        acc = [100 * float(np.mean(a)) for a in zip(*(r["curve_acc"] for r in rs), strict=True)]
        ax.plot(rs[0]["curve_steps"], acc, label=v, ms=6, **{"lw": 1.4, **styles[v]})
        final[v] = acc[-1]
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: -final[labels[i]])
    ax.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        fontsize="small",
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        frameon=False,
        title="final accuracy, best first",
        title_fontsize="small",
    )
    ax.grid(color="0.9", lw=0.6)
    ax.set(xlabel="optimiser steps", ylabel="test accuracy % (curve subset)", title=f"learning curves, {regime}")
    return fig
