"""Screenshots of what a new user sees, one per state, into ``docs/states/``:

    1_sample_data.jpg       napari-nst gui: the sample layers (astronaut, The Starry Night), widget
    2_predict_done.jpg      after a predict Run
    3_optimize_midway.jpg   an optimize run on the distilled network, halfway
    4_optimize_done.jpg     that run ended: its iterates folded into one layer, a step slider
    5_error.jpg             a Run that fails (ImageNet VGG-19 without network access)
    6_universal_done.jpg    after a universal Run, its controls shown (advanced settings open)
    7_compare.jpg           Compare on: every finished run, labelled, each style before its runs

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshot_states.py

Weights come from $NAPARI_NST_WEIGHTS_DIR (or a download); the error state uses an empty cache
and no weights directory, so it shows the real message of an offline first run.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "states"


def dismiss_notifications(app) -> None:
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in app.topLevelWidgets() + [
        w for t in app.topLevelWidgets() for w in t.findChildren(NapariQtNotification)
    ]:
        if isinstance(toast, NapariQtNotification):
            toast.close()


def main() -> None:
    import napari
    from napari_session import fresh_session

    app, settle = fresh_session()

    def shot(name):
        settle()
        from PIL import Image

        OUT.mkdir(parents=True, exist_ok=True)
        pixels = viewer.screenshot(canvas_only=False)
        Image.fromarray(pixels[..., :3]).save(OUT / name, quality=85)
        print("wrote", OUT / name)

    def wait_run(until=lambda: False):
        while widget.worker is not None and not until():
            app.processEvents()
            time.sleep(0.02)

    from napari_nst.cli.gui import open_at_a_useful_size

    viewer = napari.Viewer(title="napari-nst")
    viewer.open_sample("napari-nst", "astronaut_painting")
    _, widget = viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    widget.controls["device"].value = "cpu"
    open_at_a_useful_size(viewer)  # as napari-nst gui does
    shot("1_sample_data.jpg")

    widget.controls["method"].value = "predict"
    widget.run()
    wait_run()
    shot("2_predict_done.jpg")

    widget.controls["method"].value = "optimize"
    widget.controls["network"].value = "vgg19-distilled"
    widget.run()

    def halfway():
        return any(
            layer.metadata.get("napari_nst", {}).get("step") == 10 for layer in viewer.layers
        )

    wait_run(until=halfway)
    shot("3_optimize_midway.jpg")
    wait_run()
    shot("4_optimize_done.jpg")

    weights_dir = os.environ.pop("NAPARI_NST_WEIGHTS_DIR", None)
    os.environ["TORCH_HOME"] = tempfile.mkdtemp()
    widget.controls["network"].value = "vgg19"
    widget.run()
    wait_run()
    shot("5_error.jpg")
    dismiss_notifications(app)  # as a user closes the toast (napari leaves it up a while)
    if weights_dir:
        os.environ["NAPARI_NST_WEIGHTS_DIR"] = weights_dir
    widget.controls["network"].value = "vgg19-distilled"

    widget.controls["method"].value = "predict"  # another run of the pair, for Compare
    widget.controls["style_strength"].value = 0.4
    widget.run()
    wait_run()
    widget.controls["style_strength"].value = 1.0
    widget.controls["method"].value = "universal"
    widget.show_advanced.value = True
    widget.run()
    wait_run()
    shot("6_universal_done.jpg")

    widget.show_advanced.value = False
    widget.compare.value = True
    shot("7_compare.jpg")
    viewer.close()


if __name__ == "__main__":
    main()
