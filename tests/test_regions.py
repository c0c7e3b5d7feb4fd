"""Regions: a style per label, in every registered method, through the API, stacks and the CLI.

Real weights from ../shared/weights (the distilled VGG-19 for optimize) and real images.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import napari_nst
from napari_nst.engine.regions import Regions, assign_styles
from tests.helpers import magenta_weights_dir, shared_image

#: Per method, a short run; optimize at a working size where its guides hold every layer.
QUICK = {"optimize": dict(steps=30, network="vgg19-distilled", min_working_size=128, min_size=128)}


@pytest.fixture(autouse=True)
def weights_here(shared_weights, request):
    """Every test here reads ../shared/weights; predict, and optimize from its default start
    (init="predict"), the Magenta files there too."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("method") in ("predict", "optimize"):
        magenta_weights_dir()


def quick(method: str, **settings) -> dict:
    return {"method": method, "device": "cpu", "size": 128, **QUICK.get(method, {}), **settings}


@pytest.fixture(scope="module")
def content():
    return shared_image("tubingen.jpg", 128)  # 96 x 128


@pytest.fixture(scope="module")
def starry():
    return shared_image("starry_night.jpg", 128)


@pytest.fixture(scope="module")
def scream():
    return shared_image("the_scream.jpg", 128)


@pytest.fixture(scope="module")
def halves(content):
    """Label 1 on the left half, 2 on the right, a band of 0 (kept) along the top."""
    labels = np.zeros(content.shape[:2], np.uint8)
    labels[24:, :64] = 1
    labels[24:, 64:] = 2
    return labels


def _distance(a, b, rows, cols) -> float:
    return float(np.abs(a[rows, cols] - b[rows, cols]).mean())


def test_each_label_gets_its_style_and_unlabelled_pixels_keep_the_content(
    method, content, starry, scream, halves
):
    inputs = [a.copy() for a in (content, starry, scream, halves)]
    result = napari_nst.stylize(content, {1: starry, 2: scream}, regions=halves, **quick(method))
    only_starry = napari_nst.stylize(content, starry, **quick(method))
    only_scream = napari_nst.stylize(content, scream, **quick(method))
    assert result.shape == (96, 128, 3) and np.isfinite(result).all()
    # the kept band, away from the soft edge, is the content itself
    assert np.abs(result[:16] - content[:16] / 255.0).max() < 2e-3
    # inside each half (away from the borders) the result looks like that half's style
    left, right = (slice(36, 96), slice(0, 52)), (slice(36, 96), slice(76, 128))
    assert _distance(result, only_starry, *left) < _distance(result, only_scream, *left)
    assert _distance(result, only_scream, *right) < _distance(result, only_starry, *right)
    assert _distance(result, content / 255.0, *left) > 0.05  # styled, not kept
    for before, after in zip(inputs, (content, starry, scream, halves)):
        assert np.array_equal(before, after)  # nothing the caller passed was modified
    info = list(
        napari_nst.iterate(content, {1: starry, 2: scream}, regions=halves, **quick(method))
    )[-1].info
    assert info["regions"] == {1: {"style 1": 1.0}, 2: {"style 2": 1.0}}


def test_predict_regions_match_a_plain_run_inside_each_region(
    content, starry, scream, halves, magenta_weights
):
    """Render and composite: inside a region, exactly the plain run with its style."""
    result = napari_nst.stylize(content, {1: starry, 2: scream}, regions=halves, **quick("predict"))
    plain = napari_nst.stylize(content, scream, **quick("predict"))
    assert np.abs(result[40:, 80:] - plain[40:, 80:]).max() < 1e-5


def test_one_style_styles_every_non_zero_label(method, content, starry, halves):
    result = napari_nst.stylize(content, starry, regions=halves, **quick(method))
    assert np.abs(result[:16] - content[:16] / 255.0).max() < 2e-3
    assert _distance(result, content / 255.0, slice(36, 96), slice(0, 128)) > 0.05


def test_background_key_styles_label_zero(content, starry, halves):
    result = napari_nst.stylize(content, {0: starry}, regions=halves, **quick("universal"))
    assert _distance(result, content / 255.0, slice(0, 16), slice(0, 128)) > 0.05
    assert np.abs(result[40:] - content[40:] / 255.0).max() < 2e-3  # labels 1, 2 kept


