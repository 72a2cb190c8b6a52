"""The README's Python examples run as written, so they cannot drift from the package."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.DOTALL | re.MULTILINE)
NEEDS_NETWORK = "# needs network"  # a README block with this comment downloads something: skipped here


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 1
    assert "vitnb.from_timm(" in "".join(BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files a block writes (checkpoints, runs/) land in a temporary folder
    source = BLOCKS[index]
    if NEEDS_NETWORK in source:
        pytest.skip(f"README python block {index + 1} is marked '{NEEDS_NETWORK}'")
    exec(compile(source, f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})
