"""Settings validation (types, finite numbers, layer names, weights arguments), the clearer
errors of the weights lookup, devices and ``predict_batch``, the damaged read-only cache of
converted Magenta weights, the public exports and ``help(Settings)``."""

from __future__ import annotations

import dataclasses
import pydoc
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import napari_nst
from napari_nst.cli import main as cli_main
from napari_nst.settings import Settings

from napari_nst.engine import clear_caches
from tests.helpers import shared_path

FLOAT_FIELDS = [f.name for f in dataclasses.fields(Settings) if type(f.default) is float]


# --- item 6: non-finite numbers ------------------------------------------------------------------

@pytest.mark.parametrize("name", FLOAT_FIELDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), "nan"])
def test_non_finite_floats_are_rejected(name, bad):
    with pytest.raises(ValueError, match=f"^{name} must be a finite number, got"):
        Settings(**{name: bad})


def test_float_fields_are_known():
    assert {"style_strength", "content_weight", "style_weight", "tv_weight", "learning_rate",
            "style_scale"} <= set(FLOAT_FIELDS)


@pytest.mark.parametrize("name, value", [
    ("style_layer_weights", (1.0, float("nan"), 1.0, 1.0, 1.0)),
    ("style_blend", (float("inf"), 1.0)),
    ("content_window", (0.0, float("inf"))),
    ("style_window", (float("nan"), 1.0)),
])
def test_non_finite_sequences_are_rejected(name, value):
    with pytest.raises(ValueError, match=f"^{name} .*finite"):
        Settings(**{name: value})


def test_nan_strength_is_rejected_before_any_work():
    content = np.full((32, 32, 3), 0.5, np.float32)
    with pytest.raises(ValueError, match="style_strength must be a finite number, got nan"):
        napari_nst.stylize(content, content, style_strength=float("nan"), method="predict")


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for name in ("content.png", "style.png"):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths


def test_cli_rejects_nan(image_files, tmp_path, capsys):
    code = cli_main(["stylize", *image_files, "-o", str(tmp_path / "out.png"),
                     "--content-weight", "nan"])
    assert code == 2
    assert "content_weight must be a finite number, got nan" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


# --- item 7: types ------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"steps": "2.5"}, "steps must be an integer, got '2.5' (str)"),
    ({"steps": 2.5}, "steps must be an integer, got 2.5 (float)"),
    ({"steps": True}, "steps must be an integer, got True (bool)"),
    ({"size": None}, "size must be an integer, got None (NoneType)"),
    ({"content_weight": "heavy"}, "content_weight must be a number, got 'heavy' (str)"),
    ({"style_weight": False}, "style_weight must be a number, got False (bool)"),
    ({"keep_colors": "no"}, "keep_colors must be True or False, got 'no' (str)"),
    ({"coarse_to_fine": 1}, "coarse_to_fine must be True or False, got 1 (int)"),
    ({"method": 5}, "method must be one of optimize, predict, got 5 (int)"),
    ({"device": 0}, "device must be a string"),
    ({"init": 5}, "init must be one of content, noise, predict or an image array, got 5 (int)"),
    ({"style_layers": "conv1_1"}, "style_layers must be a tuple of layer names"),
    ({"content_layers": [4]}, "content_layers must be a tuple of layer names"),
    ({"style_layer_weights": "abcde"}, "style_layer_weights must be a sequence of numbers"),
    ({"weights_dir": 3}, "weights_dir must be a folder path or None, got 3 (int)"),
])
def test_wrong_types_are_named(changes, message):
    with pytest.raises(ValueError) as info:
        Settings(**changes)
    assert message in str(info.value)


def test_unambiguous_values_are_coerced():
    settings = Settings(steps="10", size=np.int64(64), content_weight=2, style_strength="0.5",
                        style_layers=["conv1_1", "conv2_1"], style_layer_weights=[1, 2],
                        weights_dir=Path("/tmp"))
    assert settings.steps == 10 and type(settings.steps) is int
    assert settings.size == 64 and type(settings.size) is int
    assert settings.content_weight == 2.0 and type(settings.content_weight) is float
    assert settings.style_strength == 0.5
    assert settings.style_layers == ("conv1_1", "conv2_1")
    assert settings.style_layer_weights == (1.0, 2.0)
    assert settings.weights_dir == "/tmp"
    assert Settings(weights_dir="").weights_dir is None  # "empty: the default lookup"
    init = np.zeros((8, 8, 3), np.float32)
    assert Settings(init=init).init is init  # arrays are kept as they are, not copied


def test_replace_validates_types_too():
    with pytest.raises(ValueError, match="steps must be an integer, got 'ten' \\(str\\)"):
        Settings().replace(steps="ten")


def test_every_default_is_valid_and_kept():
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert getattr(defaults, f.name) == default


# --- item 10: layer names, weights arguments, environment variables, predict_batch ----------------

@pytest.mark.parametrize("name", ["style_layers", "content_layers"])
def test_unknown_layers_are_rejected_at_settings_time(name):
    with pytest.raises(ValueError) as info:
        Settings(**{name: ("conv1_1", "conv6_1")})
    message = str(info.value)
    assert name in message and "'conv6_1'" in message and "conv5_4" in message


