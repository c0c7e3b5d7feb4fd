"""The explore section in napari, into ``docs/explore_napari.jpg``: the "Fig. 3" preset (the
style layer sets x the content weight) on Tübingen with The Starry Night, each cell in napari's
grid with its label on the canvas.

    xvfb-run -a python scripts/screenshot_explore.py

Needs ../shared (images and weights; $NAPARI_NST_WEIGHTS_DIR is set to its weights if unset).
Cells at 128 px with 100 steps, so that the 20 cells take about a minute on two cores.
"""

from __future__ import annotations

import time

from napari_session import REPO, fresh_session, load


def main() -> None:
    import napari
    from PIL import Image

    app, settle = fresh_session()

    viewer = napari.Viewer(title="napari-nst")
    viewer.window._qt_window.resize(1800, 1000)
    viewer.add_image(load("tubingen.jpg", 256), name="tubingen", rgb=True)
    viewer.add_image(load("starry_night.jpg", 256), name="starry night", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    for name, value in dict(device="cpu", network="vgg19-distilled", size=128, steps=100).items():
        widget.controls[name].value = value
    widget.show_advanced.value = True
    widget.controls["min_working_size"].value = 128
    widget.show_advanced.value = False
    widget.show_explore.value = True
    widget.explore.preset.value = "fig3"
    settle()
    widget.explore.run()
    while widget.explore.worker is not None:
        app.processEvents()
        time.sleep(0.02)
    settle()
    viewer.reset_view()
    settle()
    out = REPO / "docs" / "explore_napari.jpg"
    Image.fromarray(viewer.screenshot(canvas_only=False)[..., :3]).save(out, quality=85)
    print("wrote", out, "-", widget.explore.status.value)
    viewer.close()


if __name__ == "__main__":
    main()
