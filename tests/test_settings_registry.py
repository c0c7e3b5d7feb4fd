"""The settings registry's contract: what a sweep shares between its cells (prepared inputs, style
targets) is derived from each field's metadata, so a sweep of any setting gives, cell for cell,
what direct runs give.

The contract is walked for every sweepable setting and every method that reads it, on inputs
that exercise every stage: uint16 content and styles (the windows matter), regions with a blend
of two styles on one label (region_edge and style_blend matter), a small working size.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.helpers import magenta_weights_dir, shared_image, shared_path

#: Two values of every sweepable setting, the first the base run's. A setting added to
#: ``Settings`` without values here fails ``test_every_sweepable_setting_has_values``: the
#: contract then covers it as soon as it exists.
VALUES = {
    "method": ("optimize", "predict", "universal"),
    "network": ("vgg19-distilled", "vgg19"),
    "steps": (2, 3),
    "size": (64, 56),
    "style_strength": (1.0, 0.5),
    "keep_colors": (False, True),
    "seed": (0, 1),
    "content_weight": (1.0, 10.0),
    "style_weight": (30.0, 3.0),
    "tv_weight": (0.0, 1.0),
    "init": ("predict", "content"),
    "optimizer": ("lbfgs", "adam"),
    "learning_rate": (0.02, 0.05),
    "style_scale": (1.0, 1.5),
    "coarse_to_fine": (False, True),
    "min_working_size": (0, 96),
    "precision": ("float32", "bfloat16"),
    "style_crops": (1, 2),
    "region_edge": (2.0, 0.0),
    "pooling": ("avg", "max"),
    "min_size": (52, 60),
    "tile_size": (1024, 64),
    "levels": ((5, 4, 3, 2, 1), (3, 2, 1)),
    "content_layers": (("conv4_2",), ("conv2_1",)),
    "style_layers": (
        ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
        ("conv1_1", "conv2_1"),
    ),
    "style_layer_weights": (None, (1.0, 2.0)),
    "style_blend": (None, (0.2, 0.8)),
    "content_window": ((0, 65535), (20000, 40000)),
    "style_window": ((0, 65535), (15000, 45000)),
}
#: Settings whose second value needs another one to be valid in the base run.
REQUIRES = {
    "style_layer_weights": {"style_layers": ("conv1_1", "conv2_1")},
    "learning_rate": {"optimizer": "adam"},
    "coarse_to_fine": {"min_size": 52, "steps": 4},
    "min_size": {"coarse_to_fine": True, "size": 96, "steps": 4},
    "tile_size": {"size": 128},
}


def test_every_sweepable_setting_has_values():
    from napari_nst.registry import SWEEPABLE

    assert set(VALUES) == set(SWEEPABLE)


def _cases():
    from napari_nst.registry import SWEEPABLE
    from napari_nst.settings import Settings

    fields = {f.name: f for f in dataclasses.fields(Settings)}
    for name in SWEEPABLE:
        methods = ("optimize",) if name == "method" else fields[name].metadata["methods"]
        for method in methods:
            yield pytest.param(name, method, id=f"{name}-{method}")


@pytest.fixture(scope="module")
def inputs():
    """uint16 content and two uint16 styles, labels: 1 (left, a blend of both styles), 2 (right,
    the second style), 0 (a strip at the top: the content kept)."""
    shared_path("weights", "cd_vgg19_distilled_16x_conv5_1.pth")
    content = shared_image("tubingen.jpg", 64).astype(np.uint16) * 200 + 5000
    first = shared_image("starry_night.jpg", 128).astype(np.uint16) * 180 + 9000
    second = shared_image("starry_night.jpg", 128)[::-1, ::-1].astype(np.uint16) * 150 + 12000
    labels = np.ones(content.shape[:2], np.uint8)
    labels[:, content.shape[1] // 2 :] = 2
    labels[:6] = 0
    return content, {1: [first, second], 2: second}, labels


def _base(labels, **changes):
    from napari_nst.settings import Settings

    options = dict(
        network="vgg19-distilled",
        device="cpu",
        size=64,
        steps=2,
        precision="float32",
        regions=labels,
    )
    return Settings(**{**options, **changes})


@pytest.mark.shared
@pytest.mark.parametrize("name, method", list(_cases()))
def test_a_sweep_gives_what_direct_runs_give(inputs, name, method, monkeypatch):
    """Two cells of a one-setting sweep are, cell for cell, the two direct runs."""
    # predict, and optimize from its default start (init="predict"), read the Magenta files
    weights = shared_path("weights") if method == "universal" else magenta_weights_dir()
    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(weights))
    from napari_nst import stylize, sweep
    from napari_nst.engine.resample import resize_array

    if name == "network":
        pytest.skip(
            "ImageNet VGG-19's weights exist nowhere on this machine (the distilled "
            "network is the only real one): the network cannot be swept here"
        )
    content, style, labels = inputs
    values = VALUES["method"] if name == "method" else VALUES[name]
    base = _base(labels, method=method, **REQUIRES.get(name, {}))
    result = sweep(content, style, rows=(name, list(values)), settings=base)
    assert result.done.all()
    for row, value in enumerate(values):
        direct = stylize(content, style, settings=base.replace(**{name: value}))
        direct = np.asarray(direct, np.float32)
        if direct.shape[:2] != result.images.shape[2:4]:  # a size sweep: cells at one size
            direct = resize_array(direct, result.images.shape[2:4])
        np.testing.assert_allclose(
            result.images[row, 0],
            direct,
            atol=2e-3,
            err_msg=f"sweep cell {name}={value!r} ({method}) is not the direct run",
        )
    # the values are told apart: a sweep whose cells all came out the same would hide a bug
    # in this test itself (a second value that changes nothing)
    if name not in ("tile_size", "precision", "seed", "style_crops"):
        assert not np.allclose(result.images[0, 0], result.images[1, 0], atol=2e-3), (
            f"{name}: the two values give the same image; choose values that differ"
        )


def test_keys_follow_the_stages():
    """A setting of the inputs stage changes the inputs key and the target key; of the target
    stage, the target key only; of the run stage, neither (for a method that reads it)."""
    from napari_nst.registry import SWEEPABLE, inputs_key, target_key
    from napari_nst.settings import Settings

    fields = {f.name: f for f in dataclasses.fields(Settings)}
    for name in SWEEPABLE:
        if name == "method":
            continue
        meta = fields[name].metadata
        for method in meta["methods"]:
            base = Settings(method=method, **REQUIRES.get(name, {}))
            base = base.replace(**{name: VALUES[name][0]})
            other = base.replace(**{name: VALUES[name][1]})
            changed = (inputs_key(base) != inputs_key(other), target_key(base) != target_key(other))
            expected = {"inputs": (True, True), "target": (False, True), "run": (False, False)}[
                meta["stage"]
            ]
            assert changed == expected, (name, method, meta["stage"], changed)


def test_same_setting_on_both_axes_is_refused(content_small, style_small):
    from napari_nst import sweep

    with pytest.raises(ValueError, match="rows and cols both sweep style_strength"):
        sweep(
            content_small,
            style_small,
            rows=("style_strength", [0.2, 1.0]),
            cols=("style_strength", [0.5]),
            method="predict",
        )


@pytest.mark.parametrize("values", [0.5, "0.1;1"])
def test_bare_values_are_refused(content_small, style_small, values):
    from napari_nst import sweep

    with pytest.raises(ValueError, match="must be a list"):
        sweep(content_small, style_small, rows=("style_strength", values), method="predict")


def test_not_sweepable_settings_are_refused(content_small, style_small):
    from napari_nst import sweep
    from napari_nst.registry import SWEEPABLE
    from napari_nst.settings import Settings

    for f in dataclasses.fields(Settings):
        if f.name not in SWEEPABLE:
            with pytest.raises(ValueError, match="cannot be swept"):
                sweep(content_small, style_small, rows=(f.name, [None, None]))


def test_result_names_come_from_the_registry():
    """Words for what differs, only where the method reads it and its condition holds."""
    from napari_nst.registry import name_words
    from napari_nst.settings import Settings

    base = Settings()
    assert name_words(base.replace(style_strength=0.3), base) == ["strength 0.3"]
    assert name_words(base.replace(min_size=64), base) == []  # only with coarse_to_fine
    assert name_words(base.replace(min_size=64, coarse_to_fine=True), base) == [
        "coarse to fine",
        "min size 64",
    ]
    assert (
        name_words(base.replace(method="predict", steps=50), base.replace(method="predict")) == []
    )  # predict reads no steps
    assert name_words(base.replace(content_window=(0, 10)), base) == []  # never named


def test_init_choices_come_from_the_method_registry():
    from napari_nst.engine.methods import REGISTRY
    from napari_nst.settings import INITS

    starts = [name for name, entry in REGISTRY.items() if entry.starts_optimize]
    assert INITS == ("content", "noise", *starts)
    assert "optimize" not in INITS


def test_methods_preset_lists_every_registered_method():
    from napari_nst.engine.explore_presets import PRESETS
    from napari_nst.engine.methods import NAMES

    assert PRESETS["methods"][2] == ("method", list(NAMES))


def test_clear_caches_empties_every_registered_cache():
    import importlib

    from napari_nst.engine import clear_caches
    from napari_nst.engine.methods import REGISTRY

    caches = [cache.split(":") for entry in REGISTRY.values() for cache in entry.caches]
    assert caches
    for module, attribute in caches:
        getattr(importlib.import_module(module), attribute)["probe"] = object()
    clear_caches()
    for module, attribute in caches:
        assert "probe" not in getattr(importlib.import_module(module), attribute)


@pytest.mark.shared
def test_provenance_names_every_weights_file_with_its_sha256(
    content_small, style_small, magenta_weights
):
    """The default optimize run (a predict start) names the VGG file and the two Magenta files
    that made its start, each with its sha256."""
    import napari_nst
    from napari_nst.engine.weights import MAGENTA_PREDICTOR, MAGENTA_TRANSFORMER, VGG19_DISTILLED

    final = list(
        napari_nst.iterate(
            content_small, style_small, network="vgg19-distilled", size=64, steps=2, device="cpu"
        )
    )[-1]
    assert final.info["weights_sha256"] == {VGG19_DISTILLED.filename: VGG19_DISTILLED.sha256}
    start = final.info["start"]
    assert start["method"] == "predict"
    assert start["weights_sha256"] == {
        MAGENTA_PREDICTOR.filename: MAGENTA_PREDICTOR.sha256,
        MAGENTA_TRANSFORMER.filename: MAGENTA_TRANSFORMER.sha256,
    }


def test_a_layer_name_is_one_layer_not_its_letters():
    from napari_nst.engine.explore import reconstruction_sweep

    image = np.zeros((40, 64, 3), np.uint8)
    _, _, cols, _ = reconstruction_sweep(image, "content", layers="conv1_1")
    assert cols == ("content_layers", [("conv1_1",)])
    _, _, cols, _ = reconstruction_sweep(image, "style", layers="conv2_1")
    assert cols == ("style_layers", [("conv2_1",)])


def test_a_sweep_says_what_it_will_cost_before_it_starts():
    """The figures' presets give each cell the steps the paper's figures need, and the cost
    counts them: cells, steps, size, a rough time that grows with the pixels and the network."""
    from napari_nst.engine.explore_presets import FIGURE_STEPS, PRESETS, sweep_cost

    _, rows, cols, extra = PRESETS["fig3"]
    assert extra["steps"] == FIGURE_STEPS == 300 and extra["init"] == "content"
    for key in ("fig1-content", "fig1-style"):
        assert PRESETS[key][3]["steps"] == FIGURE_STEPS
    small = sweep_cost(
        rows,
        cols,
        network="vgg19-distilled",
        size=256,
        **{k: v for k, v in extra.items() if k != "reconstruct"},
    )
    assert small.startswith("20 cells x 300 optimisation steps at 256 px (6000 steps; about ")
    big = sweep_cost(rows, cols, network="vgg19", size=512, steps=300)
    minutes = [float(text.split("about ")[1].split()[0]) for text in (small, big)]
    assert minutes[1] > 30 * minutes[0]  # 4x the pixels, 10x the network
    assert sweep_cost(("method", ["predict", "universal"]), None) == "2 cells, one pass each"
    assert "(1 optimised)" in sweep_cost(*PRESETS["methods"][1:3])