def test_layer_names_have_one_source_and_settings_do_not_import_torch():
    from napari_nst.engine import vgg
    from napari_nst.settings import VGG19_LAYERS

    assert vgg.LAYER_NAMES is VGG19_LAYERS and len(VGG19_LAYERS) == 37
    distilled = vgg.VGG19_DISTILLED_NET
    assert distilled.layer_names[-1] == "relu5_1"
    assert len(vgg.build_features(distilled)) == len(distilled.layer_names)
    code = ("import sys, napari_nst.settings as s; s.Settings(style_layers=('conv1_1',)); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("value", [5, 2.0, object()])
def test_vgg_weights_of_a_wrong_type(value):
    with pytest.raises(ValueError, match="vgg_weights must be a .pth file, a torch module or None"):
        Settings(vgg_weights=value)


def test_weights_given_as_a_directory(tmp_path, random_vgg):
    with pytest.raises(ValueError) as info:
        Settings(vgg_weights=tmp_path)
    message = str(info.value)
    assert f"vgg_weights={str(tmp_path)!r} is a folder" in message and ".pth file" in message
    with pytest.raises(ValueError, match="predictor_weights=.* is a folder"):
        Settings(predictor_weights=str(tmp_path))
    assert Settings(vgg_weights=random_vgg).vgg_weights is random_vgg
    assert Settings(vgg_weights=tmp_path / "missing.pth").vgg_weights == tmp_path / "missing.pth"


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    from napari_nst.engine import weights

    monkeypatch.setenv(weights.CACHE_DIR_ENV, str(tmp_path / "cache"))
    clear_caches()
    return weights


def test_missing_weights_dir_variable_is_named(no_weights, tmp_path, monkeypatch):
    from napari_nst.engine.weights import VGG19_DISTILLED, WeightsError

    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv(no_weights.WEIGHTS_DIR_ENV, str(missing))
    with pytest.raises(WeightsError) as info:
        no_weights.locate(VGG19_DISTILLED, download=False)
    message = str(info.value)
    assert "$NAPARI_NST_WEIGHTS_DIR" in message and str(missing) in message
    assert "does not exist" in message
    a_file = tmp_path / "weights.txt"
    a_file.write_text("not a folder")
    monkeypatch.setenv(no_weights.WEIGHTS_DIR_ENV, str(a_file))
    with pytest.raises(WeightsError, match=r"is a file, not a folder \(it is named by "
                                           r"\$NAPARI_NST_WEIGHTS_DIR\)"):
        no_weights.locate(VGG19_DISTILLED, download=False)
    # the weights_dir setting gets the same check, naming the setting
    monkeypatch.delenv(no_weights.WEIGHTS_DIR_ENV)
    with pytest.raises(WeightsError, match=r"is a file, not a folder \(it is named by the "
                                           r"weights_dir setting\)"):
        no_weights.locate(VGG19_DISTILLED, directory=a_file, download=False)


def test_device_variable_is_named(monkeypatch):
    from napari_nst.engine.devices import DeviceError, resolve_device

    monkeypatch.setenv("NAPARI_NST_DEVICE", "tpu")
    with pytest.raises(DeviceError) as info:
        resolve_device("auto")
    message = str(info.value)
    assert "NAPARI_NST_DEVICE" in message and "'tpu'" in message and "unset" in message
    assert str(resolve_device("cpu")) == "cpu"  # an explicit device does not read the variable


def test_predict_batch_given_one_array():
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r"pass a list of arrays, e\.g\. \[image\]"):
        napari_nst.predict_batch(image, image, method="predict", device="cpu")


# --- item 9: a damaged converted file in a read-only cache ----------------------------------------

def _make_undeletable(path: Path):
    """Make ``path`` impossible to delete and return an undo function, or None if this process
    can delete it whatever the permissions (root without ``chattr``)."""
    folder = path.parent
    folder.chmod(0o555)
    probe = folder / ".probe"
    try:
        probe.touch()
    except OSError:
        return lambda: folder.chmod(0o755)
    probe.unlink()
    folder.chmod(0o755)
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    return None


@pytest.mark.shared
def test_damaged_read_only_cache_falls_back_to_converting_in_memory(tmp_path, monkeypatch):
    from napari_nst.engine import magenta, weights

    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(shared_path("weights")))
    monkeypatch.setenv(weights.CACHE_DIR_ENV, str(tmp_path / "cache"))
    source = weights.locate(weights.MAGENTA_PREDICTOR, download=False)
    cached = magenta.converted_cache_path(weights.MAGENTA_PREDICTOR, weights.sha256_of(source))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a file")
    undo = _make_undeletable(cached)
    if undo is None:
        pytest.skip("cannot make a file undeletable here (root without chattr)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = magenta.load_state_dict("predictor", source)
            second = magenta.load_state_dict("predictor", source)
    finally:
        undo()
    expected = magenta.StylePredictor().state_dict()
    assert set(first) == set(expected) and set(second) == set(expected)
    assert all(first[k].shape == expected[k].shape for k in expected)
    messages = [str(w.message) for w in caught if str(cached) in str(w.message)]
    assert len(messages) == 1, [str(w.message) for w in caught]  # said once, not per load
    assert "cannot be replaced" in messages[0] and "in memory" in messages[0]
    assert cached.read_bytes() == b"half a file"


# --- item 11 and help(Settings) -------------------------------------------------------------------

def test_run_steps_is_exported():
    from napari_nst import run_steps
    from napari_nst.engine.run import run_steps as engine_run_steps

    assert run_steps is engine_run_steps
    assert "run_steps" in napari_nst.__all__ and "run_steps" in dir(napari_nst)


def test_help_explains_every_field():
    doc = pydoc.render_doc(Settings, renderer=pydoc.plaintext)
    text = " ".join(word for word in doc.split() if word != "|")  # pydoc's margin
    assert "Every parameter of a style-transfer run." in text
    for f in dataclasses.fields(Settings):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        entry = " ".join(f"{f.name} ({default!r}): {f.metadata['help']}".split())
        assert entry in text, entry
    assert "steps (300): optimisation steps" in text


def test_settings_module_does_not_grow_heavy_imports():
    code = ("import sys, napari_nst; napari_nst.Settings(steps='10'); "
            "print(sorted(m for m in ('torch', 'napari', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