def test_tiny_regions_stay_finite(method, content, starry):
    labels = np.zeros(content.shape[:2], np.int32)
    labels[50:53, 60:63] = 7  # 9 pixels: less than one feature pixel at the deep layers
    result = napari_nst.stylize(content, {7: starry}, regions=labels, **quick(method))
    assert np.isfinite(result).all()
    assert np.abs(result[:30] - content[:30] / 255.0).max() < 2e-3


def test_labels_at_another_scale_are_resampled(content, starry, halves):
    double = np.repeat(np.repeat(halves, 2, axis=0), 2, axis=1)  # 192 x 256
    a = napari_nst.stylize(content, {1: starry}, regions=double, **quick("universal"))
    b = napari_nst.stylize(content, {1: starry}, regions=halves, **quick("universal"))
    assert np.abs(a - b).max() < 1e-4


def test_soft_edge_blends_over_a_few_pixels():
    labels = np.zeros((32, 64), np.int32)
    labels[:, 32:] = 1
    _, assignment = assign_styles({1: np.zeros((8, 8, 3))}, None)
    soft = Regions.of(labels, (32, 64), (32, 64), assignment, edge=3.0).weights()
    hard = Regions.of(labels, (32, 64), (32, 64), assignment, edge=0.0).weights()
    assert np.allclose(soft.sum(axis=0), 1.0, atol=1e-5)
    assert set(np.unique(hard)) == {0.0, 1.0}
    row = soft[0, 16]  # the styled group's weight across the border
    assert np.all(np.diff(row) >= -1e-6) and 0.3 < row[32] < 0.7 and row[24] < 0.05
    assert row[40] > 0.95


def test_blends_per_label_and_shared_styles_encoded_once(starry, scream):
    styles, assignment = assign_styles({1: [starry, scream], 2: starry, 3: scream}, (3, 1))
    assert len(styles) == 2  # the same arrays are one style each
    blends = {g.labels: g.blend for g in assignment.groups}
    assert blends[(1,)] == pytest.approx((0.75, 0.25))
    assert blends[(2,)] == (1.0, 0.0) and blends[(3,)] == (0.0, 1.0)


@pytest.mark.parametrize(
    "labels, style, message",
    [
        (np.zeros((96, 128), np.float32), {1: None}, "integer labels"),
        (np.full((96, 128), -1, np.int16), {1: None}, "below 0"),
        (
            np.zeros((50, 128), np.uint8),
            {1: None},
            "(50, 128) do not fit the content of shape (96, 128)",
        ),
        (np.zeros((96, 128), np.uint8), {"sky": None}, "not a label"),
        (np.zeros((96, 128), np.uint8), {1.5: None}, "not a label"),
        (None, {1: None}, "no regions were given"),
    ],
)
def test_bad_regions_say_what_is_expected(content, starry, labels, style, message):
    style = {k: starry for k in style}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        napari_nst.stylize(content, style, regions=labels, **quick("predict"))


def test_a_label_that_does_not_occur_warns(content, starry, halves, magenta_weights):
    with pytest.warns(UserWarning, match="label.s. 9 of the style mapping do not occur"):
        result = napari_nst.stylize(
            content, {1: starry, 9: starry}, regions=halves, **quick("predict")
        )
    assert np.isfinite(result).all()


def test_stack_regions_per_plane_and_shared(content, starry):
    stack = np.stack([content, content[:, ::-1], content])
    labels = np.zeros(stack.shape[:3], np.uint8)
    labels[0, :, :64] = 1
    labels[2, :, 64:] = 1  # plane 1: no label, kept whole
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a label missing from a plane is no warning
        result = napari_nst.stylize_stack(stack, {1: starry}, regions=labels, **quick("universal"))
    assert result.shape == (3, 96, 128, 3)
    assert np.abs(result[1] - stack[1] / 255.0).max() < 2e-3
    assert _distance(result[0], stack[0] / 255.0, slice(0, 96), slice(0, 52)) > 0.05
    assert np.abs(result[0][:, 76:] - stack[0][:, 76:] / 255.0).max() < 2e-3
    assert np.abs(result[2][:, :52] - stack[2][:, :52] / 255.0).max() < 2e-3
    one = napari_nst.stylize_stack(stack, {1: starry}, regions=labels[0], **quick("universal"))
    assert np.abs(one[0] - result[0]).max() < 1e-4  # one label image for every plane
    with pytest.raises(ValueError, match="fit neither one plane"):
        napari_nst.stylize_stack(stack, starry, regions=labels[:2], **quick("universal"))
