"""Open napari with the sample data and the Style transfer widget, run a short job, and save
``docs/screenshot.png`` -- what a new user sees first.

    xvfb-run -a python scripts/screenshot.py [--method predict|optimize]
        [--network vgg19|vgg19-distilled] [--random-vgg]

``--random-vgg`` uses seeded random VGG-19 weights (for machines without the ImageNet file);
``--network vgg19-distilled`` the small distilled network; every file comes from
$NAPARI_NST_WEIGHTS_DIR or a download.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("predict", "optimize"), default="predict")
    parser.add_argument("--network", choices=("vgg19", "vgg19-distilled"), default="vgg19")
    parser.add_argument("--random-vgg", action="store_true")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--compare", action=argparse.BooleanOptionalAction, default=True,
                        help="turn Compare on before the screenshot (default) or show the canvas as "
                             "the run left it")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("-o", "--output", type=Path,
                        default=Path(__file__).resolve().parents[1] / "docs" / "screenshot.png")
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-nst")
    viewer.window._qt_window.resize(1400, 860)
    viewer.open_sample("napari-nst", "astronaut_painting")
    _, widget = viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    widget.controls["method"].value = args.method
    widget.controls["network"].value = args.network
    widget.controls["steps"].value = args.steps
    widget.controls["size"].value = args.size
    widget.controls["device"].value = "cpu"
    widget.controls["emit_every"].value = max(1, args.steps // 4)
    if args.random_vgg:
        from napari_nst import random_vgg19

        widget.settings_overrides["vgg_weights"] = random_vgg19(0)
    worker = widget.run()
    app = QApplication.instance()
    while worker is not None and worker.is_running or widget.worker is not None:
        app.processEvents()
        time.sleep(0.02)
    widget.compare.value = args.compare
    for _ in range(20):
        app.processEvents()
        time.sleep(0.05)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.output), canvas_only=False)
    print(f"wrote {args.output}; layers: {[layer.name for layer in viewer.layers]}")
    viewer.close()


if __name__ == "__main__":
    main()
