"""How long turning Compare on and off blocks napari's main thread.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_compare.py [--repeats 3]

A real viewer at 1500 x 950 with the sample data and the dock widget (as ``napari-nst gui``
opens it), four finished runs of one pair (optimize on the distilled network at 256 px,
predict, predict at strength 0.4, universal), then the same with a second content and one more
run (a second row). Each toggle is timed with ``time.perf_counter()`` around
``widget.compare.value = ...``, the Qt events drained between toggles. Needs
``$NAPARI_NST_WEIGHTS_DIR`` (the distilled VGG-19, Magenta's and the universal weights) and the
sample painting (``$NAPARI_NST_SAMPLE_DIR`` or a download).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_nst.cli.gui import open_at_a_useful_size

    viewer = napari.Viewer(title="napari-nst")
    viewer.open_sample("napari-nst", "astronaut_painting")
    _, widget = viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    widget.controls["device"].value = "cpu"
    open_at_a_useful_size(viewer)

    def drain():
        for _ in range(30):
            QApplication.processEvents()

    def run(**values):
        for key, value in values.items():
            widget.controls[key].value = value
        widget.run()
        while widget.worker is not None:
            QApplication.processEvents()
            time.sleep(0.02)
        drain()

    def toggles(label: str) -> str:
        on, off = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            widget.compare.value = True
            on.append(time.perf_counter() - start)
            drain()
            cells = len(widget._compare_view.layers) // 2 if widget._compare_view else 0
            shape = tuple(viewer.grid.shape)
            start = time.perf_counter()
            widget.compare.value = False
            off.append(time.perf_counter() - start)
            drain()
        return (
            f"| {label} | {cells} | {shape[0]} x {shape[1]} | {np.median(on):.2f} "
            f"({min(on):.2f}–{max(on):.2f}) | {np.median(off):.2f} |"
        )

    run(method="optimize", network="vgg19-distilled", size=256)
    run(method="predict")
    run(method="predict", style_strength=0.4)
    run(method="universal", style_strength=1.0)
    rows = [toggles("4 runs, one pair")]
    viewer.add_image(viewer.layers["starry_night"].data[::-1].copy(), name="second", rgb=True)
    widget.content.value = [viewer.layers["second"]]
    run(method="predict")
    rows.append(toggles("5 runs, two contents"))

    print(f"| Compare, median of {args.repeats} | cells | grid | on: s (range) | off: s |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    viewer.close()


if __name__ == "__main__":
    main()
