"""Settings validation (types, finite numbers, layer names, weights arguments, the one rule for
relative weights, init and init_image), the step total of a run, the clearer errors of the weights
lookup, devices and ``predict_batch``, the damaged read-only cache of
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
from napari_nst.engine import clear_caches
from napari_nst.settings import Settings
from tests.helpers import magenta_weights_dir

FLOAT_FIELDS = [f.name for f in dataclasses.fields(Settings) if type(f.default) is float]


# --- item 6: non-finite numbers ------------------------------------------------------------------


@pytest.mark.parametrize("name", FLOAT_FIELDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), "nan"])
def test_non_finite_floats_are_rejected(name, bad):
    with pytest.raises(ValueError, match=f"^{name} must be a finite number, got"):
        Settings(**{name: bad})


def test_float_fields_are_known():
    assert {
        "style_strength",
        "content_weight",
        "style_weight",
        "tv_weight",
        "learning_rate",
        "style_scale",
    } <= set(FLOAT_FIELDS)


@pytest.mark.parametrize(
    "name, value",
    [
        ("style_layer_weights", (1.0, float("nan"), 1.0, 1.0, 1.0)),
        ("style_blend", (float("inf"), 1.0)),
        ("content_window", (0.0, float("inf"))),
        ("style_window", (float("nan"), 1.0)),
    ],
)
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
    code = cli_main(
        ["stylize", *image_files, "-o", str(tmp_path / "out.png"), "--content-weight", "nan"]
    )
    assert code == 2
    assert "content_weight must be a finite number, got nan" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


# --- item 7: types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"steps": "2.5"}, "steps must be an integer, got '2.5' (str)"),
        ({"steps": 2.5}, "steps must be an integer, got 2.5 (float)"),
        ({"steps": True}, "steps must be an integer, got True (bool)"),
        ({"size": None}, "size must be an integer, got None (NoneType)"),
        ({"content_weight": "heavy"}, "content_weight must be a number, got 'heavy' (str)"),
        ({"style_weight": False}, "style_weight must be a number, got False (bool)"),
        ({"keep_colors": "no"}, "keep_colors must be True or False, got 'no' (str)"),
        ({"coarse_to_fine": 1}, "coarse_to_fine must be True or False, got 1 (int)"),
        ({"method": 5}, "method must be one of optimize, predict, universal, got 5 (int)"),
        ({"device": 0}, "device must be a string"),
        ({"init": 5}, "init must be one of content, noise, predict, universal, got 5 (int)"),
        (
            {"init_image": "start.png"},
            "init_image must be an image array such as the content's, or "
            "None, got 'start.png' (str)",
        ),
        ({"style_layers": "conv1_1"}, "style_layers must be a tuple of layer names"),
        ({"content_layers": [4]}, "content_layers must be a tuple of layer names"),
        ({"style_layer_weights": "abcde"}, "style_layer_weights must be a sequence of numbers"),
        ({"weights_dir": 3}, "weights_dir must be a folder path or None, got 3 (int)"),
    ],
)
def test_wrong_types_are_named(changes, message):
    with pytest.raises(ValueError) as info:
        Settings(**changes)
    assert message in str(info.value)


def test_unambiguous_values_are_coerced():
    settings = Settings(
        steps="10",
        size=np.int64(64),
        content_weight=2,
        style_strength="0.5",
        style_layers=["conv1_1", "conv2_1"],
        style_layer_weights=[1, 2],
        weights_dir=Path("/tmp"),
    )
    assert settings.steps == 10 and type(settings.steps) is int
    assert settings.size == 64 and type(settings.size) is int
    assert settings.content_weight == 2.0 and type(settings.content_weight) is float
    assert settings.style_strength == 0.5
    assert settings.style_layers == ("conv1_1", "conv2_1")
    assert settings.style_layer_weights == (1.0, 2.0)
    assert settings.weights_dir == "/tmp"
    assert Settings(weights_dir="").weights_dir is None  # "empty: the default lookup"
    start = np.zeros((8, 8, 3), np.float32)
    assert Settings(init_image=start).init_image is start  # arrays are kept as they are, not copied


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
    code = (
        "import sys, napari_nst.settings as s; s.Settings(style_layers=('conv1_1',)); "
        "print('torch' in sys.modules)"
    )
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
    with pytest.raises(
        WeightsError,
        match=r"is a file, not a folder \(it is named by "
        r"\$NAPARI_NST_WEIGHTS_DIR\)",
    ):
        no_weights.locate(VGG19_DISTILLED, download=False)
    # the weights_dir setting gets the same check, naming the setting
    monkeypatch.delenv(no_weights.WEIGHTS_DIR_ENV)
    with pytest.raises(
        WeightsError,
        match=r"is a file, not a folder \(it is named by the "
        r"weights_dir setting\)",
    ):
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
    from napari_nst.engine import weights
    from napari_nst.engine.methods.predict import magenta, magenta_weights

    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(magenta_weights_dir()))
    monkeypatch.setenv(weights.CACHE_DIR_ENV, str(tmp_path / "cache"))
    source = weights.locate(weights.MAGENTA_PREDICTOR, download=False)
    cached = magenta_weights.converted_cache_path(
        weights.MAGENTA_PREDICTOR, weights.sha256_of(source)
    )
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a file")
    undo = _make_undeletable(cached)
    if undo is None:
        pytest.skip("cannot make a file undeletable here (root without chattr)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = magenta_weights.load_state_dict("predictor", source)
            second = magenta_weights.load_state_dict("predictor", source)
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
    assert "steps (20): optimisation steps" in text


def test_settings_module_does_not_grow_heavy_imports():
    code = (
        "import sys, napari_nst; napari_nst.Settings(steps='10'); "
        "print(sorted(m for m in ('torch', 'napari', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- issue 13, finding 6: one rule for relative weights -------------------------------------------

WEIGHTS_FIELDS = ["style_layer_weights", "style_blend"]


@pytest.mark.parametrize("name", WEIGHTS_FIELDS)
def test_negative_weights_are_rejected_with_the_rule(name):
    weights = (1.0, -0.5, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError) as info:
        Settings(**{name: weights})
    assert str(info.value) == (
        f"{name} must not hold negative weights, got {weights}; the "
        "weights are relative (0 leaves an entry out)"
    )


@pytest.mark.parametrize("name", WEIGHTS_FIELDS)
def test_weights_need_a_positive_sum(name):
    with pytest.raises(ValueError, match=f"^{name} must have a positive sum, got \\(0.0, 0.0, "):
        Settings(**{name: (0, 0, 0, 0, 0)})
    assert getattr(Settings(**{name: (0, 2, 0, 0, 0)}), name) == (0.0, 2.0, 0.0, 0.0, 0.0)


def test_layer_weights_need_one_per_style_layer():
    with pytest.raises(
        ValueError,
        match=r"^style_layer_weights needs one weight per entry of "
        r"style_layers \(2\), got 3$",
    ):
        Settings(style_layers=("conv1_1", "conv2_1"), style_layer_weights=(1, 2, 3))
    with pytest.raises(ValueError, match=r"per entry of style_layers \(5\), got 2$"):
        Settings().replace(style_layer_weights=(1, 2))  # against the default layers too
    # no style layers, no weights: a content-only run
    assert Settings(style_layers=(), style_layer_weights=()).style_layer_weights == ()


def test_blend_weights_need_one_per_style_image_when_the_run_starts():
    """The number of styles is known when a run starts: the same rule, checked before any work."""
    content = np.full((40, 40, 3), 0.5, np.float32)
    styles = [np.zeros((40, 40, 3), np.float32), np.ones((40, 40, 3), np.float32)]
    with pytest.raises(
        ValueError,
        match=r"^style_blend needs one weight per style image \(2\), "
        r"got 3$",
    ):
        napari_nst.run_steps(content, styles, style_blend=(1, 2, 3), device="cpu")


def test_the_engine_normalises_weights_by_the_settings_rule(random_vgg):
    """The loss (and predict's blend, which imports it from engine.losses) use the helper of
    settings.py: the same messages, the weights divided by their sum (None: equal)."""
    import torch

    from napari_nst.engine.methods.optimize import losses
    from napari_nst.validation import normalized_blend_weights, normalized_weights

    assert losses.normalized_blend_weights is normalized_blend_weights
    assert normalized_blend_weights((1, 3), 2) == [0.25, 0.75]
    assert normalized_blend_weights(None, 4) == [0.25] * 4
    with pytest.raises(ValueError, match="^style_blend must not hold negative weights"):
        normalized_blend_weights((2.0, -1.0), 2)
    assert normalized_weights("style_layer_weights", (2, 6), 2, "layer") == [0.25, 0.75]

    from napari_nst.engine.vgg import VGGFeatures

    extractor = VGGFeatures(random_vgg, ("conv1_1", "conv2_1"))
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    loss = losses.StyleTransferLoss(
        extractor,
        image,
        [image],
        content_layers=(),
        style_layers=("conv1_1", "conv2_1"),
        style_layer_weights=(1.0, 3.0),
    )
    assert loss.style_layer_weights == [0.25, 0.75]
    content_only = losses.StyleTransferLoss(
        extractor, image, [image], content_layers=("conv1_1",), style_layers=()
    )
    assert content_only.style_layer_weights == [] and float(content_only(image)[0]) == 0.0
    with pytest.raises(
        ValueError,
        match=r"^style_layer_weights must not hold negative weights, "
        r"got \(1.0, -3.0\)",
    ):
        losses.StyleTransferLoss(
            extractor,
            image,
            [image],
            content_layers=(),
            style_layers=("conv1_1", "conv2_1"),
            style_layer_weights=(1.0, -3.0),
        )


# --- issue 13, finding 2: init (a choice) and init_image (an array) -------------------------------


def test_init_image_is_the_start_image(random_vgg, content_small, style_small, magenta_weights):
    """A start image given as init_image is where the optimisation starts; init=<array> still
    works, with a DeprecationWarning that names the caller's line and init_image."""
    run = dict(
        vgg_weights=random_vgg,
        size=32,
        steps=1,
        device="cpu",
        coarse_to_fine=False,
        min_working_size=32,
    )
    start = np.zeros((24, 32, 3), np.float32)
    from_image = napari_nst.stylize(content_small, style_small, init_image=start, **run)
    from_content = napari_nst.stylize(content_small, style_small, **run)
    assert not np.allclose(from_image, from_content)
    assert float(from_image.mean()) < float(from_content.mean())  # one step from black
    with pytest.warns(DeprecationWarning, match=r"pass the start image as init_image=") as caught:
        deprecated = napari_nst.stylize(content_small, style_small, init=start, **run)
    assert caught[0].filename == __file__  # the user's line, not the package's
    np.testing.assert_array_equal(deprecated, from_image)
    with pytest.warns(DeprecationWarning):
        settings = Settings(init=start)
    assert settings.init == "content" and settings.init_image is start
    assert settings.to_metadata()["init_image"] == "<ndarray>"


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"init": "noise", "init_image": np.zeros((4, 4, 3))},
            "init='noise' and init_image both say where to start; give one",
        ),
        (
            {"init": np.zeros((4, 4, 3)), "init_image": np.zeros((4, 4, 3))},
            "init and init_image are both images; pass the start image as init_image only",
        ),
    ],
)
def test_init_and_init_image_together_are_an_error(changes, message):
    with pytest.raises(ValueError) as info:
        Settings(**changes)
    assert message in str(info.value)
    with pytest.raises(ValueError, match="init='universal' and init_image"):
        Settings(init_image=np.zeros((4, 4, 3))).replace(init="universal")


