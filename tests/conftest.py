"""Shared test helpers: ../shared images and weights, a seeded random VGG-19, display checks.

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


def shared_path(*parts) -> Path:
    """Path under ../shared, or skip (fail in CI) when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        skip_or_fail(f"{path} is missing: ../shared (test images and weights) is not beside the repo")
    return path


def shared_image(name: str, size: int | None = None) -> np.ndarray:
    """A real image from ../shared/images as uint8 RGB, optionally scaled to ``size`` on the long side."""
    from PIL import Image

    with Image.open(shared_path("images", name)) as image:
        image = image.convert("RGB")
        if size is not None:
            scale = size / max(image.size)
            image = image.resize((max(16, round(image.width * scale)), max(16, round(image.height * scale))),
                                 Image.Resampling.LANCZOS)
        return np.asarray(image)


@pytest.fixture(scope="session")
def random_vgg():
    from napari_nst.engine.vgg import random_vgg19

    return random_vgg19(seed=0)


@pytest.fixture(scope="session")
def vgg_file(tmp_path_factory, random_vgg):
    """The seeded random VGG-19 saved as a torchvision-layout state dict file."""
    import torch

    path = tmp_path_factory.mktemp("weights") / "vgg19-random.pth"
    torch.save({f"features.{k}": v for k, v in random_vgg.state_dict().items()}, path)
    return path


@pytest.fixture
def content_small():
    return shared_image("tubingen.jpg", 48)


@pytest.fixture
def style_small():
    return shared_image("starry_night.jpg", 48)


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
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """An empty mirror and an empty cache, no weights directory: the next load downloads."""
    from napari_nst.engine import weights

    folder = tmp_path / "mirror"
    folder.mkdir()
    server = Mirror(folder)
    monkeypatch.delenv(weights.WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.setenv(weights.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(weights.DOWNLOAD_URL_ENV, server.url)
    weights._verified.clear()
    yield server
    server.close()
