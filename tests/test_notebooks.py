"""Each notebook states its runtime once, in its first cell, and the README's notebook table says the same.

The header line is `*Runtime: full ≈ 10 s, quick ≈ 10 s (2-core CPU, fp32)*`; the README's table has one row
per notebook, linking it, with the full and quick runtimes in its last two columns (`≈ 10 s`).
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DURATION = r"\d+(?:\.\d+)? (?:s|min)"
HEADER = re.compile(rf"^\*Runtime: full ≈ (?P<full>{DURATION}), quick ≈ (?P<quick>{DURATION}) \(2-core CPU, fp32\)\*$")
ROW = re.compile(
    rf"^\|.*\]\(notebooks/(?P<stem>[^)]+)\.ipynb\).*\| ≈ (?P<full>{DURATION}) \| ≈ (?P<quick>{DURATION}) \|$"
)
RUNTIME_WORDS = re.compile(r"expected runtime|runtime:|runtime on", re.IGNORECASE)  # a second statement


def markdown_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown"]


def header_runtimes(path: Path) -> tuple[str, str]:
    """(full, quick) from the runtime line of the notebook's first markdown cell."""
    first = markdown_cells(path)[0]
    found = [m for m in map(HEADER.match, first.splitlines()) if m]
    if len(found) != 1:
        raise AssertionError(
            f"{path.name}: the first cell needs exactly one line like "
            f"'*Runtime: full ≈ 10 s, quick ≈ 10 s (2-core CPU, fp32)*', found {len(found)}"
        )
    return found[0]["full"], found[0]["quick"]


def readme_runtimes(text: str) -> dict[str, tuple[str, str]]:
    """{notebook stem: (full, quick)} from the README table's rows."""
    rows = {}
    for m in filter(None, map(ROW.match, text.splitlines())):
        assert m["stem"] not in rows, f"README: two rows for {m['stem']}"
        rows[m["stem"]] = (m["full"], m["quick"])
    return rows


README_ROWS = readme_runtimes((ROOT / "README.md").read_text())


def test_readme_table_has_one_row_per_notebook():
    assert sorted(README_ROWS) == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_header_runtime_matches_readme(path):
    assert header_runtimes(path) == README_ROWS[path.stem], f"{path.name}: header and README table disagree"
    later = [i for i, text in enumerate(markdown_cells(path)[1:], 1) if RUNTIME_WORDS.search(text)]
    assert later == [], f"{path.name}: the runtime is stated once, in the header; markdown cells {later} mention it"


def test_parsers_read_the_agreed_formats():
    line = "*Runtime: full ≈ 1.5 min, quick ≈ 20 s (2-core CPU, fp32)*"
    assert HEADER.match(line).group("full", "quick") == ("1.5 min", "20 s")
    assert HEADER.match(line.replace("≈ 20 s", "about 20 s")) is None
    row = "| [04 · The ViT](notebooks/04_vision_transformer.ipynb) | the model | ≈ 1 min | ≈ 20 s |"
    assert readme_runtimes(row) == {"04_vision_transformer": ("1 min", "20 s")}
    assert readme_runtimes(row.replace("≈ 20 s", "20 s")) == {}
