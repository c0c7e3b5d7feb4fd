"""Memory over many runs in one napari viewer: the resident set (RSS) after runs 1, 10, 50 and 100
of ``run_in_viewer``, deleting each run's result layers as it goes, as a user trying styles one
after another does. Target: less than 20 MB of growth from run 1 to run 100.

    NAPARI_NST_WEIGHTS_DIR=../shared/weights xvfb-run -a python benchmarks/bench_soak.py
    xvfb-run -a python benchmarks/bench_soak.py --method optimize    # tiny runs, random VGG-19
    xvfb-run -a python benchmarks/bench_soak.py --smoke              # a few tiny runs

The default is ``method="predict"`` with a 512 x 384 content (Magenta weights from
$NAPARI_NST_WEIGHTS_DIR); ``--method optimize`` runs a few steps at a small size with a seeded
random VGG-19 instead (no weights file). The viewer is shown (under Xvfb), so napari builds and
tears down the canvas visuals of every result layer. RSS is read after ``gc.collect()`` (psutil if
installed, else /proc/self/status). Besides RSS the table counts what a leak would keep: finished
workers still reachable (napari's task registry keeps every worker it saw), deleted result layers
still alive, and the runs' content copies still alive.
"""

from __future__ import annotations

import argparse
import gc
import time
import weakref
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"
TARGET_MB = 20.0


def rss_bytes() -> int:
    try:
        import psutil
    except ImportError:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no psutil and no /proc/self/status: cannot read the resident set")
    return psutil.Process().memory_info().rss


def load(name: str, size: tuple[int, int]) -> np.ndarray:
    """An image from ../shared/images as uint8 RGB, resized to ``size`` (width, height)."""
    path = SHARED / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: ../shared (test images) must be beside the repo")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize(size, Image.Resampling.LANCZOS))


def checkpoints(runs: int) -> list[int]:
    return sorted({n for n in (1, 10, 50, 100, runs) if n <= runs})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--method", choices=("predict", "optimize"), default="predict")
    parser.add_argument("--size", type=int, default=512, help="content width (height is 3/4 of it)")
    parser.add_argument("--steps", type=int, default=3, help="optimize steps per run")
    parser.add_argument("--smoke", action="store_true",
                        help="6 runs of 2 optimize steps at 32 px (checks the script, not memory)")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.method, args.size, args.steps = 6, "optimize", 32, 2

    import napari
    from qtpy.QtCore import QEventLoop

    from napari_nst import random_vgg19, run_in_viewer

    width, height = args.size, args.size * 3 // 4
    settings = dict(method=args.method, size=args.size, device="cpu")
    if args.method == "optimize":
        settings.update(steps=args.steps, emit_every=args.steps, coarse_to_fine=False,
                        min_working_size=args.size, vgg_weights=random_vgg19(0))

    viewer = napari.Viewer()
    viewer.add_image(load("tubingen.jpg", (width, height)), name="content", rgb=True)
    viewer.add_image(load("starry_night.jpg", (width, height)), name="style", rgb=True)

    workers: list = []  # weak references: what stays reachable after a run
    layers: list = []
    contents: list = []

    def run_once() -> float:
        worker = run_in_viewer(viewer, "content", "style", start=False, **settings)
        workers.append(weakref.ref(worker))
        contents.append(weakref.ref(worker.jobs[0].content.data))
        loop = QEventLoop()
        worker.finished.connect(loop.quit)
        started = time.perf_counter()
        worker.start()
        loop.exec()
        seconds = time.perf_counter() - started
        results = [layer for layer in viewer.layers if "napari_nst" in layer.metadata]
        if not results:
            raise SystemExit("a run added no layer: see the notification above (weights missing?)")
        for layer in results:
            layers.append(weakref.ref(layer))
            viewer.layers.remove(layer)
        return seconds

    def alive(refs) -> int:
        return sum(ref() is not None for ref in refs)

    rows = []
    times = []
    marks = checkpoints(args.runs)
    for run in range(1, args.runs + 1):
        times.append(run_once())
        if run in marks:
            gc.collect()
            rows.append((run, rss_bytes() / 1e6, alive(workers), alive(layers), alive(contents)))

    first = rows[0][1]
    what = (f"predict, {width} x {height}" if args.method == "predict" else
            f"optimize {args.steps} steps, {width} x {height}, random VGG-19")
    print(f"| after run ({what}) | RSS (MB) | growth since run 1 (MB) | finished workers "
          "reachable | deleted result layers alive | content copies alive |")
    print("|---|---|---|---|---|---|")
    for run, rss, n_workers, n_layers, n_contents in rows:
        print(f"| {run} | {rss:.1f} | {rss - first:+.1f} | {n_workers} | {n_layers} | {n_contents} |")
    last, growth = rows[-1][0], rows[-1][1] - first
    print()
    print(f"growth from run 1 to run {last}: {growth:+.1f} MB "
          f"({growth / max(1, last - 1):+.3f} MB per run); target < {TARGET_MB:.0f} MB: "
          f"{'met' if growth < TARGET_MB else 'NOT met'}")
    settled = [rss for run, rss, *_ in rows if run == 10]
    if settled and last > 10:  # after the allocators' warm-up, which makes run 1's figure noisy
        print(f"growth from run 10 to run {last}: {rows[-1][1] - settled[0]:+.1f} MB "
              f"({(rows[-1][1] - settled[0]) / (last - 10):+.3f} MB per run)")
    print(f"median run {1000 * float(np.median(times)):.0f} ms (run_in_viewer start to finished)")
    viewer.close()


if __name__ == "__main__":
    main()
