"""Fixtures the tests share: a seeded random VGG-19 and its file, small real images, a local
weights mirror. Helpers (``shared_path``, ``skip_or_fail``, ...) are in ``tests.helpers``."""

from __future__ import annotations

import pytest

from tests.helpers import SHARED, Mirror, shared_image


def pytest_configure(config):
    """The sample painting from ../shared/images where it is (no test downloads it from the
    internet: the mirror fixture serves it to the tests of the download)."""
    import os

    if (SHARED / "images" / "starry_night.jpg").is_file():
        os.environ.setdefault("NAPARI_NST_SAMPLE_DIR", str(SHARED / "images"))


def _method_names() -> tuple:
    from napari_nst.engine.methods import NAMES

    return NAMES


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


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """An empty mirror and an empty cache, no weights directory: the next load downloads."""
    from napari_nst.engine import clear_caches, weights

    folder = tmp_path / "mirror"
    folder.mkdir()
    server = Mirror(folder)
    monkeypatch.delenv(weights.WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.setenv(weights.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(weights.DOWNLOAD_URL_ENV, server.url)
    clear_caches()
    yield server
    server.close()


@pytest.fixture
def shared_weights(monkeypatch):
    """$NAPARI_NST_WEIGHTS_DIR at ../shared/weights (skips, or fails in CI, without it)."""
    from tests.helpers import shared_path

    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(shared_path("weights")))


@pytest.fixture
def magenta_weights(monkeypatch):
    """$NAPARI_NST_WEIGHTS_DIR at ../shared/weights with the Magenta .tflite files, for predict
    and optimize's default start (init="predict"): skips naming the missing file (fails in CI)."""
    from tests.helpers import magenta_weights_dir

    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(magenta_weights_dir()))


@pytest.fixture(params=_method_names())
def method(request):
    """Each registered method in turn (``engine.methods.REGISTRY``)."""
    return request.param
