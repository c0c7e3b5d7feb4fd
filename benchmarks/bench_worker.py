"""Responsiveness of the napari side: steps per second inside napari's worker against calling the
engine directly, the longest time the main thread was blocked during the run (QTimer ticks), and
how much of a core the main thread used.

Rows separate the costs:
- the engine called directly;
- the same generator in a napari ``thread_worker`` that pushes nothing (what the worker itself
  costs torch);
- the same with a progress bar in napari's activity dock: napari then animates an "in progress"
  spinner in the status bar at 33 frames/s, each frame a full-window repaint; once as napari runs
  it, once paused as ``run_in_viewer`` does;
- ``run_in_viewer`` pushing every iterate as a layer: adds napari's layer creation and the canvas
  redraw on the main thread, whose CPU time comes out of the cores torch uses; as the run ends
  its iterates are folded into one layer (one main-thread block, timed on a line of its own);
- ``run_in_viewer`` with the default ``emit_every`` (one layer at the end here), compared with a
  direct run with the same ``emit_every``, since emitting costs the engine a forward pass.
A last line gives napari's own main-thread cost of inserting one such layer with nothing else
running: the floor for "a layer every step".

    xvfb-run -a python benchmarks/bench_worker.py [--size 256] [--steps 16] [--repeats 3]

Seeded random VGG-19 (every code path runs; only the pretrained numbers differ), real images from
../shared/images. Prints a markdown table.
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
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import napari
    import torch
    from napari.qt.threading import thread_worker
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    import napari_nst._worker as worker_module
    from napari_nst import random_vgg19, run_in_viewer
    from napari_nst._status_spinner import status_spinners
    from napari_nst.engine.run import run_steps
    from napari_nst.settings import Settings

    content, style = load("tubingen.jpg"), load("starry_night.jpg")
    settings = dict(
        size=args.size,
        steps=args.steps,
        emit_every=1,
        device="cpu",
        coarse_to_fine=False,
        min_working_size=args.size,
        vgg_weights=random_vgg19(0),
    )

    def direct_rate(emit_every: int) -> float:
        stamps = [
            time.perf_counter()
            for _ in run_steps(content, style, **dict(settings, emit_every=emit_every))
        ]
        return steps_per_second(stamps)

    viewer = napari.Viewer()
    viewer.add_image(content, name="content", rgb=True)
    viewer.add_image(style, name="style", rgb=True)
    app = QApplication.instance()

    add_times: list[float] = []
    add_result = worker_module.add_result_layer

    def timed_add(*a):
        t0 = time.thread_time()
        layer = add_result(*a)
        add_times.append(time.thread_time() - t0)
        return layer

    worker_module.add_result_layer = timed_add  # the name the worker calls

    fold_times: list[tuple[int, float]] = []  # (iterate layers folded, main-thread wall s)
    fold = worker_module.fold_iterates

    def timed_fold(viewer_, job):
        count, t0 = len(job.results), time.perf_counter()
        layer = fold(viewer_, job)
        fold_times.append((count, time.perf_counter() - t0))
        return layer

    worker_module.fold_iterates = timed_fold

    def watch(worker, stamps):
        """Run ``worker`` to the end while a 10 ms QTimer records when the main thread is free.

        Returns steps/s, the gaps between ticks (ms) and the main thread's CPU share of one core.
        """
        ticks: list[float] = []
        timer = QTimer()
        timer.setInterval(10)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        loop = (
            QEventLoop()
        )  # a blocking Qt event loop, as napari runs; polling would compete for the GIL
        worker.finished.connect(loop.quit)
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        timer.start()
        worker.start()
        loop.exec()
        timer.stop()
        share = (time.thread_time() - cpu0) / (time.perf_counter() - wall0)
        return steps_per_second(stamps), np.diff(ticks) * 1000.0, share

    def bare_row(progress, pause_spinner=False):
        @thread_worker(start_thread=False, progress=progress)
        def bare():
            yield from run_steps(content, style, **settings)

        stamps: list[float] = []
        worker = bare()
        worker.yielded.connect(lambda _: stamps.append(time.perf_counter()))
        if pause_spinner:  # what run_in_viewer does
            worker.started.connect(status_spinners.pause)
            worker.finished.connect(status_spinners.resume)
        return watch(worker, stamps)

    def viewer_row(emit_every):
        stamps: list[float] = []
        worker = run_in_viewer(
            viewer,
            "content",
            "style",
            start=False,
            on_iterate=lambda job, it: stamps.append(time.perf_counter()),
            **dict(settings, emit_every=emit_every),
        )
        return watch(worker, stamps)

    default_emit = Settings().emit_every
    progress = {"total": args.steps}
    every_step = "run_in_viewer, a layer pushed every step"
    pushed_every_step: list[float] = []  # main-thread CPU of each insert in that row
    rows = {  # label: (run, emit_every of the direct run it is compared with)
        "napari thread_worker, nothing pushed": (lambda: bare_row(False), 1),
        "+ activity-dock progress bar (napari's spinner at 33 frames/s)": (
            lambda: bare_row(progress),
            1,
        ),
        "+ activity-dock progress bar, spinner paused as run_in_viewer does": (
            lambda: bare_row(progress, pause_spinner=True),
            1,
        ),
        every_step: (lambda: viewer_row(1), 1),
        f"run_in_viewer, default emit_every={default_emit} (a layer at the end; "
        f"direct run with the same emit_every)": (lambda: viewer_row(default_emit), default_emit),
    }
    # interleaved repeats, each row against the direct run of its own repeat: this 2-core VM's
    # speed drifts by more than some of the differences measured
    results: dict = {label: [] for label in rows}
    directs: dict = {1: [], default_emit: []}
    for _ in range(args.repeats):
        direct = {emit: direct_rate(emit) for emit in directs}
        for emit, rate in direct.items():
            directs[emit].append(rate)
        for label, (run, emit) in rows.items():
            inputs = list(viewer.layers)
            add_times.clear()
            rate, gaps, share = run()
            if label == every_step:
                pushed_every_step += add_times
            results[label].append((rate / direct[emit], gaps.max(), np.percentile(gaps, 99), share))
            for layer in [layer for layer in viewer.layers if layer not in inputs]:
                viewer.layers.remove(layer)  # the same layer count for every repeat

    # napari's floor: insert one more such layer with nothing else running
    from napari.layers import Image

    insert_cpu = []
    image = content[: args.size, : args.size].astype(np.float32) / 255
    for i in range(8):
        layer = Image(image, rgb=True, name=f"probe {i}")
        t0 = time.thread_time()
        viewer.layers.insert(2, layer)
        insert_cpu.append(time.thread_time() - t0)
        for _ in range(3):
            app.processEvents()

    print(
        f"| {args.size} px, {args.steps} steps, median of {args.repeats} | steps/s vs direct "
        "| main thread longest block (ms) | main thread p99 block (ms) | main thread CPU (% of a core) |"
    )
    print("|---|---|---|---|---|")
    print(
        f"| engine called directly: {np.median(directs[1]):.3f} steps/s "
        f"({np.median(directs[default_emit]):.3f} with emit_every={default_emit}) | 1.00 | | | |"
    )
    for label in rows:
        ratio, longest, p99, share = np.median(np.array(results[label]), axis=0)
        print(f"| {label} | {ratio:.2f} | {longest:.0f} | {p99:.0f} | {100 * share:.0f} |")
    print()
    print(
        f"main-thread CPU per pushed layer during the run (napari insert + placement): median "
        f"{1000 * np.median(pushed_every_step):.0f} ms over {len(pushed_every_step)} layers"
    )
    print(
        f"napari's own viewer.layers.insert of a {args.size}² RGB layer, nothing else running: "
        f"median {1000 * np.median(insert_cpu):.0f} ms main-thread CPU"
    )
    for count in sorted({n for n, _ in fold_times if n > 1}):
        walls = [t for n, t in fold_times if n == count]
        print(
            f"folding a run's {count} iterate layers into one as it ends (one main-thread "
            f"block): median {1000 * np.median(walls):.0f} ms over {len(walls)} runs"
        )
    print(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs")
    viewer.close()


if __name__ == "__main__":
    main()
