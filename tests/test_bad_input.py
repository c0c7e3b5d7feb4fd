"""Inputs that segmentation tools, float pipelines and broken downloads produce: large label ids,
nothing labelled, NaN pixels and corrupt .tflite files. Each gives the right result or one clear
error or warning that says what to do.

Real weights from ../shared/weights (the distilled VGG-19 for optimize), real images, tiny sizes.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

import napari_nst
from napari_nst.engine.regions import Regions, assign_styles
from napari_nst.engine.weights import WeightsError
from tests.helpers import magenta_weights_dir, shared_image, shared_path

SIZE = 64
#: A short run per method at 64 px; optimize on the distilled VGG-19, a few steps.
QUICK = {"predict": {}, "universal": {}, "optimize": {"steps": 3, "network": "vgg19-distilled"}}


def quick(method: str, **settings) -> dict:
    return {"method": method, "device": "cpu", "size": SIZE, **QUICK[method], **settings}


@pytest.fixture(scope="module")
def content():
    return shared_image("tubingen.jpg", SIZE)  # 48 x 64


@pytest.fixture(scope="module")
def starry():
    return shared_image("starry_night.jpg", SIZE)


@pytest.fixture(scope="module")
def scream():
    return shared_image("the_scream.jpg", SIZE)


def _right_half(content, label, dtype) -> np.ndarray:
    labels = np.zeros(content.shape[:2], dtype)
    labels[:, 32:] = label
    return labels


def _kept(result, content, cols) -> bool:
    """Whether the columns ``cols`` (away from the soft edge) are the content itself."""
    return np.abs(result[:, cols] - content[:, cols] / 255.0).max() < 2e-3


# --- large label ids ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
@pytest.mark.parametrize("method", ["predict", "universal", "optimize"])
def test_a_label_above_int32_is_styled_like_any_other(
    shared_weights, content, starry, method, dtype
):
    if method != "universal":  # optimize: its default start, init="predict"
        magenta_weights_dir()
    big = napari_nst.stylize(
        content,
        {3_000_000_000: starry},
        regions=_right_half(content, 3_000_000_000, dtype),
        **quick(method),
    )
    small = napari_nst.stylize(
        content, {7: starry}, regions=_right_half(content, 7, np.uint8), **quick(method)
    )
    assert big.shape == (48, 64, 3) and np.isfinite(big).all()
    assert _kept(big, content, slice(0, 24))
    assert not _kept(big, content, slice(40, 64))  # styled
    np.testing.assert_allclose(big, small, atol=1e-5)  # exactly as label 7 would be


def test_uint64_ids_that_differ_by_2_to_the_32_are_distinct(
    magenta_weights, content, starry, scream
):
    labels = np.zeros(content.shape[:2], np.uint64)
    labels[:, :32] = 1
    labels[:, 32:] = 2**32 + 1  # 1 in its low 32 bits
    one_kept = napari_nst.stylize(content, {1: starry}, regions=labels, **quick("predict"))
    assert not _kept(one_kept, content, slice(0, 24)) and _kept(one_kept, content, slice(40, 64))
    both = napari_nst.stylize(
        content, {1: starry, 2**32 + 1: scream}, regions=labels, **quick("predict")
    )
    only_scream = napari_nst.stylize(content, scream, **quick("predict"))
    assert np.abs(both[:, 40:] - only_scream[:, 40:]).max() < 1e-5
    assert np.abs(both[:, :24] - one_kept[:, :24]).max() < 1e-5


def test_uint64_ids_beyond_float64_precision_map_to_their_own_groups():
    """Ids above 2**53 differ by 1 (float64 would merge them) and 2**32 + 1 is not 1."""
    ids = [1, 2**32 + 1, 2**60, 2**60 + 1]
    labels = np.repeat(np.array(ids + [0], np.uint64), 16)[None].repeat(16, axis=0)  # 16 x 80
    styles = [np.zeros((16, 16, 3)), np.ones((16, 16, 3))]
    _, assignment = assign_styles({1: styles[0], 2**32 + 1: styles[1], 2**60: styles[0]}, None)
    regions = Regions.of(labels, (16, 80), (16, 80), assignment, edge=0.0)
    groups = {
        label: number for number, group in enumerate(regions.groups) for label in group.labels
    }
    index = regions.index_map()[0, ::16]
    kept = len(regions.groups)
    assert list(index) == [groups[1], groups[2**32 + 1], groups[2**60], kept, kept]
    assert groups[1] == groups[2**60] != groups[2**32 + 1]


def test_a_label_near_2e9_allocates_no_table_of_that_size():
    labels = np.zeros((64, 64), np.uint32)
    labels[:, 32:] = 2_000_000_000
    _, assignment = assign_styles({2_000_000_000: np.zeros((16, 16, 3))}, None)
    content_rgb = np.zeros((64, 64, 3), np.float32)
    tracemalloc.start()
    try:
        regions = Regions.of(labels, (64, 64), (64, 64), assignment, edge=2.0)
        weights = regions.weights()
        kept = regions.keep_content(np.ones((64, 64, 3), np.float32), lambda shape: content_rgb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50e6
    assert weights.shape == (2, 64, 64) and weights[0, :, 40:].min() > 0.99
    assert kept[:, :24].max() == 0.0 and kept[:, 40:].min() == 1.0


def test_a_run_with_a_label_near_2e9_stays_small(magenta_weights, content, starry):
    labels = _right_half(content, 2_000_000_000, np.int64)
    napari_nst.stylize(content, {2_000_000_000: starry}, regions=labels, **quick("predict"))
    tracemalloc.start()  # the second run: the networks are loaded
    try:
        result = napari_nst.stylize(
            content, {2_000_000_000: starry}, regions=labels, **quick("predict")
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50e6
    assert _kept(result, content, slice(0, 24)) and not _kept(result, content, slice(40, 64))


# --- nothing labelled -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "style_of", [lambda s: s, lambda s: {1: s}], ids=["one style", "a style dict"]
)
@pytest.mark.parametrize("method", ["predict", "universal"])
def test_all_zero_labels_warn_and_keep_the_content(
    shared_weights, content, starry, method, style_of
):
    if method == "predict":
        magenta_weights_dir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = napari_nst.stylize(
            content,
            style_of(starry),
            regions=np.zeros(content.shape[:2], np.uint32),
            **quick(method),
        )
    messages = [str(w.message) for w in caught if str(w.message).startswith("regions")]
    assert len(messages) == 1, messages  # this one, not also "label 1 does not occur"
    assert "no pixel is labelled" in messages[0] and "kept unchanged" in messages[0]
    assert "paint labels" in messages[0] and "without regions" in messages[0]
    assert np.abs(result - content / 255.0).max() < 2e-3


def test_all_zero_labels_warn_with_pytest_warns(magenta_weights, content, starry):
    with pytest.warns(UserWarning, match="no pixel is labelled.*content is kept unchanged"):
        napari_nst.stylize(
            content, starry, regions=np.zeros(content.shape[:2], bool), **quick("predict")
        )


def test_all_zero_labels_with_a_background_style_do_not_warn(magenta_weights, content, starry):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        result = napari_nst.stylize(
            content, {0: starry}, regions=np.zeros(content.shape[:2], np.uint8), **quick("predict")
        )
    assert not _kept(result, content, slice(0, 64))  # label 0 is styled: the whole image


# --- NaN pixels -----------------------------------------------------------------------------------


def _with_nan(image: np.ndarray, rows, cols, channel=None) -> np.ndarray:
    data = image.astype(np.float32) / 255.0
    if channel is None:
        data[rows, cols] = np.nan
    else:
        data[rows, cols, channel] = np.nan
    return data


def test_nan_pixels_in_the_content_warn_with_their_count(magenta_weights, content, starry):
    data = _with_nan(content, slice(0, 4), slice(0, 5))  # 20 pixels, every channel
    data[10, 10, 1] = np.nan  # one more pixel, one channel
    pixels = 48 * 64
    with pytest.warns(
        UserWarning,
        match=rf"content: 21 of {pixels} pixels \(0\.684%\) are NaN; they are "
        "treated as the low end of the intensity window",
    ):
        result = napari_nst.stylize(data, starry, **quick("predict"))
    assert result.shape == (48, 64, 3) and np.isfinite(result).all()


def test_nan_pixels_in_a_style_name_the_style(shared_weights, content, starry):
    style = _with_nan(starry, slice(0, 8), slice(0, 8))
    with pytest.warns(UserWarning, match=r"style: 64 of \d+ pixels .* are NaN"):
        result = napari_nst.stylize(content, style, **quick("universal"))
    assert np.isfinite(result).all()


def test_nan_pixels_in_a_resized_grayscale_content_are_counted():
    """A content larger than the result is resized while it is read: counted all the same."""
    from napari_nst.engine.images import prepare_image

    data = np.linspace(0.0, 1000.0, 128 * 128, dtype=np.float64).reshape(128, 128)
    data[5:8, :] = np.nan
    with pytest.warns(UserWarning, match=r"content: 384 of 16384 pixels \(2\.34%\) are NaN"):
        prepared = prepare_image(data, name="content", size=32)
    assert prepared.shape == (32, 32, 3) and np.isfinite(prepared.rgb).all()


def test_nan_pixels_in_a_lazy_plane_resized_are_counted():
    from napari_nst.engine.lazy_images import prepare_lazy

    plane = np.ones((64, 64, 3), np.float32) * 0.5
    plane[:2, :3, 2] = np.nan
    with pytest.warns(UserWarning, match=r"plane 0: 6 of 4096 pixels .* are NaN"):
        prepared = prepare_lazy(plane, (0.0, 1.0), name="plane 0", size=32)
    assert np.isfinite(np.asarray(prepared.rgb)).all()


def test_no_nan_no_warning(content):
    from napari_nst.engine.images import prepare_image

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_image(content.astype(np.float32) / 255.0, name="content")


# --- corrupt .tflite files ------------------------------------------------------------------------

_TFLITE = {
    "predictor": "magenta_arbitrary-image-stylization-v1-256_int8_prediction_1.tflite",
    "transformer": "magenta_arbitrary-image-stylization-v1-256_int8_transfer_1.tflite",
}


def _corrupt_file(tmp_path, kind: str, how: str):
    path = tmp_path / f"my_{kind}_copy.tflite"
    if how == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:  # a download cut off half way
        raw = shared_path("weights", _TFLITE[kind]).read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    return path


@pytest.mark.parametrize("how", ["random bytes", "truncated"])
@pytest.mark.parametrize("kind", ["predictor", "transformer"])
def test_a_corrupt_tflite_file_gives_one_clear_error(
    magenta_weights, tmp_path, content, starry, kind, how
):
    path = _corrupt_file(tmp_path, kind, how)
    with pytest.raises(
        WeightsError,
        match=rf"cannot read the Magenta .* {kind} \(.*\) from .*"
        r"not a valid TFLite model .*truncated or corrupt",
    ) as caught:
        napari_nst.stylize(content, starry, **quick("predict"), **{f"{kind}_weights": path})
    message = str(caught.value)
    assert message.count(path.name) == 1  # named once: not an error wrapping an error
    assert message.count("TFLite model") == 1 and message.count("cannot read") == 1
    assert "does not match" not in message
    assert f"pass the right file as {kind}_weights" in message and "Delete it" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_the_reader_names_the_file_once(tmp_path):
    from napari_nst.engine.methods.predict.tflite import TFLiteError, read_tflite

    path = tmp_path / "broken.tflite"
    path.write_bytes(b"\x00\x00\x00\x00TFL3" + b"\xff" * 64)  # the identifier, then garbage
    with pytest.raises(TFLiteError) as caught:
        read_tflite(path)
    assert str(caught.value).count("broken.tflite") == 1
    assert caught.value.path == path and "broken.tflite" not in caught.value.reason


def test_a_stack_with_nothing_labelled_warns_once(magenta_weights):
    """A whole stack whose labels are all 0 says so once, not once per plane."""
    import warnings

    import napari_nst
    from tests.helpers import shared_image

    content = shared_image("tubingen.jpg", 64)
    stack = np.stack([content] * 3)
    labels = np.zeros(content.shape[:2], np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = napari_nst.stylize_stack(
            stack,
            shared_image("starry_night.jpg", 64),
            regions=labels,
            method="predict",
            size=64,
            device="cpu",
            temporal_weight=0,
        )
    unlabelled = [w for w in caught if "no pixel is labelled" in str(w.message)]
    assert len(unlabelled) == 1
    assert np.isfinite(np.asarray(result)).all()
