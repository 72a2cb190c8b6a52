"""Execute notebooks top to bottom, in order, in place, and print each one's wall time.

Usage: python tools/run_notebooks.py notebooks/*.ipynb   (profile from $VITNB_PROFILE, default full)

The outputs are written for readers of a fresh clone, where notebooks are untrusted and widgets do not render:
- progress bars are tqdm's text bars, kept in their final state (100%), not widget bars frozen at 0%;
- the kernelspec and language_info are what JupyterLab writes, and no per-cell timings are stored, so opening a
  notebook does not mark it modified;
- an output that shows an absolute path of this machine is reported at the end.
"""

import os
import re
import sys
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

KERNEL = "python3"
# tqdm.auto draws a widget bar inside a kernel; committed outputs need the text bar, so before the first cell
# the kernel points tqdm.auto at tqdm's text bar (vitnb imports `from tqdm.auto import tqdm` after this).
TEXT_PROGRESS = "import tqdm.auto, tqdm.std\ntqdm.auto.tqdm, tqdm.auto.trange = tqdm.std.tqdm, tqdm.std.trange"
OVERWRITTEN = re.compile(r"[^\n]*\r(?=[^\n])")  # text a carriage return overwrites on a terminal


class ReaderClient(NotebookClient):
    """A NotebookClient whose kernel draws text progress bars."""

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        reply = await kc.execute_interactive(TEXT_PROGRESS, silent=True, store_history=False, timeout=60)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"the kernel could not switch tqdm to text bars: {reply['content']}")
        return kc


def final_text(outputs: list) -> list:
    """Merge neighbouring outputs of one stream, keep only what a terminal would show after each `\\r`, and drop
    streams left empty (a bar's closing newline that arrived after another stream's text)."""
    merged = []
    for out in outputs:
        last = merged[-1] if merged else None
        if out.output_type == "stream" and last is not None and last.output_type == "stream" and last.name == out.name:
            last.text += out.text
        else:
            merged.append(out)
    for out in merged:
        if out.output_type == "stream":
            out.text = OVERWRITTEN.sub("", out.text.replace("\r\n", "\n"))
    return [out for out in merged if out.output_type != "stream" or out.text.strip()]


def machine_paths(nb, roots: list[str]) -> list[str]:
    """'cell K: PATH' for every output that shows one of `roots` (absolute paths of this machine)."""
    found = []
    for k, cell in enumerate(nb.cells):
        outputs = cell.get("outputs", [])
        text = "\n".join(str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", "")) for out in outputs)
        found += [f"cell {k}: {root}" for root in roots if root in text]
    return found


def run(path: Path, kernelspec: dict) -> tuple[float, list[str]]:
    """Execute the notebook at `path` in place; returns (wall seconds, outputs that show machine paths)."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = ReaderClient(
        nb, timeout=None, kernel_name=KERNEL, record_timing=False, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # also sets nb.metadata.language_info from the kernel
    seconds = time.perf_counter() - start
    nb.metadata.kernelspec = kernelspec
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = final_text(cell.outputs)
    nbformat.write(nb, path)
    roots = sorted({str(Path.cwd().resolve()), str(path.resolve().parent.parent), str(Path.home())}, key=len)[::-1]
    return seconds, machine_paths(nb, [r for r in roots if r != "/"])


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__)
        return 2
    profile = os.environ.get("VITNB_PROFILE", "full")
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    kernelspec = {"display_name": spec.display_name, "language": spec.language, "name": KERNEL}
    times, warnings = [], []
    for path in sorted(Path(p) for p in paths):
        print(f"running {path} (profile {profile}) ...", flush=True)
        seconds, found = run(path, kernelspec)
        times.append((path, seconds))
        warnings += [f"{path} {where}" for where in found]
        print(f"  {path}: {seconds:.1f} s", flush=True)
    print(f"\nwall time per notebook (profile {profile}):")
    print("| notebook | wall time |\n|---|---|")
    for path, seconds in times:
        print(f"| `{path.stem}` | {seconds:.0f} s ({seconds / 60:.1f} min) |")
    print(f"| total | {sum(s for _, s in times):.0f} s ({sum(s for _, s in times) / 60:.1f} min) |")
    if warnings:
        print("\noutputs that show an absolute path of this machine (readers of a clone see them):")
        print("\n".join(f"  {w}" for w in warnings))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
