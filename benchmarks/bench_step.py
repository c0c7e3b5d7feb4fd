"""Seconds per optimisation step (one VGG-19 forward + backward, L-BFGS by default) on this machine.

    python benchmarks/bench_step.py [--sizes 256 512] [--steps 6] [--optimizer lbfgs]

Seeded random VGG-19, real images from ../shared/images, coarse-to-fine off so every step runs at
the given size. Prints a markdown table with the median over the steps after the first.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--optimizer", default="lbfgs")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from napari_nst import random_vgg19
    from napari_nst.engine.run import run_steps

    content = np.asarray(Image.open(SHARED / "tubingen.jpg").convert("RGB"))
    style = np.asarray(Image.open(SHARED / "starry_night.jpg").convert("RGB"))
    vgg = random_vgg19(0)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    print("| size | seconds per step (median) | min | max |")
    print("|---|---|---|---|")
    for size in args.sizes:
        stamps = [time.perf_counter()]
        for _ in run_steps(content, style, size=size, steps=args.steps, emit_every=100000,
                           device=args.device, optimizer=args.optimizer, coarse_to_fine=False,
                           vgg_weights=vgg):
            stamps.append(time.perf_counter())
        durations = np.diff(stamps)[1:]  # the first includes the style targets and set-up
        print(f"| {size} | {statistics.median(durations):.2f} | {durations.min():.2f} | "
              f"{durations.max():.2f} |")


if __name__ == "__main__":
    main()
