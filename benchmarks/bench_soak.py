"""Memory over many runs in one napari viewer, as a user trying styles one after another: Run in
the dock widget, wait, delete the run's result layers, again. Prints the resident set (RSS) after
a few warm-up runs and its growth per run after runs 10, 30 and 100, for predict and optimize.
Targets (issue 31): 30 runs grow the process by under 15 MB, 100 runs by under 30 MB.

    NAPARI_NST_WEIGHTS_DIR=../shared/weights xvfb-run -a python benchmarks/bench_soak.py
    xvfb-run -a python benchmarks/bench_soak.py --method predict --runs 30
    xvfb-run -a python benchmarks/bench_soak.py --method optimize --random-vgg   # no weights

predict runs at 256 px (Magenta weights from $NAPARI_NST_WEIGHTS_DIR); optimize runs 10 steps at
128 px on the distilled VGG-19 (``--random-vgg``: a seeded random VGG-19, no weights file). The
content and style are the napari-nst sample. The viewer is shown (under Xvfb), so napari builds
and tears down the canvas visuals of every result layer. RSS is read after ``gc.collect()``
(psutil if installed, else /proc/self/status), counted from the end of the warm-up runs (the
first runs load weights and fill caches). Besides RSS the table counts what a leak would keep:
finished workers still reachable (napari's task registry keeps every worker it saw), deleted
result layers still alive, and the runs' content copies still alive.

What grew, and why it no longer does: every run's engine works in a thread of Qt's pool, and
glibc gives each thread its own malloc arena, which keeps the memory a run freed (tens of MB, in
steps, whenever a run landed on a thread whose arena had not held it before; 58 MB over 10
optimize runs). A run now hands freed memory back when it ends (``memory.release_freed_memory``).
"""

from __future__ import annotations

import argparse
import gc
import time
import weakref

import numpy as np

TARGETS_MB = {30: 15.0, 100: 30.0}
WARM_UP = 3


def rss_bytes() -> int:
    try:
        import psutil
    except ImportError:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(
            "no psutil and no /proc/self/status: cannot read the resident set"
        ) from None
    return psutil.Process().memory_info().rss


def checkpoints(runs: int) -> list[int]:
    return sorted({n for n in (1, 10, 30, 100, runs) if n <= runs})


class Soak:
    """One viewer with the sample and the dock widget; ``run_once`` clicks Run, waits for the
    run to finish, and deletes its result layers."""

    def __init__(self, method: str, size: int, steps: int, random_vgg: bool):
        import os
        import tempfile

        import napari

        # the widget saves its values when it runs: not into the user's own settings
        os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="napari-nst-soak-")
        from napari_nst import random_vgg19

        self.viewer = napari.Viewer()
        self.viewer.open_sample("napari-nst", "astronaut_painting")
        _, self.widget = self.viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
        controls = self.widget.controls
        controls["method"].value = method
        controls["size"].value = size
        controls["device"].value = "cpu"
        if method == "optimize":
            controls["network"].value = "vgg19-distilled"
            controls["steps"].value = steps
            controls["emit_every"].value = max(1, steps // 2)
            if random_vgg:
                self.widget.settings_overrides = {"vgg_weights": random_vgg19(0)}
        self.workers: list = []  # weak references: what stays reachable after a run
        self.layers: list = []
        self.contents: list = []

    def run_once(self) -> float:
        from qtpy.QtCore import QEventLoop
        from qtpy.QtWidgets import QApplication

        loop = QEventLoop()
        started = time.perf_counter()
        worker = self.widget.run()
        if worker is None:
            raise SystemExit(f"the run did not start: {self.widget.status.value}")
        worker.finished.connect(loop.quit)
        loop.exec()
        seconds = time.perf_counter() - started
        QApplication.processEvents()  # the widget's own finished slot
        self.workers.append(weakref.ref(worker))
        results = [layer for layer in self.viewer.layers if "napari_nst" in layer.metadata]
        if not results:
            raise SystemExit(f"a run added no layer: {self.widget.status.value}")
        for layer in results:
            self.layers.append(weakref.ref(layer))
            self.viewer.layers.remove(layer)
        return seconds

    def alive(self) -> tuple[int, int]:
        return (
            sum(ref() is not None for ref in self.workers),
            sum(ref() is not None for ref in self.layers),
        )


def soak(method: str, runs: int, size: int, steps: int, random_vgg: bool) -> list[tuple]:
    """[(run, RSS MB, growth MB, workers alive, deleted layers alive)] at the checkpoints."""
    session = Soak(method, size, steps, random_vgg)
    for _ in range(WARM_UP):
        session.run_once()
    gc.collect()
    start = rss_bytes() / 1e6
    rows, times, marks = [], [], checkpoints(runs)
    for run in range(1, runs + 1):
        times.append(session.run_once())
        if run in marks:
            gc.collect()
            rss = rss_bytes() / 1e6
            rows.append((run, rss, rss - start, *session.alive()))
    session.viewer.close()
    return rows, float(np.median(times)), start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--method", choices=("predict", "optimize", "both"), default="both")
    parser.add_argument(
        "--size", type=int, default=None, help="result size (default: predict 256, optimize 128)"
    )
    parser.add_argument("--steps", type=int, default=10, help="optimize steps per run")
    parser.add_argument(
        "--random-vgg",
        action="store_true",
        help="optimize with a seeded random VGG-19 (no weights file)",
    )
    args = parser.parse_args()
    methods = ("predict", "optimize") if args.method == "both" else (args.method,)

    print(
        f"| method | after run (of {args.runs}, after {WARM_UP} warm-up runs) | RSS (MB) | "
        "growth (MB) | growth per run (MB) | target | finished workers reachable | "
        "deleted result layers alive |"
    )
    print("|---|---|---|---|---|---|---|---|")
    summary = []
    for method in methods:
        size = args.size or (256 if method == "predict" else 128)
        rows, median, start = soak(method, args.runs, size, args.steps, args.random_vgg)
        what = (
            f"predict {size} px"
            if method == "predict"
            else f"optimize {args.steps} steps {size} px"
        )
        for run, rss, growth, workers, layers in rows:
            target = TARGETS_MB.get(run)
            verdict = (
                "-"
                if target is None
                else (f"< {target:.0f} MB: {'met' if growth < target else 'NOT met'}")
            )
            print(
                f"| {what} | {run} | {rss:.1f} | {growth:+.1f} | {growth / run:+.3f} | "
                f"{verdict} | {workers} | {layers} |"
            )
        summary.append(
            f"{what}: RSS {start:.1f} MB after warm-up, {rows[-1][2]:+.1f} MB after "
            f"{rows[-1][0]} runs; median run {1000 * median:.0f} ms (Run to finished)"
        )
    print()
    print("\n".join(summary))


if __name__ == "__main__":
    main()
