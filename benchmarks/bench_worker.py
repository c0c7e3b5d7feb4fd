"""Responsiveness of the napari side: steps per second inside napari's worker against calling the
engine directly, and the longest time the main thread was blocked during the run (QTimer ticks).

Three rows separate the costs: the engine called directly; the same generator in a napari
``thread_worker`` that pushes nothing (what the worker itself costs torch); ``run_in_viewer`` pushing
every iterate as a layer (adds napari's layer creation and the canvas redraw on the main thread,
whose CPU time comes out of the cores torch uses).

    xvfb-run -a python benchmarks/bench_worker.py [--size 256] [--steps 12]

Seeded random VGG-19 (every code path runs; only the pretrained numbers differ), an image emitted
and pushed as a layer at every step, real images from ../shared/images. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
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

    from napari.qt.threading import thread_worker

    import napari_nst._viewer as viewer_module

    direct = [time.perf_counter() for _ in run_steps(content, style, **settings)]

    viewer = napari.Viewer()
    viewer.add_image(content, name="content", rgb=True)
    viewer.add_image(style, name="style", rgb=True)
    app = QApplication.instance()

    add_times: list[float] = []
    add_result = viewer_module._add_result

    def timed_add(*a):
        t0 = time.thread_time()
        layer = add_result(*a)
        add_times.append(time.thread_time() - t0)
        return layer

    viewer_module._add_result = timed_add

    def watch(worker, stamps):
        """Run ``worker`` to the end while a 10 ms QTimer records when the main thread is free."""
        ticks: list[float] = []
        timer = QTimer()
        timer.setInterval(10)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        done: list[bool] = []
        worker.finished.connect(lambda: done.append(True))
        timer.start()
        worker.start()
        while not done:
            app.processEvents()
            time.sleep(0.001)
        timer.stop()
        return steps_per_second(stamps), np.diff(ticks) * 1000.0

    @thread_worker(start_thread=False)
    def bare():
        yield from run_steps(content, style, **settings)

    bare_stamps: list[float] = []
    bare_worker = bare()
    bare_worker.yielded.connect(lambda _: bare_stamps.append(time.perf_counter()))
    bare_rate, bare_gaps = watch(bare_worker, bare_stamps)

    pushed_stamps: list[float] = []
    pushed_worker = run_in_viewer(viewer, "content", "style", start=False,
                                  on_iterate=lambda job, it: pushed_stamps.append(time.perf_counter()),
                                  **settings)
    pushed_rate, pushed_gaps = watch(pushed_worker, pushed_stamps)

    direct_rate = steps_per_second(direct)
    print(f"| {args.size} px, {args.steps} steps | steps/s | vs direct | main thread longest block (ms) "
          "| main thread p99 block (ms) |")
    print("|---|---|---|---|---|")
    print(f"| engine called directly | {direct_rate:.3f} | 1.00 | | |")
    for label, rate, gaps in (("napari thread_worker, nothing pushed", bare_rate, bare_gaps),
                              ("run_in_viewer, a layer pushed every step", pushed_rate, pushed_gaps)):
        print(f"| {label} | {rate:.3f} | {rate / direct_rate:.2f} | {gaps.max():.0f} "
              f"| {np.percentile(gaps, 99):.0f} |")
    print()
    print(f"main-thread CPU per pushed layer (napari add + placement): median "
          f"{1000 * np.median(add_times):.0f} ms over {len(add_times)} layers; "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs")
    viewer.close()


if __name__ == "__main__":
    main()
