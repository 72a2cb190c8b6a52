"""Does a harder fractal corpus pretrain a better ViT for Fashion-MNIST? Corpora side by side, same compute.

FractalDB's authors found that more categories pretrain better features (Kataoka et al. 2020: 1,000 beat
100). This benchmark pretrains the same ViT (`cpu_p7`) on each corpus for the same number of images seen,
then finetunes every checkpoint on Fashion-MNIST exactly as notebook 06 does (200 steps of 128 images at
each label budget, flips only, lr 1e-3), next to the ViT trained from scratch, over several seeds. The
default compares notebook 05's corpus (1,000 categories of 40 instances) with 64 categories of 250.

    python benchmarks/pretraining_routes.py                                  # 64 vs 1000 categories (~50 min, fp32)
    python benchmarks/pretraining_routes.py --corpora 64x250 1000x40 --labels-per-class 60 600 --seeds 0 1
    python benchmarks/pretraining_routes.py --profile quick                  # seconds: tiny corpora, a few steps

A corpus is CLASSESxINSTANCES; a tenth of each category's instances is held out for the pretraining
validation accuracy. Defaults follow the profile: notebook 05's corpus beside `COMPARED_CORPUS`, notebook
05's pretraining budget, and notebook 06's finetuning steps, batch size, test subset and its two smallest
label budgets. Writes OUT/rows.json (every finetuning run) and OUT/data_efficiency.png.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import matplotlib

from vitnb import seed_everything
from vitnb.data import fashion_mnist
from vitnb.experiments import data_efficiency, get_profile
from vitnb.experiments.data_efficiency import finetune_config, results_table
from vitnb.experiments.pretraining import pretrain_fractal
from vitnb.plotting import plot_data_efficiency

# Beside notebook 05's corpus (full: 64 categories x 250 instances); every corpus gets the same images seen.
COMPARED_CORPUS = {"quick": "40x10", "full": "64x250"}


def corpus_size(text: str) -> tuple[int, int]:
    """'1000x40' -> (1000 categories, 40 instances each)."""
    try:
        classes, per_class = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a corpus is CLASSESxINSTANCES, e.g. 1000x40; got {text!r}") from None
    if classes < 2 or per_class < 10:
        raise argparse.ArgumentTypeError(f"{text!r}: need >= 2 categories and >= 10 instances per category")
    return classes, per_class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("quick", "full"), default=os.environ.get("VITNB_PROFILE", "full"))
    parser.add_argument("--corpora", type=corpus_size, nargs="+", default=None, help="full default: 64x250 1000x40")
    parser.add_argument(
        "--images-seen",
        type=int,
        default=None,
        help="pretraining compute per corpus (full default 216000 = notebook 05: 36,000 images x 6 epochs)",
    )
    parser.add_argument(
        "--labels-per-class", type=int, nargs="+", default=None, help="full default: 60 600 (1%%, 10%%)"
    )
    parser.add_argument("--steps", type=int, default=None, help="finetuning steps per run (full default 200)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=Path("runs/pretraining_routes"))
    args = parser.parse_args()
    P = get_profile(args.profile)
    notebook05 = (P.nb05_corpus_classes, P.nb05_corpus_per_class)
    corpora = args.corpora or [corpus_size(COMPARED_CORPUS[P.name]), notebook05]
    images_seen = args.images_seen or (
        P.nb05_corpus_classes * (P.nb05_corpus_per_class - P.nb05_val_per_class) * P.nb05_epochs
    )
    budgets = args.labels_per_class or P.nb06_labels_per_class[:2]
    steps = args.steps or P.nb06_steps
    train_cfg = finetune_config(P.name)
    matplotlib.use("Agg")

    args.out.mkdir(parents=True, exist_ok=True)
    seed_everything(0)
    checkpoints = {}
    for classes, per_class in corpora:
        val_per_class = max(1, per_class // 10)
        epochs = images_seen / (classes * (per_class - val_per_class))
        path = (args.out / f"vit_fractal_{classes}x{per_class}.pt").resolve()
        print(f"=== pretraining on {classes} categories x {per_class} instances, {epochs:.3g} epochs")
        start = time.perf_counter()
        _, history, _ = pretrain_fractal(path, classes, per_class, val_per_class, epochs, progress=False)
        per_epoch = ", ".join(f"{r['val_acc']:.3f}" for r in history)
        print(
            f"    validation accuracy {history.final['val_acc']:.4f} after {time.perf_counter() - start:.0f} s "
            f"(per epoch: {per_epoch})"
        )
        checkpoints[f"ViT fractal {classes}x{per_class}"] = path

    train, test = fashion_mnist(True), fashion_mnist(False)
    test = test.per_class_subset(P.nb06_test_per_class)
    routes = {"ViT from scratch": ("vit_scratch", None)}
    routes.update({name: ("vit_pretrained", path) for name, path in checkpoints.items()})
    rows = []
    for name, (method, path) in routes.items():
        new, _ = data_efficiency.run(
            {name: {"method": method}},
            train,
            test,
            budgets,
            steps,
            train_cfg,
            path,
            seeds=tuple(args.seeds),
            progress=False,
        )
        rows += new
    print(f"\nFashion-MNIST test accuracy ({len(test)} images), {steps} steps of {train_cfg.batch_size} per run:")
    print(results_table(rows))
    (args.out / "rows.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "history"} for r in rows]))
    summary = data_efficiency.summary(rows)
    plot_data_efficiency(summary, "Fashion-MNIST after pretraining on fractal corpora of different sizes").savefig(
        args.out / "data_efficiency.png", bbox_inches="tight"
    )
    print(f"wrote {args.out / 'rows.json'} and {args.out / 'data_efficiency.png'}")


if __name__ == "__main__":
    main()
