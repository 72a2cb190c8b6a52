"""Training throughput: vitnb vs timm vs vit-pytorch, same ViT, one process, interleaved.

The ViT: 28x28x1 images, patch 4 (49 tokens + cls), dim 192, depth 6, 3 heads, MLP 768, 10 classes.
A step = forward + cross-entropy + backward + AdamW step on a batch of 256. The libraries take turns
(round-robin, one timed step each per round) so that a slower or busier moment of a shared CPU hits all of
them alike; we report the median images/s per library and precision and the ratios to vitnb.

    python benchmarks/train_throughput.py                      # fp32 and bf16 autocast, 10 rounds
    python benchmarks/train_throughput.py --precisions fp32 --rounds 20
    python benchmarks/train_throughput.py --attention          # also SDPA vs explicit attention, N=50
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from vitnb import VisionTransformer, preset
from vitnb.runtime import cpu_has_fast_bf16


def build(library: str) -> torch.nn.Module:
    if library == "vitnb":
        return VisionTransformer(preset("cpu"))
    if library == "timm":
        from timm.models.vision_transformer import VisionTransformer as TimmViT

        return TimmViT(
            img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=192, depth=6, num_heads=3, mlp_ratio=4.0
        )
    if library == "vit-pytorch":
        from vit_pytorch import ViT

        return ViT(
            image_size=28, patch_size=4, num_classes=10, dim=192, depth=6, heads=3, mlp_dim=768, channels=1, dim_head=64
        )
    raise ValueError(library)


class Runner:
    """One library at one precision: model, optimizer, a fixed batch; `step()` returns seconds."""

    def __init__(self, library: str, precision: str, batch_size: int, optimizer: str):
        torch.manual_seed(0)
        self.model = build(library).train()
        kwargs = {"fused": True} if optimizer == "fused" else {"foreach": optimizer == "foreach"}
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.05, **kwargs)
        self.x = torch.randn(batch_size, 1, 28, 28)
        self.y = torch.randint(0, 10, (batch_size,))
        self.autocast = torch.autocast("cpu", torch.bfloat16) if precision == "bf16" else nullcontext()

    def step(self) -> float:
        start = time.perf_counter()
        with self.autocast:
            logits = self.model(self.x)
        loss = F.cross_entropy(logits.float(), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - start


def throughput(libraries, precisions, batch_size, rounds, warmup, optimizer) -> dict:
    results = {}
    for precision in precisions:
        runners = {lib: Runner(lib, precision, batch_size, optimizer) for lib in libraries}
        for _ in range(warmup):
            for r in runners.values():
                r.step()
        times = {lib: [] for lib in libraries}
        for i in range(rounds):
            for lib, r in runners.items():
                times[lib].append(r.step())
            print(
                f"  {precision} round {i + 1}/{rounds}: "
                + ", ".join(f"{lib} {batch_size / t[-1]:.0f}" for lib, t in times.items()),
                flush=True,
            )
        results[precision] = {lib: batch_size / statistics.median(t) for lib, t in times.items()}
    return results


def attention_paths(precisions, batch_size, rounds) -> dict:
    """Forward + backward of the attention core alone (B, 3 heads, N=50, 64 channels): SDPA vs explicit."""
    b, h, n, d = batch_size, 3, 50, 64

    def explicit(q, k, v):
        return ((q * d**-0.5) @ k.transpose(-2, -1)).softmax(-1) @ v

    paths = {"sdpa": F.scaled_dot_product_attention, "explicit": explicit}
    results = {}
    for precision in precisions:
        ctx = (lambda: torch.autocast("cpu", torch.bfloat16)) if precision == "bf16" else nullcontext
        qkv = [torch.randn(b, h, n, d, requires_grad=True) for _ in range(3)]
        times = {name: [] for name in paths}
        for i in range(rounds + 1):
            for name, f in paths.items():
                start = time.perf_counter()
                with ctx():
                    out = f(*qkv)
                out.float().sum().backward()
                if i:
                    times[name].append(time.perf_counter() - start)
        results[precision] = {name: 1000 * statistics.median(t) for name, t in times.items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--libraries", default="vitnb,timm,vit-pytorch")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=10, help="timed steps per library (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per library first")
    parser.add_argument(
        "--optimizer",
        default="foreach",
        choices=["foreach", "fused", "for-loop"],
        help="AdamW implementation, the same for every library (vitnb's trainer uses foreach)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--attention", action="store_true", help="also time SDPA vs explicit attention")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    libraries, precisions = args.libraries.split(","), args.precisions.split(",")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, fast bf16 (AMX/AVX512-BF16): {cpu_has_fast_bf16()}"
    )
    if args.attention:
        for precision, ms in attention_paths(precisions, args.batch_size, args.rounds).items():
            print(f"attention fwd+bwd {precision}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()))
    results = throughput(libraries, precisions, args.batch_size, args.rounds, args.warmup, args.optimizer)
    print(f"\nmedian images/s (batch {args.batch_size}, forward+backward+AdamW[{args.optimizer}]):")
    print(
        f"{'precision':<10}"
        + "".join(f"{lib:>14}" for lib in libraries)
        + "".join(f"{'vitnb/' + lib:>20}" for lib in libraries if lib != "vitnb")
    )
    for precision, ips in results.items():
        ratios = "".join(f"{ips['vitnb'] / ips[lib]:>20.2f}" for lib in libraries if lib != "vitnb" and "vitnb" in ips)
        print(f"{precision:<10}" + "".join(f"{ips[lib]:>14.1f}" for lib in libraries) + ratios)


if __name__ == "__main__":
    main()
