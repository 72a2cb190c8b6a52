"""Reproduce notebook 08's ablation table: minor ViT modifications on Fashion-MNIST, two label regimes.

    .venv/bin/python benchmarks/ablation.py                       # full profile: 9 variants x 2 regimes x 2 seeds
    .venv/bin/python benchmarks/ablation.py --profile quick       # seconds: tiny subsets, a few steps
    .venv/bin/python benchmarks/ablation.py --seeds 0 1 2 --variants baseline "conv stem" SPT LSA

Writes runs/ablation/rows.csv (one line per run), summary.csv and table.md (the notebook's table).
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
    MAIN_VARIANTS,
    VARIANTS,
    Protocol,
    compare,
    measure_throughput,
    run_ablation,
    table,
)
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
        "--threads", type=int, default=1, help="torch threads (1 is fastest when other processes share the CPU)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    args = parser.parse_args()
    if "baseline" not in args.variants:
        parser.error("the variants must include 'baseline' (every change is measured against it)")
    torch.set_num_threads(args.threads)
    seed_everything(0)

    protocol = Protocol.from_profile(get_profile(args.profile), seeds=tuple(args.seeds))
    print(f"profile {args.profile}: {protocol}")
    print(f"{args.threads} torch threads, load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    train, test = fashion_mnist(train=True), fashion_mnist(train=False)
    start = time.perf_counter()
    rows = run_ablation(args.variants, train, test, protocol)
    print("timing every variant in one interleaved pass ...")
    speed = measure_throughput(args.variants, train, protocol)
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
