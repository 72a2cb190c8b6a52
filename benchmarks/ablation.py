"""Reproduce notebook 08's ablation table: minor ViT modifications on Fashion-MNIST, early in training.

    .venv/bin/python benchmarks/ablation.py                       # full profile: 10 variants x 2 seeds, 10% labels
    .venv/bin/python benchmarks/ablation.py --profile quick       # seconds: tiny subsets, a few steps
    .venv/bin/python benchmarks/ablation.py --seeds 0 1 2 --variants baseline "conv stem" SPT LSA
    .venv/bin/python benchmarks/ablation.py --regimes "10% labels" "all labels"   # the same budget on all labels too

The protocol's other settings (the base model's width, crop padding, image budget, test set sizes) can be
changed for one run; `--help` lists them.

Writes runs/ablation/rows.csv (one line per run), summary.csv and table.md (the notebook's table).

Why a benchmark and not part of `vitnb.experiments`: the protocol, the variants and the tables live in
`vitnb.experiments.ablation` (and `ablation_report`), which notebook 08 and this script share; this file is only
the command line behind the tables of benchmarks/RESULTS.md, at settings the notebook does not run (more seeds,
both regimes, another width, crops). Every measured figure in RESULTS.md comes from a script in this folder, with
its command and conditions, and the installed package carries no entry points that write runs/.
"""

import argparse
import os
import time
from pathlib import Path

import torch

from vitnb import seed_everything
from vitnb.data import fashion_mnist
from vitnb.experiments import get_profile
from vitnb.experiments.ablation import (
    BASE,
    MAIN_VARIANTS,
    VARIANTS,
    Protocol,
    compare,
    measure_throughput,
    run_ablation,
)
from vitnb.experiments.ablation_report import table
from vitnb.experiments.results import write_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=("quick", "full"), default=os.environ.get("VITNB_PROFILE", "full"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(MAIN_VARIANTS),
        choices=list(VARIANTS),
        metavar="NAME",
        help=f"any of {list(VARIANTS)}",
    )
    parser.add_argument(
        "--regimes",
        nargs="+",
        choices=("10% labels", "all labels"),
        help="data regimes, each with the same image budget (default: the profile's, '10%% labels')",
    )
    parser.add_argument("--embed-dim", type=int, help="width of the base model (default: the series' ViT's, 96)")
    parser.add_argument("--crop-pad", type=int, help="random-crop padding in pixels (default 0: flips only)")
    parser.add_argument("--budget-images", type=int, help="training images per run (default: the profile's)")
    parser.add_argument("--test-size", type=int, help="test images for the final accuracy (default: the profile's)")
    parser.add_argument("--curve-size", type=int, help="test images scored after every epoch (default: the profile's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's choice)")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    args = parser.parse_args()
    if "baseline" not in args.variants:
        parser.error("the variants must include 'baseline' (every change is measured against it)")
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(0)

    changes = {"seeds": tuple(args.seeds)} | ({"regimes": tuple(args.regimes)} if args.regimes else {})
    for name in ("crop_pad", "budget_images", "test_size", "curve_size"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    protocol = Protocol.from_profile(get_profile(args.profile), **changes)
    base = BASE if args.embed_dim is None else BASE.replace(embed_dim=args.embed_dim)
    print(f"base: {base}")
    print(f"profile {args.profile}: {protocol}")
    print(f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    train, test = fashion_mnist(train=True), fashion_mnist(train=False)
    start = time.perf_counter()
    rows = run_ablation(args.variants, train, test, protocol, base)
    print("timing every variant in one interleaved pass ...")
    speed = measure_throughput(args.variants, train, protocol, base)
    summary = compare(rows, speed)
    markdown = table(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "rows.csv")
    write_csv(summary, args.out / "summary.csv")
    (args.out / "table.md").write_text(markdown + "\n")
    print(markdown)
    print(f"\n{time.perf_counter() - start:.0f} s; wrote {args.out}/rows.csv, summary.csv, table.md")


if __name__ == "__main__":
    main()
