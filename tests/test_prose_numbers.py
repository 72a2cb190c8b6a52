"""Prose numbers must come from the notebook: every decimal or percentage a Markdown cell quotes appears in
that notebook's code or outputs, or on the short allow-list below of numbers cited from papers or other
documents.

A results sentence that quotes "85.4%" while the run beside it printed 0.853 has drifted from its outputs;
this test catches it when the notebook is rerun. Only decimals ("2.20", "0.316") and percentages ("63%",
"4.9 %") are checked: plain integers are mostly sizes and counts of the set-up (4 blocks, 49 tokens, 1,000
categories), not results. A prose number is supported when the same number occurs in the code cells' sources
or outputs (text/plain, stream text, text/markdown): "2.2" matches "2.20x", "4.9%" also matches a fraction
0.049, thousands separators are ignored, but "0.23" does not match a printed 0.226 (quote what is printed, or
build the sentence in code). Inline code (`...`) and links' addresses are skipped: they are code
and citations, not claims. Numbers that Markdown cells build in code (IPython.display.Markdown) are outputs,
so they always pass.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

# Numbers a notebook quotes from a paper or another document rather than from its own run, keyed by the
# notebook's file name (without .ipynb): number as written -> where it comes from. Keep this short.
ALLOWED: dict[str, dict[str, str]] = {"09_paper_in_context": {"3.1": "a section number of the ViT paper"}}

# a number: digits with optional thousands separators and decimals, optionally a percent sign; a unit may
# follow ("2.20x", "5.7M"). Not the end of a word ("ViT-B/16" is fine, "x2" is skipped) nor part of a longer
# dotted token (a version "2.14.1"); "1e-5" reads as the integer 1, which is not checked.
NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(\.\d+)?(?![.\d])(\s?%)?")
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK_TARGET = re.compile(r"\]\([^)]*\)|<https?://[^>]*>|https?://\S+")


def numbers(text: str) -> list[tuple[str, Decimal, bool]]:
    """Every number in `text`: (as written, value, quoted as a percentage)."""
    out = []
    for m in NUMBER.finditer(text):
        whole, frac, pct = m.group(1), m.group(2) or "", m.group(3)
        out.append((m.group(0).strip(), Decimal(whole.replace(",", "") + frac), bool(pct)))
    return out


RUNTIME_LINE = re.compile(r"^\*Runtime: .*\*$", re.MULTILINE)  # the header's runtime, checked by test_notebooks.py


def claimed(markdown: str) -> list[tuple[str, Decimal, bool]]:
    """The numbers a Markdown text states that this test checks: decimals and percentages (not the runtime line,
    which a timed run of the whole series sets and tests/test_notebooks.py compares with the README)."""
    text = LINK_TARGET.sub("]", INLINE_CODE.sub(" ", RUNTIME_LINE.sub(" ", markdown)))
    return [(s, v, pct) for s, v, pct in numbers(text) if pct or "." in s]


def supported(value: Decimal, percent: bool, pool: set[Decimal]) -> bool:
    """Is `value` in the pool (2.2 equals 2.20), or, quoted as a percentage, a fraction of the pool times 100?"""
    return value in pool or (percent and any(v * 100 == value for v in pool))


def cell_text(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def output_texts(cell: dict) -> list[str]:
    texts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            texts.append(cell_text(out["text"]))
        for mime in ("text/plain", "text/markdown"):
            if mime in out.get("data", {}):
                texts.append(cell_text(out["data"][mime]))
    return texts


def unsupported_numbers(nb: dict, allowed: dict[str, str] | None = None) -> list[tuple[int, str]]:
    """(cell index, number as written) for each decimal or percentage of a Markdown cell that the notebook's
    code sources and outputs do not contain and that is not on `allowed`."""
    allowed = allowed or {}
    pool: set[Decimal] = set()
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            for text in [cell_text(cell["source"]), *output_texts(cell)]:
                pool.update(v for _, v, _ in numbers(text))
    missing = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for written, value, percent in claimed(cell_text(cell["source"])):
            if written not in allowed and not supported(value, percent, pool):
                missing.append((i, written))
    return missing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_prose_numbers_appear_in_the_notebooks_code_or_outputs(path):
    nb = json.loads(path.read_text())
    missing = unsupported_numbers(nb, ALLOWED.get(path.stem))
    assert not missing, f"{path.name}: Markdown numbers not found in its code or outputs (cell, number): {missing}"


def _notebook(markdown: str, code: str = "", output: str = "") -> dict:
    outputs = [{"output_type": "stream", "name": "stdout", "text": output}] if output else []
    return {
        "cells": [
            {"cell_type": "markdown", "source": markdown, "metadata": {}},
            {"cell_type": "code", "source": code, "outputs": outputs, "metadata": {}, "execution_count": None},
        ]
    }


def test_the_extractor_finds_decimals_and_percentages_only():
    found = [written for written, _, _ in claimed("4 blocks, 1,000 images, 85.4% and 0.316, 63 %, v2.14.1, 1e-5")]
    assert found == ["85.4%", "0.316", "63 %"]
    assert claimed("see `lr=2e-3, mask_ratio=0.75` and [the paper](https://arxiv.org/abs/2010.11929)") == []


def test_a_number_present_passes_and_one_absent_fails():
    assert unsupported_numbers(_notebook("It reaches 85.4%.", output="test acc 85.4%")) == []
    assert unsupported_numbers(_notebook("It reaches 85.4%.", output="test acc 0.854")) == []  # a fraction
    assert unsupported_numbers(_notebook("2.2 times faster", code="print(f'{ratio:.2f}')", output="2.20x")) == []
    assert unsupported_numbers(_notebook("accuracy 1,234.5", output="1234.5")) == []  # separators ignored
    assert unsupported_numbers(_notebook("It reaches 86.1%.", output="test acc 85.4%")) == [(0, "86.1%")]
    assert unsupported_numbers(_notebook("loss 0.32", output="loss 0.316")) == [(0, "0.32")]  # rounded: no
    assert unsupported_numbers(_notebook("loss 0.32", output="loss 0.316"), {"0.32": "a paper"}) == []
