"""Execute notebooks top to bottom, in order, in place, and print each one's wall time.

Usage: python tools/run_notebooks.py notebooks/*.ipynb   (profile from $VITNB_PROFILE, default full)
"""

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main(paths: list[str]) -> int:
    profile = os.environ.get("VITNB_PROFILE", "full")
    times = []
    for path in sorted(paths):
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        print(f"running {path} (profile {profile}) ...", flush=True)
        NotebookClient(
            nb, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(Path(path).parent)}}
        ).execute()
        nbformat.write(nb, path)
        times.append((path, time.perf_counter() - start))
        print(f"  {path}: {times[-1][1]:.1f} s", flush=True)
    print("\nwall time per notebook:")
    for path, seconds in times:
        print(f"  {seconds:8.1f} s  {path}")
    print(f"  {sum(s for _, s in times):8.1f} s  total")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
