"""Which pretraining route helps the series' ViT most with 1% of the labels? Routes side by side, same finetuning.

Pretrains the series' ViT (`vitnb.config.SERIES_PRESET`) by the routes asked for (notebook 05's functions: a masked
autoencoder on the Fashion-MNIST training images, labels unused; or classification of fractal categories), then
finetunes every checkpoint on Fashion-MNIST exactly as notebook 06 does (its recipe, its label budgets and images per
run, its test subset), beside the ViT from scratch and the small ResNet, over several seeds. Prints notebook 06's
table.

    python benchmarks/pretraining_routes.py                                   # 1% of the labels, both routes, 2 seeds
    python benchmarks/pretraining_routes.py --mae-epochs 8 --routes mae       # a longer MAE pretraining
    python benchmarks/pretraining_routes.py --mae-norm-pix 1 --routes mae     # MAE's per-patch normalised target
    python benchmarks/pretraining_routes.py --labels-per-class 60 600 --seeds 0 1 2
    python benchmarks/pretraining_routes.py --profile quick                   # seconds: tiny sizes

Checkpoints go under OUT/ (default runs/pretraining_routes/), never over notebook 05's. Writes OUT/rows.csv.

Why a benchmark and not part of `vitnb.experiments`: the pretraining routes, the finetuning protocol and the
table live in `vitnb.experiments` (`pretraining`, `data_efficiency`, `data_efficiency_report`), which notebooks
05-06 and this script share; this file is only the command line behind the pretraining-route figures of
benchmarks/RESULTS.md, at settings the notebooks do not run (other budgets, seeds, MAE epochs and targets). Every
measured figure in RESULTS.md comes from a script in this folder, with its command and conditions, and the
installed package carries no entry points that write runs/.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from vitnb.data import fashion_mnist
from vitnb.experiments import data_efficiency, get_profile, pretraining
from vitnb.experiments.data_efficiency_report import results_table
from vitnb.experiments.results import write_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("quick", "full"), default=os.environ.get("VITNB_PROFILE", "full"))
    parser.add_argument("--routes", nargs="+", choices=sorted(pretraining.ROUTES), default=["mae", "fractal"])
    parser.add_argument(
        "--mae-epochs", type=float, default=None, help="MAE pretraining epochs (default: notebook 05's)"
    )
    parser.add_argument(
        "--labels-per-class", type=int, nargs="+", default=None, help="default: notebook 06's 1%% budget"
    )
    parser.add_argument(
        "--mae-norm-pix",
        choices=("0", "1"),
        default=None,
        help="1: normalise each target patch (default: notebook 05's)",
    )
    parser.add_argument("--finetune-lr", type=float, default=None, help="peak lr for the pretrained ViTs")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: notebook 06's")
    parser.add_argument("--out", type=Path, default=Path("runs/pretraining_routes"))
    args = parser.parse_args()
    os.environ["VITNB_PROFILE"] = args.profile
    P = get_profile()
    images_per_budget = dict(zip(P.nb06_labels_per_class, P.nb06_images, strict=True))
    labels = args.labels_per_class or P.nb06_labels_per_class[:1]
    unknown = [k for k in labels if k not in images_per_budget]
    if unknown:
        parser.error(f"--labels-per-class {unknown}: notebook 06's budgets are {sorted(images_per_budget)}")

    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["VITNB_RUNS"] = str(args.out.resolve())  # runs/... checkpoints, pretrained and read back, go to OUT
    methods = {name: spec for name, spec in data_efficiency.METHODS.items() if spec["model"] in
               ("resnet_small", "vit_scratch")}  # fmt: skip
    for route in args.routes:
        start = time.perf_counter()
        if route == "mae":
            norm_pix = None if args.mae_norm_pix is None else args.mae_norm_pix == "1"
            _, history = pretraining.pretrain_mae_vit(epochs=args.mae_epochs, norm_pix_loss=norm_pix, progress=False)
            print(f"=== MAE: final loss {history.final['train_loss']:.4f} after {time.perf_counter() - start:.0f} s")
        else:
            _, history, _ = pretraining.pretrain_fractal(progress=False)
            print(
                f"=== fractal: validation accuracy {history.final['val_acc']:.4f} "
                f"in {time.perf_counter() - start:.0f} s"
            )
        name = next(n for n, s in data_efficiency.METHODS.items() if s["model"] == f"vit_{route}")
        spec = data_efficiency.METHODS[name]
        methods[name] = {**spec, "lr": args.finetune_lr} if args.finetune_lr else spec

    train, test = fashion_mnist(True), fashion_mnist(False).per_class_subset(P.nb06_test_per_class, seed=1)
    seeds_per_budget = dict(zip(P.nb06_labels_per_class, P.nb06_seeds, strict=True))
    rows = []
    for k in labels:
        seeds = args.seeds or seeds_per_budget[k]
        rows += data_efficiency.run(methods, train, test, [(k, images_per_budget[k])], seeds=seeds, progress=False)[0]
    print(f"\nFashion-MNIST test accuracy on {len(test):,} images, notebook 06's finetuning:")
    print(results_table(rows))
    print(f"wrote {write_csv([{k: v for k, v in r.items() if k != 'history'} for r in rows], args.out / 'rows.csv')}")


if __name__ == "__main__":
    main()
