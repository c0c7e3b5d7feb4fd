"""Helpers the tests share (imported as ``tests.helpers``; the fixtures are in conftest.py):
../shared images and weights, skips that fail under CI=true, and a local weights mirror.

Outside CI a test that needs ../shared or a display skips with the reason; with CI=true it fails,
so a misconfigured CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str):
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this must not be skipped)")
    pytest.skip(reason)


def gui_session(tmp_path, monkeypatch) -> None:
    """For napari tests: a display (else skip, fail in CI) and a fresh config folder, so widget
    values saved by one test do not reach the next."""
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        skip_or_fail(
            "no display: napari tests need Xvfb (apt-get install xvfb; pytest-xvfb starts it)"
        )
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def shared_path(*parts) -> Path:
    """Path under ../shared, or skip (fail in CI) when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        skip_or_fail(
            f"{path} is missing: ../shared (test images and weights) is not beside the repo"
        )
    return path


def magenta_weights_dir() -> Path:
    """../shared/weights holding both Magenta .tflite files (predict reads them, and so does
    optimize's default start, init="predict"), or skip (fail in CI) naming the missing file."""
    from napari_nst.engine.weights import MAGENTA_PREDICTOR, MAGENTA_TRANSFORMER

    folder = shared_path("weights")
    for entry in (MAGENTA_PREDICTOR, MAGENTA_TRANSFORMER):
        if not (folder / entry.filename).is_file():
            skip_or_fail(
                f"{folder / entry.filename} is missing: predict, and optimize's default "
                "start (init='predict'), need the Magenta weights "
                "(../shared/weights/README.md)"
            )
    return folder


def shared_image(name: str, size: int | None = None) -> np.ndarray:
    """A real image from ../shared/images as uint8 RGB, optionally scaled to ``size`` on the long side."""
    from PIL import Image

    with Image.open(shared_path("images", name)) as image:
        image = image.convert("RGB")
        if size is not None:
            scale = size / max(image.size)
            image = image.resize(
                (max(16, round(image.width * scale)), max(16, round(image.height * scale))),
                Image.Resampling.LANCZOS,
            )
        return np.asarray(image)


class Mirror:
    """A real HTTP server on localhost serving ``folder`` by file name, the way a lab's mirror
    (``$NAPARI_NST_DOWNLOAD_URL``) serves weights; ``requests`` lists the paths asked for."""

    def __init__(self, folder: Path):
        import functools
        import http.server
        import threading

        self.folder = folder
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                mirror.requests.append(self.path.lstrip("/"))
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
        )
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
