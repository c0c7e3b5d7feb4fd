"""Responsiveness of the napari side: steps per second inside napari's worker against calling the
engine directly, and the longest time the main thread was blocked during the run (QTimer ticks).

    xvfb-run -a python benchmarks/bench_worker.py [--size 256] [--steps 12]

Seeded random VGG-19 (every code path runs; only the pretrained numbers differ), an image emitted
and pushed as a layer at every step, real images from ../shared/images. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"


def load(name: str) -> np.ndarray:
    return np.asarray(Image.open(SHARED / name).convert("RGB"))


def steps_per_second(times: list[float]) -> float:
    """Steady-state rate from the step timestamps, skipping the first (set-up) step."""
    return (len(times) - 2) / (times[-1] - times[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()

    import napari
    import torch
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_nst import random_vgg19, run_in_viewer
    from napari_nst.engine.run import run_steps

    content, style = load("tubingen.jpg"), load("starry_night.jpg")
    settings = dict(size=args.size, steps=args.steps, emit_every=1, device="cpu",
                    coarse_to_fine=False, vgg_weights=random_vgg19(0))

    direct = [time.perf_counter() for _ in run_steps(content, style, **settings)]

    viewer = napari.Viewer()
    viewer.add_image(content, name="content", rgb=True)
    viewer.add_image(style, name="style", rgb=True)
    app = QApplication.instance()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    in_worker: list[float] = []
    done: list[bool] = []
    worker = run_in_viewer(viewer, "content", "style", start=False,
                           on_iterate=lambda job, it: in_worker.append(time.perf_counter()), **settings)
    worker.finished.connect(lambda: done.append(True))
    timer.start()
    worker.start()
    while not done:
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    gaps = np.diff(ticks) * 1000.0
    direct_rate, worker_rate = steps_per_second(direct), steps_per_second(in_worker)
    print(f"| {args.size} px, image every step | steps/s | vs direct |")
    print("|---|---|---|")
    print(f"| engine called directly | {direct_rate:.3f} | 1.00 |")
    print(f"| napari thread_worker (layers pushed) | {worker_rate:.3f} | {worker_rate / direct_rate:.2f} |")
    print()
    print(f"main thread: {len(ticks)} timer ticks of 10 ms, longest gap {gaps.max():.1f} ms, "
          f"99th percentile {np.percentile(gaps, 99):.1f} ms; torch threads {torch.get_num_threads()}; "
          f"{len(viewer.layers) - 2} layers added")
    viewer.close()


if __name__ == "__main__":
    main()
