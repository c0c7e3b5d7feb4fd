"""What keeping an image in memory costs the CLI: an emitted iterate costs the engine one extra
forward pass, the copy to the host and the finishing of the image. This times, in one run that
emits every ``--every`` steps, the median duration of a step that emits and of one that does not;
their difference is the cost of one emission, and that cost divided by N is the slowdown of
keeping an image every N steps.

The CLI keeps the latest emitted image so that Ctrl-C can write it at any step; this table is
why it keeps one every 10 steps (``napari_nst.cli.progress.KEEP_EVERY``).

    python benchmarks/bench_emit_cost.py [--sizes 128 256 512] [--steps 40] [--device cpu]

Medians, so that other work on a shared machine disturbs them little. Seeded random VGG-19 (the
compute of the ImageNet one) and the distilled network when its weights are in
$NAPARI_NST_WEIGHTS_DIR; real images from ../shared/images. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"


def load(name: str) -> np.ndarray:
    return np.asarray(Image.open(SHARED / name).convert("RGB"))


def step_durations(content, style, settings) -> tuple[float, float]:
    """Median seconds of a step without and with an emission (the first step, which loads the
    network and allocates, and the last one are left out)."""
    from napari_nst.engine.run import run_steps

    plain, emitting = [], []
    last = time.perf_counter()
    for it in run_steps(content, style, settings):
        now = time.perf_counter()
        if 1 < it.step < it.total_steps:
            (emitting if it.emitted else plain).append(now - last)
        last = now
    return statistics.median(plain), statistics.median(emitting)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=4, help="emit every N steps while timing")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from napari_nst import Settings, random_vgg19
    from napari_nst.engine.weights import VGG19_DISTILLED, weights_dir

    content, style = load("tubingen.jpg"), load("starry_night.jpg")
    networks = [("vgg19 (random)", {"vgg_weights": random_vgg19(0)})]
    folder = weights_dir()
    if folder is not None and (folder / VGG19_DISTILLED.filename).is_file():
        networks.append(("vgg19-distilled", {"network": "vgg19-distilled"}))
    print(f"device {args.device}, {args.steps} steps, torch threads {torch.get_num_threads()}\n")
    print(
        "| network | size | s/step | s/emission | emission / step | slowdown, keep every 1 "
        "| every 5 | every 10 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, network in networks:
        for size in args.sizes:
            settings = Settings(
                size=size,
                steps=args.steps,
                device=args.device,
                coarse_to_fine=False,
                min_working_size=size,
                emit_every=args.every,
                **network,
            )
            step, with_emit = step_durations(content, style, settings)
            cost = max(0.0, with_emit - step)
            slow = " | ".join(f"{100 * cost / (n * step):.0f}%" for n in (1, 5, 10))
            print(f"| {label} | {size} | {step:.3f} | {cost:.3f} | {cost / step:.2f} | {slow} |")


if __name__ == "__main__":
    main()
