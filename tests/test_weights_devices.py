"""VGG-19 weights lookup order, hash checks, download failures (faked at the download boundary
only), and device errors."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch

from napari_nst.engine import clear_caches, weights
from napari_nst.engine import vgg as vgg_module
from napari_nst.engine.devices import DeviceError, available_devices, resolve_device
from napari_nst.engine.vgg import load_features
from napari_nst.engine.weights import VGG19, WeightsError, sha256_of


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty weights dir and torch hub cache; no file anywhere yet."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    (tmp_path / "weights").mkdir()
    clear_caches()
    return tmp_path


@pytest.fixture
def random_as_vgg19(vgg_file, monkeypatch):
    """Register the random VGG file's real hash prefix as VGG-19's, so it passes as the real file.
    Only the expected hash is swapped; lookup, hashing and loading run as for users."""
    entry = dataclasses.replace(VGG19, sha256=sha256_of(vgg_file)[:8])
    monkeypatch.setitem(
        vgg_module.NETWORKS, "vgg19", dataclasses.replace(vgg_module.VGG19_NET, weights=entry)
    )
    return entry


def _first_weight(features):
    return features[0].weight.detach().clone()


def test_explicit_module_and_file(random_vgg, vgg_file, isolated):
    features, identity = load_features("vgg19", random_vgg)
    assert identity == "module:Sequential" and torch.equal(
        _first_weight(features), random_vgg[0].weight
    )
    features, identity = load_features("vgg19", vgg_file)
    assert identity == "file:vgg19-random.pth"
    assert torch.equal(_first_weight(features), random_vgg[0].weight)
    with pytest.raises(WeightsError, match="does not exist"):
        load_features("vgg19", isolated / "nope.pth")


def test_lookup_order_weights_dir_then_cache_then_download(
    vgg_file, mirror, random_as_vgg19, tmp_path, monkeypatch
):
    name = random_as_vgg19.filename
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    directory = tmp_path / "weights"
    directory.mkdir()
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(directory))
    shutil.copy(vgg_file, mirror.folder / name)
    # nothing anywhere: downloaded into torchvision's cache
    assert weights.locate(random_as_vgg19, progress=False) == cache / name
    assert mirror.requests == [name]
    # in the cache: no second download, and no second hashing (it was hashed as it streamed in)
    hashed = []
    with monkeypatch.context() as patch:
        patch.setattr(weights, "sha256_of", lambda path: hashed.append(path) or "")
        assert weights.locate(random_as_vgg19) == cache / name and len(mirror.requests) == 1
    assert hashed == []
    # the weights directory wins over the cache
    shutil.copy(vgg_file, directory / name)
    assert weights.locate(random_as_vgg19) == directory / name
    features, identity = load_features("vgg19", progress=False)
    assert identity == f"file:{name}"


def test_no_network_error_names_file_url_and_directory(isolated, monkeypatch):
    monkeypatch.setenv(weights.DOWNLOAD_URL_ENV, "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(WeightsError) as info:
        load_features("vgg19")
    message = str(info.value)
    assert (
        VGG19.url in message and VGG19.filename in message and str(isolated / "weights") in message
    )
    assert "http://127.0.0.1:9/" + VGG19.filename in message


def test_hash_mismatch_in_weights_dir(vgg_file, isolated):
    shutil.copy(vgg_file, isolated / "weights" / VGG19.filename)
    with pytest.raises(WeightsError, match="sha256 .* expected dcbb9e9d.*corrupt"):
        load_features("vgg19")


def test_corrupt_download_is_removed(mirror, tmp_path):
    (mirror.folder / VGG19.filename).write_bytes(b"<html>proxy error</html>")
    with pytest.raises(WeightsError, match="not the expected VGG-19.*captive portal"):
        load_features("vgg19", progress=False)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert list(checkpoints.iterdir()) == []  # neither the file nor a partial one


class Bars:
    """A bar factory that records what a download reports."""

    def __init__(self):
        self.made = []

    def __call__(self, total, description):
        bar = {"total": total, "description": description, "n": 0, "closed": False}
        self.made.append(bar)
        return type(
            "Bar",
            (),
            {
                "update": lambda _, n: bar.update(n=bar["n"] + n),
                "close": lambda _: bar.update(closed=True),
            },
        )()


def test_download_reports_size_and_progress_to_the_thread_bar(vgg_file, mirror, random_as_vgg19):
    shutil.copy(vgg_file, mirror.folder / random_as_vgg19.filename)
    bars = Bars()
    with weights.download_progress(bars):
        weights.locate(random_as_vgg19)
    size = vgg_file.stat().st_size
    assert bars.made == [
        {
            "total": size,
            "n": size,
            "closed": True,
            "description": f"Downloading {random_as_vgg19.filename} ({size / 1e6:.1f} MB)",
        }
    ]
    weights.locate(random_as_vgg19)  # cached now, and outside the block: no bar anywhere
    assert len(bars.made) == 1 and len(mirror.requests) == 1


def test_weights_dir_setting_is_searched_first(vgg_file, isolated, random_as_vgg19, tmp_path):
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    shutil.copy(vgg_file, chosen / random_as_vgg19.filename)
    assert weights.locate(random_as_vgg19, directory=chosen) == chosen / random_as_vgg19.filename
    features, identity = load_features("vgg19", directory=str(chosen), progress=False)
    assert identity == f"file:{random_as_vgg19.filename}"
    with pytest.raises(WeightsError, match="weights directory .*nowhere does not exist"):
        weights.locate(random_as_vgg19, directory=tmp_path / "nowhere")


def test_unreadable_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot read weights from .*bad.pth"):
        load_features("vgg19", bad)
    foreign = tmp_path / "foreign.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, foreign)
    with pytest.raises(WeightsError, match="not a VGG-19 state dict"):
        load_features("vgg19", foreign)


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert "cpu" in available_devices()
    assert resolve_device("auto") == torch.device(available_devices()[0])
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if torch.cuda.device_count() < 8:
        with pytest.raises(DeviceError, match="'cuda:7' is not available"):
            resolve_device("cuda:7")
    if not torch.backends.mps.is_available():
        with pytest.raises(DeviceError, match="'mps'.*not available"):
            resolve_device("mps")


def test_run_on_missing_device_is_a_clear_error(content_small, random_vgg):
    import napari_nst

    with pytest.raises(ValueError, match="cuda:7"):
        napari_nst.iterate(content_small, content_small, device="cuda:7", vgg_weights=random_vgg)
