"""The distilled VGG-19 (real, learned weights from ../shared/weights): its layout against the
original forward pass, its lookup, and the balance controls on real features."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import napari_nst
from napari_nst.engine import clear_caches, weights
from napari_nst.engine.images import prepare_image
from napari_nst.engine.vgg import VGGFeatures, load_features
from napari_nst.engine.weights import VGG19_DISTILLED, WeightsError
from tests.helpers import shared_image, shared_path

pytestmark = pytest.mark.shared
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@pytest.fixture(scope="module")
def distilled_file():
    return shared_path("weights", VGG19_DISTILLED.filename)


def original_forward(state: dict, image: torch.Tensor) -> dict:
    """The distilled encoder as its authors wrote it (``SmallEncoder5_16x_aux``): conv0 on RGB in
    [0, 1], then reflection-padded 3x3 convolutions with ReLU, 2x2 max pooling between blocks."""
    out = {}
    x = F.conv2d(image, state["conv0.weight"], state["conv0.bias"])
    blocks = (
        ("11", "12"),
        ("21", "22"),
        ("31", "32", "33", "34"),
        ("41", "42", "43", "44"),
        ("51",),
    )
    for index, block in enumerate(blocks):
        for name in block:
            x = F.conv2d(
                F.pad(x, (1, 1, 1, 1), mode="reflect"),
                state[f"conv{name}.weight"],
                state[f"conv{name}.bias"],
            )
            x = F.relu(x)
            out[f"relu{name[0]}_{name[1]}"] = x
        if index < len(blocks) - 1:
            x = F.max_pool2d(x, 2, 2)
    return out


def test_distilled_layout_matches_the_original_forward_pass(distilled_file):
    state = torch.load(distilled_file, map_location="cpu", weights_only=True)["model"]
    features, identity = load_features("vgg19-distilled", distilled_file)
    assert identity == f"file:{VGG19_DISTILLED.filename}" and len(features) == 30
    extractor = VGGFeatures(features, STYLE_LAYERS, pooling="max", network_name="vgg19-distilled")
    image = torch.rand(1, 3, 70, 53, generator=torch.Generator().manual_seed(0))
    expected, ours = original_forward(state, image), extractor(image)
    for name in STYLE_LAYERS:
        assert ours[name].shape == expected[name].shape
        scale = expected[name].abs().max()
        assert (ours[name] - expected[name]).abs().max() <= 1e-5 * scale, name


def test_distilled_network_ends_at_conv5_1(distilled_file):
    features, _ = load_features("vgg19-distilled", distilled_file)
    with pytest.raises(
        ValueError, match="conv5_2 do not exist in vgg19-distilled: it ends at relu5_1"
    ):
        VGGFeatures(features, ["conv4_2", "conv5_2"], network_name="vgg19-distilled")
    extractor = VGGFeatures(features, ["conv5_1"], network_name="vgg19-distilled")
    with pytest.raises(ValueError, match="too small for vgg19-distilled.*at least 32 px"):
        extractor(torch.rand(1, 3, 24, 64))


def test_distilled_lookup_and_checks(distilled_file, vgg_file, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    monkeypatch.setenv(weights.CACHE_DIR_ENV, str(tmp_path / "cache"))
    (tmp_path / "weights").mkdir()
    clear_caches()
    with pytest.raises(WeightsError) as info:
        weights.locate(VGG19_DISTILLED, download=False)
    assert VGG19_DISTILLED.url in str(info.value) and str(tmp_path / "weights") in str(info.value)
    # found in the weights directory under its upstream name, hash-checked
    shutil.copy(distilled_file, tmp_path / "weights" / VGG19_DISTILLED.filename)
    features, identity = load_features("vgg19-distilled", progress=False)
    assert identity == f"file:{VGG19_DISTILLED.filename}" and features[0].out_channels == 16
    corrupt = tmp_path / "weights" / VGG19_DISTILLED.filename
    corrupt.write_bytes(corrupt.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="sha256 .*corrupt"):
        load_features("vgg19-distilled")
    with pytest.raises(WeightsError, match="not the distilled VGG-19 state dict"):
        load_features("vgg19-distilled", vgg_file)  # an ImageNet-layout file
    with pytest.raises(ValueError, match="network='vgg' is not supported"):
        napari_nst.Settings(network="vgg")


def test_network_setting_runs_and_is_recorded(distilled_file, magenta_weights):
    content, style = shared_image("tubingen.jpg", 64), shared_image("starry_night.jpg", 64)
    final = list(
        napari_nst.iterate(
            content,
            style,
            network="vgg19-distilled",
            size=64,
            steps=4,
            device="cpu",
            coarse_to_fine=False,
            min_working_size=64,
        )
    )[-1]
    assert final.info["weights"] == f"file:{VGG19_DISTILLED.filename}"
    assert final.image.shape == (48, 64, 3) and np.isfinite(final.image).all()


def _distance_to_content(content, image):
    return float(np.abs(image - prepare_image(content).rgb).mean())


def test_balance_controls_act_on_real_features(magenta_weights):
    """On learned features: strength 0 gives back the content, and a larger content weight or a
    smaller strength keeps the result closer to the content (real features, a few steps).

    Exactly in float32. With bfloat16 (``precision="auto"`` on CPUs with native bf16) the
    targets and the optimised image's features round differently, so strength 0 moves the
    pixels by rounding noise (about 2e-4 on average), far below what a style does."""
    content, style = shared_image("tubingen.jpg", 64), shared_image("the_scream.jpg", 64)
    run = dict(
        network="vgg19-distilled",
        size=64,
        steps=20,
        device="cpu",
        coarse_to_fine=False,
        min_working_size=64,
        precision="float32",
    )
    distance = {}
    for name, overrides in {
        "strength 0": {"style_strength": 0.0},
        "strength 0.5": {"style_strength": 0.5},
        "defaults": {},
        "content x10": {"content_weight": 10.0},
        "strength 0, bfloat16": {"style_strength": 0.0, "precision": "bfloat16"},
    }.items():
        distance[name] = _distance_to_content(
            content, napari_nst.stylize(content, style, **{**run, **overrides})
        )
    assert distance["strength 0"] < 1e-6
    assert distance["strength 0"] < distance["strength 0.5"] < distance["defaults"]
    assert distance["content x10"] < distance["defaults"]
    assert distance["strength 0, bfloat16"] < min(2e-3, distance["strength 0.5"] / 10)
