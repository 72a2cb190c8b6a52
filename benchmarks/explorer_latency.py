"""Latency of one attention-explorer update per control: the Python side, from setting a control's value
to new PNG bytes in the picture widget (what the kernel does before the browser redraws).

Usage: .venv/bin/python benchmarks/explorer_latency.py [--updates 50] [--checkpoint PATH]

The series' ViT (`vitnb.config.SERIES_PRESET`) on the Fashion-MNIST test set. Weights barely matter for
speed; notebook 06's checkpoint is used if it exists, else random weights. Target: a median of at most
100 ms per update.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import torch

import vitnb
from vitnb.checkpoint import load_model
from vitnb.config import SERIES_PRESET
from vitnb.data import fashion_mnist
from vitnb.widgets import PREDICTED, AttentionExplorer

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "runs" / "06_finetuning" / "vit_fmnist.pt"


def time_updates(control, values) -> list[float]:
    """Milliseconds per `control.value = v` (the observers run synchronously inside the assignment)."""
    times = []
    for value in values:
        start = time.perf_counter()
        control.value = value
        times.append((time.perf_counter() - start) * 1e3)
    return times


def build_explorer(checkpoint: Path) -> tuple[AttentionExplorer, str]:
    """The explorer over the Fashion-MNIST test set, warmed up as a notebook leaves it; and what weights it uses."""
    vitnb.seed_everything(0)
    if checkpoint.exists():
        model, _ = load_model(checkpoint)
        weights = str(checkpoint)
    else:
        model = vitnb.VisionTransformer(vitnb.preset(SERIES_PRESET)).eval()
        weights = "random (no checkpoint)"
    dataset = fashion_mnist(train=False)
    # A notebook has usually run batches through the model before it opens the explorer, which leaves
    # torch's thread pool warm and busy; do the same, so the explorer is timed as a notebook uses it.
    with torch.no_grad():
        model(dataset.normalize(dataset.images[:250]), return_attention=True)
    explorer = AttentionExplorer(model, dataset)
    # warm-up: first autograd pass, first rollout, first PNG encode
    for head in ("rollout", "gradient rollout", "mean"):
        explorer.head.value = head
    explorer.image.value = 1
    return explorer, weights


def time_controls(explorer: AttentionExplorer, n: int) -> dict[str, list[float]]:
    """Milliseconds per update, `n` updates per control (and per cached / uncached case)."""
    blocks = explorer.layer.max + 1
    heads = [value for _, value in explorer.head.options]
    results: dict[str, list[float]] = {}
    results["block"] = time_updates(explorer.layer, [i % blocks for i in range(1, n + 1)])
    results["head (all options, cached)"] = time_updates(
        explorer.head, list(itertools.islice(itertools.cycle(heads), n))
    )
    explorer.head.value = "mean"
    queries = [value for _, value in explorer.query.options]
    results["query"] = time_updates(explorer.query, [queries[(7 * i) % len(queries)] for i in range(1, n + 1)])
    buttons = explorer.query_grid.children
    clicks = []
    for i in range(1, n + 1):
        start = time.perf_counter()
        buttons[(5 * i) % len(buttons)].click()
        clicks.append((time.perf_counter() - start) * 1e3)
    results["query (click a patch)"] = clicks
    results["opacity"] = time_updates(explorer.opacity, [0.05 + 0.9 * ((i * 7) % 19) / 18 for i in range(n)])
    results["image (cached)"] = time_updates(explorer.image, [i % 2 for i in range(n)])
    results["image (new: forward pass)"] = time_updates(explorer.image, range(100, 100 + n))
    explorer.head.value = "gradient rollout"
    classes = len(explorer.class_names)
    results["class (new: forward + backward)"] = time_updates(
        explorer.target, [i % classes if i % 2 else PREDICTED for i in range(n)]
    )
    explorer.target.value = PREDICTED
    results["image (new, gradient rollout shown)"] = time_updates(explorer.image, range(200, 200 + n))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=50, help="updates timed per control")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    args = parser.parse_args()
    n = args.updates
    explorer, weights = build_explorer(args.checkpoint)
    results = time_controls(explorer, n)

    print(f"attention explorer, one update per control value; {n} updates each")
    cfg, size = explorer.model.cfg, vitnb.num_params(explorer.model) / 1e6
    print(f"model: dim {cfg.embed_dim}, depth {cfg.depth} ({size:.2f} M parameters), weights: {weights}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(f"{'control':40s} {'median ms':>10s} {'p90 ms':>8s} {'max ms':>8s}")
    for name, times in results.items():
        p90 = statistics.quantiles(times, n=10)[-1]
        print(f"{name:40s} {statistics.median(times):10.1f} {p90:8.1f} {max(times):8.1f}")
    worst = max(statistics.median(t) for t in results.values())
    print(f"\nslowest median: {worst:.1f} ms ({'meets' if worst <= 100 else 'MISSES'} the 100 ms target)")


if __name__ == "__main__":
    main()
