"""What the screenshot scripts share: a Qt application with the widget's defaults (a fresh
config folder, not this machine's saved values), a ``settle`` that lets napari draw, and the
shared images at a size."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def fresh_session():
    """(the QApplication, ``settle(seconds)``: process events for that long)."""
    os.environ.setdefault("NAPARI_NST_WEIGHTS_DIR", str(SHARED / "weights"))
    os.environ.setdefault("NAPARI_NST_SAMPLE_DIR", str(SHARED / "images"))  # the painting
    os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp()
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])

    def settle(seconds: float = 1.0) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.02)

    return app, settle


def load(name: str, size: int) -> np.ndarray:
    """A shared image as uint8 RGB, its longer side ``size``."""
    from PIL import Image

    with Image.open(SHARED / "images" / name) as image:
        image = image.convert("RGB")
        image.thumbnail((size, size))
        return np.asarray(image)
