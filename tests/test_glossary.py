"""The README's glossary names, for each term, the notebook and section that introduce it; the term must appear
in that section's Markdown and in no earlier notebook's Markdown, so that a reader meets its definition first.

A glossary row reads `| **term** / **other form** | what it is | [NN](notebooks/NN_....ipynb), *Section* |`: every
bold name in the first column is checked (case-insensitive, whole words, a plural "s" allowed); the section is
the Markdown from the heading named (any level) up to the next heading of the same or a higher level, or, for
*introduction*, the notebook's opening above its first section.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {p.stem[:2]: p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}
ROW = re.compile(
    r"^\|(?P<terms>[^|]*\*\*[^|]*)\|[^|]*\|\s*\[(?P<nb>\d\d)[^\]]*\]\([^)]*\),\s*\*(?P<section>[^*]+)\*\s*\|$"
)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$", re.MULTILINE)
INLINE_CODE = re.compile(r"`([^`\n]*)`")


def glossary_rows() -> list[tuple[list[str], str, str]]:
    """(names, notebook number, section title) for each row of the README's `## Glossary` table."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## Glossary")
    end = readme.find("\n## ", start + 1)
    rows = []
    for line in readme[start : end if end > 0 else None].splitlines():
        m = ROW.match(line.strip())
        if m:
            rows.append((re.findall(r"\*\*([^*]+)\*\*", m["terms"]), m["nb"], m["section"].strip()))
    return rows


def markdown(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    text = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return INLINE_CODE.sub(r"\1", text)  # `drop_path` counts as a use of drop_path


def section(text: str, title: str) -> str:
    """The heading `title` and the Markdown under it, down to the next heading of the same or a higher level;
    'introduction' is the notebook's opening, from its title down to its first section."""
    headings = list(HEADING.finditer(text))
    for i, h in enumerate(headings):
        if h[2].strip().lower() == title.lower() or (i == 0 and title.lower() == "introduction"):
            level = max(len(h[1]), 2)  # a title's text ends at the first section
            nxt = next((g.start() for g in headings[i + 1 :] if len(g[1]) <= level), len(text))
            return text[h.start() : nxt]  # the heading included
    raise AssertionError(f"no heading {title!r}")


def uses(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}s?(?![\w-])", text, re.IGNORECASE) is not None


ROWS = glossary_rows()


def test_the_glossary_covers_the_terms_a_learner_meets():
    names = {name.lower() for names, _, _ in ROWS for name in names}
    wanted = {
        "token",
        "patch embedding",
        "class token",
        "position embedding",
        "layernorm",
        "gelu",
        "msa",
        "pre-norm",
        "post-norm",
        "warm-up",
        "cosine schedule",
        "label smoothing",
        "ema",
        "drop_path",
        "spt",
        "lsa",
        "rollout",
        "linear probe",
        "full finetuning",
    }
    assert wanted <= names, f"missing from the glossary: {sorted(wanted - names)}"


@pytest.mark.parametrize(("names", "nb", "title"), ROWS, ids=[names[0] for names, _, _ in ROWS])
def test_a_term_is_introduced_where_the_glossary_says_and_not_before(names, nb, title):
    assert nb in NOTEBOOKS, f"no notebook {nb}"
    text = section(markdown(NOTEBOOKS[nb]), title)
    for name in names:
        assert uses(text, name), f"{name!r} does not appear in notebook {nb}, section {title!r}"
        earlier = [k for k in NOTEBOOKS if k < nb and uses(markdown(NOTEBOOKS[k]), name)]
        assert earlier == [], f"{name!r} appears in notebook(s) {earlier}, before notebook {nb} introduces it"
