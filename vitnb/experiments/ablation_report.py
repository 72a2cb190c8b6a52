"""Notebook 08's results in tables and in words, computed from `ablation.compare`'s summary.

`table` is the notebook's table of variants; `claims` checks each published claim against the measured change
(`verdict`); `findings` writes the results paragraph and `choices` what the runs say about the series' two
design choices (average pooling, sin-cos positions), every number taken from the summary (and the runs), so
that the notebook's sentences cannot drift from its tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .ablation import BASE
from .results import markdown_table

__all__ = [
    "CHOICES",
    "CLAIMS",
    "COMBINATIONS",
    "CONVERGED_CLAIMS",
    "DEEP_STACK_CLAIMS",
    "choices",
    "claims",
    "findings",
    "table",
    "verdict",
]


def table(summary: Sequence[dict]) -> str:
    """A markdown table of `compare`'s summary, one line per variant: params, images/s, then accuracy per regime.

    Accuracy cells read 'mean (min-max)' in percent; Δ is the change of the mean from the baseline in
    percentage points, marked * when it is larger than both its own and the baseline's seed spread.
    """
    regimes = list(dict.fromkeys(s["regime"] for s in summary))
    by = {(s["variant"], s["regime"]): s for s in summary}
    variants = list(dict.fromkeys(s["variant"] for s in summary))
    header = ["variant", "params", "train img/s (vs base)"]
    for r in regimes:
        header += [f"{r}: acc %", "Δ pp"]
    lines = []
    for v in variants:
        first = by[(v, regimes[0])]
        speed = first["images_per_s"]
        cells = [v, f"{first['params']:,}", "n/a" if math.isnan(speed) else f"{speed:.0f} ({first['speed_rel']:.2f}x)"]
        for r in regimes:
            s = by.get((v, r))
            if s is None:
                cells += ["", ""]
                continue
            cells.append(f"{100 * s['mean']:.2f} ({100 * s['min']:.2f}-{100 * s['max']:.2f})")
            cells.append("" if v == "baseline" else f"{100 * s['delta']:+.2f}{'*' if s['beyond_spread'] else ''}")
        lines.append(cells)
    return markdown_table(header, lines)


# --- the published claims, checked against the measurements --------------------------------------
# variant: (who claims it, the claim, the sign of the change in accuracy the claim predicts)
CLAIMS: dict[str, tuple[str, str, int]] = {
    "avg pool": ("Beyer et al. 2022", "average pooling helps", +1),
    "sin-cos pos": ("Beyer et al. 2022", "fixed sin-cos positions help", +1),
    "avg pool + sin-cos": ("Beyer et al. 2022", "the two together help", +1),
    "no pos": ("Dosovitskiy et al. 2021", "a ViT needs position embeddings", -1),
    "patch 7": ("Dosovitskiy et al. 2021", "smaller patches are more accurate", -1),
    "post-norm": ("Xiong et al. 2020", "pre-norm trains more easily than post-norm", -1),
    "conv stem": ("Xiao et al. 2021", "a conv stem helps optimisation", +1),
    "SPT + LSA": ("Lee et al. 2021", "SPT and LSA help on small data sets", +1),
    "LayerScale": ("Touvron et al. 2021", "LayerScale helps (deep) ViTs train", +1),
}


# claims about deep stacks: a short run of the shallow base model measures them but cannot test them
DEEP_STACK_CLAIMS = frozenset({"post-norm", "LayerScale"})
# claims about converged models: a contradiction after a short run is only an early-training one
CONVERGED_CLAIMS = frozenset({"patch 7"})


def verdict(s: dict, sign: int, variant: str | None = None) -> str:
    """'agrees' | 'disagrees' when the change exceeds both seed spreads, else 'within the seed spread'.

    Claims about deep stacks (`DEEP_STACK_CLAIMS`) are 'not testable here (L blocks)' whatever the change;
    a contradicted claim about converged models (`CONVERGED_CLAIMS`) disagrees only early in training.
    """
    if variant in DEEP_STACK_CLAIMS:
        return f"not testable here ({BASE.depth} blocks)"
    if not s["beyond_spread"]:
        return "within the seed spread"
    if s["delta"] * sign > 0:
        return "agrees"
    if variant in CONVERGED_CLAIMS:
        return "disagrees early in training (the claim is about converged models)"
    return "disagrees"


def claims(summary: Sequence[dict]) -> str:
    """A markdown table: each published claim, the measured change per regime (pp) and whether it agrees.

    A claim counts as confirmed or contradicted only when the change is larger than both the variant's and
    the baseline's seed spread; otherwise two seeds cannot tell.
    """
    regimes = list(dict.fromkeys(s["regime"] for s in summary))
    by = {(s["variant"], s["regime"]): s for s in summary}
    header = ["variant", "claim", "by"]
    for r in regimes:
        header += [f"{r}: Δ pp", "verdict"]
    lines = []
    for variant, (who, claim, sign) in CLAIMS.items():
        if not any((variant, r) in by for r in regimes):
            continue
        cells = [variant, claim, who]
        for r in regimes:
            s = by.get((variant, r))
            cells += ["", ""] if s is None else [f"{100 * s['delta']:+.1f}", verdict(s, sign, variant)]
        lines.append(cells)
    return markdown_table(header, lines)


# --- the results in words: notebook 08's results paragraph, computed from the measurements ------------------
# a variant made of two others: how it compares with its parts is part of the findings
COMBINATIONS: dict[str, tuple[str, str]] = {"avg pool + sin-cos": ("avg pool", "sin-cos pos")}


def _pp(delta: float) -> str:
    return f"{100 * delta:+.2f}"


def _names(items: Sequence[dict]) -> str:
    return ", ".join(f"*{s['variant']}* ({_pp(s['delta'])})" for s in items)


def findings(
    summary: Sequence[dict], rows: Sequence[dict] | None = None, baseline: str = "baseline", speed_tolerance=0.1
) -> str:
    """The results as Markdown bullets, every number taken from `compare`'s summary (and, if given, the runs'
    `rows`, for the seed-by-seed count), so that the notebook's sentences cannot drift from its tables.

    Per regime: which variants change the baseline's mean accuracy by more than both seed ranges (up or down,
    in points) and which stay within them; how many beat the baseline on every seed; how each combination of
    `COMBINATIONS` compares with its parts. Then the training speeds: every variant whose speed differs from the
    baseline's by more than `speed_tolerance` (a fraction), and the range of the others.
    """
    regimes = list(dict.fromkeys(s["regime"] for s in summary))
    by = {(s["variant"], s["regime"]): s for s in summary}
    lines = []
    for regime in regimes:
        lead = f"{regime}: " if len(regimes) > 1 else ""
        others = [s for s in summary if s["regime"] == regime and s["variant"] != baseline]
        ranked = sorted(others, key=lambda s: s["delta"], reverse=True)
        up = [s for s in ranked if s["beyond_spread"] and s["delta"] > 0]
        down = [s for s in ranked if s["beyond_spread"] and s["delta"] < 0]
        within = [s for s in ranked if not s["beyond_spread"]]
        if up:
            lines.append(
                f"{lead}Above the baseline by more than both seed ranges (change of the mean, points): {_names(up)}."
            )
        if down:
            lines.append(f"{lead}Below the baseline by more than both seed ranges: {_names(down)}.")
        if within:
            lines.append(f"{lead}Within the seed ranges, so two seeds cannot tell: {_names(within)}.")
        if rows:
            lines.append(lead + _seed_by_seed(rows, regime, [s["variant"] for s in others], baseline))
        for combo, parts in COMBINATIONS.items():
            if all((v, regime) in by for v in (combo, *parts)):
                lines.append(lead + _combination(by[(combo, regime)], [by[(p, regime)] for p in parts]))
    first = [s for s in summary if s["regime"] == regimes[0]] if regimes else []
    speeds = [s for s in first if s["variant"] != baseline and not math.isnan(s["speed_rel"])]
    if speeds:
        apart = [s for s in speeds if abs(s["speed_rel"] - 1) > speed_tolerance]
        alike = [s["speed_rel"] for s in speeds if s not in apart]
        pieces = [f"*{s['variant']}* {s['speed_rel']:.2f}x" for s in apart]
        if alike:
            others = "the other variants" if apart else "every variant"
            pieces.append(f"{others} {min(alike):.2f}x to {max(alike):.2f}x")
        text = "; ".join(pieces)
        lines.append(f"Training speed, in images per second against the baseline's: {text}.")
    return "\n".join(f"- {line}" for line in lines)


def _seed_by_seed(rows: Sequence[dict], regime: str, variants: Sequence[str], baseline: str) -> str:
    acc = {(r["variant"], r["seed"]): r["test_acc"] for r in rows if r["regime"] == regime}
    seeds = sorted({seed for (v, seed) in acc if v == baseline})
    above, below = [], []
    for v in variants:
        diffs = [acc[(v, s)] - acc[(baseline, s)] for s in seeds if (v, s) in acc]
        if diffs and all(d > 0 for d in diffs):
            above.append(v)
        elif diffs and all(d < 0 for d in diffs):
            below.append(v)
    every = "both seeds" if len(seeds) == 2 else f"every one of {len(seeds)} seeds"
    text = f"Seed by seed, {len(above)} of the {len(variants)} variants beat the baseline on {every}"
    if below:
        text += f"; {', '.join(f'*{v}*' for v in below)} fall{'s' if len(below) == 1 else ''} below it on {every}"
    return text + "."


def _combination(combo: dict, parts: Sequence[dict]) -> str:
    best = max(parts, key=lambda s: s["delta"])
    gap = combo["delta"] - best["delta"]
    within = abs(gap) <= max(combo["spread"], best["spread"])
    better = "better than either part alone" if gap > 0 else "no better than its better part alone"
    note = "within the seed ranges" if within else "more than the seed ranges"
    rest = "".join(f"; *{p['variant']}* alone gives {_pp(p['delta'])}" for p in parts if p is not best)
    return (
        f"*{combo['variant']}* ({_pp(combo['delta'])}) does {better} (*{best['variant']}*: {_pp(best['delta'])}), "
        f"a gap of {abs(100 * gap):.2f} points, {note}{rest}."
    )


# --- the series' design choices, each measured in pairs of variants that differ in that choice alone ----------
# choice: (the series' option, the other option, [(variant with the series' option, variant with the other one,
# what the pair shares)], why the series takes its option where the runs do not show it better)
CHOICES: dict[str, tuple[str, str, tuple[tuple[str, str, str], ...], str]] = {
    "pooling": (
        "average pooling",
        "a class token",
        (
            ("avg pool", "baseline", "with learned positions"),
            ("avg pool + sin-cos", "sin-cos pos", "with sin-cos positions"),
        ),
        "a choice of simplicity: no extra token to learn and to carry through every block",
    ),
    "positions": (
        "the fixed sin-cos table",
        "a learned table",
        (("sin-cos pos", "baseline", "with a class token"), ("avg pool + sin-cos", "avg pool", "with average pooling")),
        "a choice of simplicity: a formula with nothing to learn, and it extends to a larger grid of patches",
    ),
}


def choices(summary: Sequence[dict], regime: str | None = None) -> str:
    """Markdown bullets, one per design choice of the series' ViT (`CHOICES`): the change of the mean accuracy
    from the other option to the series' one in each pair of variants that differ in that choice alone, whether it
    is larger than both seed ranges, and what that supports. The series' option counts as better only when it is
    ahead in every pair by more than both seed ranges; otherwise the bullet also gives the series' reason for it.
    `regime`: which regime's runs to read (default: the summary's first)."""
    regime = regime if regime is not None else summary[0]["regime"]
    by = {s["variant"]: s for s in summary if s["regime"] == regime}
    lines = []
    for ours, other, pairs, otherwise in CHOICES.values():
        measured = [(by[a], by[b], shared) for a, b, shared in pairs if a in by and b in by]
        if not measured:
            continue
        parts, gaps, beyond = [], [], []
        for a, b, shared in measured:
            gap = a["mean"] - b["mean"]
            clear = abs(gap) > max(a["spread"], b["spread"])
            gaps.append(gap)
            beyond.append(clear)
            where = "more than both seed ranges" if clear else "within the seed ranges"
            parts.append(f"{_pp(gap)} points {shared} (*{a['variant']}* against *{b['variant']}*), {where}")
        ahead, behind = all(g > 0 for g in gaps), all(g < 0 for g in gaps)
        leader = ours if ahead else other
        if (ahead or behind) and all(beyond):
            supports = "these runs support it" if ahead else "these runs favour it"
            verdict_text = f"{leader} is ahead in every pair, by more than both seed ranges: {supports}"
        elif (ahead or behind) and any(beyond):
            verdict_text = (
                f"{leader} is ahead in every pair, and by more than both seed ranges in {sum(beyond)} of "
                f"{len(gaps)}: partial support"
            )
        elif ahead or behind:
            verdict_text = f"{leader} is ahead in every pair, but within the seed ranges: two seeds cannot tell"
        else:
            verdict_text = "neither is ahead in every pair, so these runs show neither to be better"
        if ahead and all(beyond):
            why = ""
        else:
            why = f"; in the series' ViT it is {'also ' if ahead and any(beyond) else ''}{otherwise}"
        lines.append(f"**{_capital(ours)} against {other}:** {'; '.join(parts)}. {_capital(verdict_text)}{why}.")
    return "\n".join(f"- {line}" for line in lines)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
