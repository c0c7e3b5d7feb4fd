"""A two-region result in napari, into ``docs/regions_napari.jpg``: the Tübingen photograph with
a Labels layer (label 1: the sky, label 2: the river; the houses unlabelled), the widget's
regions table giving label 1 The Starry Night and label 2 The Scream, and the universal result
beside the content.

    xvfb-run -a python scripts/screenshot_regions.py

Needs ../shared (images and weights; $NAPARI_NST_WEIGHTS_DIR is set to its weights if unset).
"""

from __future__ import annotations

import time

import numpy as np
from napari_session import REPO, fresh_session, load


def sky_and_river(content: np.ndarray) -> np.ndarray:
    """Label 1: the blue sky (bright, blue-dominated pixels connected to the top edge); label 2:
    the river (the bottom quarter of the photograph)."""
    from skimage import measure, morphology

    rgb = content.astype(np.float32)
    height = content.shape[0]
    blue = (rgb[..., 2] > rgb[..., 0] + 25) & (rgb[..., 2] > 120)
    blue[height // 2 :] = False
    blue = morphology.opening(blue, morphology.disk(2))
    parts = measure.label(blue)
    top = set(np.unique(parts[0])) - {0}
    labels = np.zeros(content.shape[:2], np.uint8)
    labels[np.isin(parts, list(top))] = 1
    labels[int(height * 0.76) :] = 2
    return labels


def main() -> None:
    import napari
    from PIL import Image

    app, settle = fresh_session()

    content = load("tubingen.jpg", 512)
    viewer = napari.Viewer(title="napari-nst")
    viewer.window._qt_window.resize(1500, 900)
    viewer.add_image(content, name="tubingen", rgb=True)
    width = content.shape[1]
    viewer.add_image(
        load("starry_night.jpg", 256),
        name="starry night",
        rgb=True,
        translate=(content.shape[0] + 24, 0),
    )
    viewer.add_image(
        load("the_scream.jpg", 256),
        name="the scream",
        rgb=True,
        translate=(content.shape[0] + 24, 280),
    )
    labels = viewer.add_labels(np.zeros(content.shape[:2], np.uint8), name="regions", opacity=0.35)
    _, widget = viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    widget.controls["device"].value = "cpu"
    widget.controls["method"].value = "universal"
    widget.content.value = [viewer.layers["tubingen"]]
    widget.style.value = [viewer.layers["starry night"], viewer.layers["the scream"]]
    widget.regions.picker.value = labels
    labels.data = sky_and_river(content)  # as painted: the table follows the labels
    settle()
    widget.run()
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.02)
    result = [layer for layer in viewer.layers if "napari_nst" in layer.metadata][-1]
    result.translate = (0, width + 24)  # beside the content, not over it
    viewer.layers.selection.active = labels
    settle()
    viewer.reset_view()
    settle()
    pixels = viewer.screenshot(canvas_only=False)
    out = REPO / "docs" / "regions_napari.jpg"
    Image.fromarray(pixels[..., :3]).save(out, quality=85)
    print("wrote", out, "in", widget.status.value)
    viewer.close()


if __name__ == "__main__":
    main()
