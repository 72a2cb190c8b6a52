"""Write the figures of docs/ that are drawn from code: docs/vit_architecture.svg, the README's diagram of the ViT.

Usage: .venv/bin/python tools/make_docs_figures.py

The diagram is `vitnb.plotting.plot_vit_architecture(compact=True)`: the paper's ViT in symbols, with the
equation numbers (1) to (4), drawn on notebook 01's photo. The file is the same byte for byte on every run
(a fixed hash salt for the SVG's ids, no date in its metadata), so rerunning the script after a change of the
code shows in `git diff` only what the change moved.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from vitnb import plotting  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"


def write_architecture(path: Path = DOCS / "vit_architecture.svg") -> Path:
    """The compact ViT diagram as an SVG, written deterministically."""
    with plt.rc_context({"svg.hashsalt": "vitnb", "svg.fonttype": "path"}):
        fig = plotting.plot_vit_architecture(compact=True)
        fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return path


if __name__ == "__main__":
    written = write_architecture()
    print(f"wrote {written.relative_to(DOCS.parent)} ({written.stat().st_size / 1024:.0f} KB)")