def test_a_start_image_replaces_the_default_start():
    """init's default (predict) gives way to init_image; an explicit content start stays."""
    start = np.zeros((4, 4, 3))
    assert Settings().init == "predict"
    assert Settings(init_image=start).init == "content"
    assert Settings(init="content", init_image=start).init == "content"


def test_total_steps_follows_the_method():
    """What a progress bar counts for one run: optimize's steps, predict's one result."""
    from napari_nst.settings import applies_to

    assert Settings(steps=40).total_steps() == 40
    assert Settings(method="predict", steps=40).total_steps() == 1
    assert applies_to("steps", "optimize") and not applies_to("steps", "predict")


def test_choices_have_one_source():
    """A choice field's choices are its Literal annotation's arguments, in order."""
    from napari_nst.settings import INITS, METHODS, OUTPUT_RANGES, field_annotation, field_choices

    fields = {f.name: f for f in dataclasses.fields(Settings)}
    from napari_nst.engine.methods import REGISTRY

    assert field_choices(fields["method"]) == METHODS == tuple(REGISTRY)  # the one registry
    assert METHODS == ("optimize", "predict", "universal")
    assert field_choices(fields["init"]) == INITS == ("content", "noise", "predict", "universal")
    assert field_choices(fields["output_range"]) == OUTPUT_RANGES
    assert field_choices(fields["steps"]) is None and field_annotation(fields["steps"]) is int
    with pytest.raises(
        ValueError, match="^optimizer='sgd' is not supported; choose one of lbfgs, adam$"
    ):
        Settings(optimizer="sgd")


def test_help_says_which_method_reads_a_field():
    doc = " ".join(
        word for word in pydoc.render_doc(Settings, renderer=pydoc.plaintext).split() if word != "|"
    )
    assert "style_crops (1): average the style over this many crops; predict only;" in doc
    assert "steps (20): optimisation steps (one forward+backward pass each); optimize only;" in doc
    assert "size (512): result resolution: the content's longer side in pixels; from" in doc
