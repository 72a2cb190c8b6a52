"""How fast is the fractal corpus generated? Times make_corpus end to end (category search included).

.venv/bin/python benchmarks/fractal_speed.py              # 100 classes x 100 images, 3 runs
.venv/bin/python benchmarks/fractal_speed.py --threads 1  # single-threaded

On a machine shared with other jobs, idle OpenMP workers spin for the CPU that the busy ones need;
OMP_WAIT_POLICY=PASSIVE in the environment makes them sleep instead.
"""

import argparse
import os
import statistics
import time

import torch

from vitnb.fractal import make_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--img-size", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    n = args.num_classes * args.per_class
    print(
        f"{n} images of {args.img_size}x{args.img_size}px, {args.threads} torch threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    rates = []
    for seed in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        images, _ = make_corpus(args.num_classes, args.per_class, args.img_size, seed=seed, progress=False)
        rates.append(len(images) / (time.perf_counter() - start))
        cpu_rate = len(images) / (time.process_time() - start_cpu)  # tells how much other load slowed us
        print(f"run {seed}: {rates[-1]:,.0f} images/s ({cpu_rate:,.0f} images per CPU-second)")
    print(f"median: {statistics.median(rates):,.0f} images/s")


if __name__ == "__main__":
    main()
