"""Large and unusual inputs (issue 12): ``prepare_image`` reads the input a band at a time,
resizes while it maps when the result is smaller, keeps a full-size image compact (the tiled
renderer converts it tile by tile); float64 beyond float32's range; what a file name or
channel-first data is told to do."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import napari_nst
from napari_nst.engine import image_values
from napari_nst.engine import weights as weights_module
from napari_nst.engine.images import prepare_image, working_shape
from napari_nst.engine.memory import FileArray
from napari_nst.engine.output import output_image
from napari_nst.engine.resample import resize_array
from napari_nst.engine.run import prepare_inputs
from tests.helpers import magenta_weights_dir, shared_image

RNG = np.random.default_rng(12)


def torch_resized(rgb: np.ndarray, shape) -> np.ndarray:
    """What the engine did before: the whole image as float32, resized with torch (bicubic,
    antialiased) and clamped -- optimize's ``to_tensor`` and predict's working image."""
    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    out = F.interpolate(
        tensor, size=tuple(shape), mode="bicubic", antialias=True, align_corners=False
    ).clamp_(0.0, 1.0)
    return out[0].permute(1, 2, 0).numpy()


def inputs() -> dict:
    rgbf = RNG.random((90, 130, 3)).astype(np.float32)
    rgbf[3, 4, 0], rgbf[5, 6, 1], rgbf[7, 8, 2] = np.nan, np.inf, -np.inf
    rgba = RNG.integers(0, 256, (90, 130, 4), dtype=np.uint8)
    rgba[:, :60, 3] = 0
    return {
        "uint8 RGB": RNG.integers(0, 256, (300, 517, 3), dtype=np.uint8),
        "uint16 grayscale": RNG.integers(300, 3353, (257, 200), dtype=np.uint16),
        "float32 RGB with NaN and inf": rgbf,
        "uint8 RGBA": rgba,
        "int16 (H, W, 1)": RNG.integers(-500, 500, (80, 120, 1), dtype=np.int16),
    }


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv(weights_module.WEIGHTS_DIR_ENV, str(magenta_weights_dir()))
    monkeypatch.setenv(weights_module.CACHE_DIR_ENV, str(tmp_path / "cache"))


# --- resizing while mapping ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(inputs()))
def test_size_resizes_while_mapping_as_the_engine_resized(kind):
    data = inputs()[kind]
    before = data.copy()
    full = prepare_image(data)
    small = prepare_image(data, size=64)
    shape = working_shape(*data.shape[:2], 64)
    assert small.shape == (*shape, 3) and small.rgb.dtype == np.float32
    np.testing.assert_allclose(small.rgb, torch_resized(full.rgb, shape), rtol=0, atol=2e-6)
    assert (small.window, small.dtype, small.grayscale) == (full.window, full.dtype, full.grayscale)
    if full.alpha is None:
        assert small.alpha is None
    else:  # as output_image resized the alpha before (bilinear)
        assert small.alpha.shape == shape
        np.testing.assert_allclose(
            small.alpha, resize_array(full.alpha[..., None], shape)[..., 0], rtol=0, atol=1e-6
        )
    # the same thing from an already prepared image
    np.testing.assert_allclose(full.resized(shape).rgb, small.rgb, rtol=0, atol=1e-6)
    # a big working image (predict through files) keeps its pixels in files, the same ones
    in_file = prepare_image(data, size=64, in_file_above=64 * 20)
    assert isinstance(in_file.values, FileArray) and in_file.shape == small.shape
    np.testing.assert_array_equal(in_file.rgb, small.rgb)
    np.testing.assert_array_equal(in_file.read(slice(5, 17), slice(3, 40)), small.rgb[5:17, 3:40])
    block = in_file.crop(slice(5, 17), slice(3, 40))
    assert isinstance(block.values, np.ndarray)
    np.testing.assert_array_equal(block.rgb, small.rgb[5:17, 3:40])
    if full.alpha is not None:
        assert isinstance(in_file.alpha, FileArray)
        np.testing.assert_array_equal(in_file.alpha[:, :], small.alpha)
        np.testing.assert_array_equal(block.alpha, small.alpha[5:17, 3:40])
    assert isinstance(prepare_image(data, size=64, in_file_above=64 * 64).values, np.ndarray)
    # a size the image does not exceed leaves it as it is (the engine enlarges it later)
    assert prepare_image(data, size=1024).shape[:2] == data.shape[:2]
    assert prepare_image(data, size=(40, 50)).shape == (40, 50, 3)
    assert np.array_equal(data, before, equal_nan=True)


def test_bands_do_not_change_the_result(monkeypatch):
    data = inputs()
    expected = {k: (prepare_image(v, size=48).rgb, prepare_image(v).rgb) for k, v in data.items()}
    monkeypatch.setattr(image_values, "BLOCK_VALUES", 997)  # bands of a few rows, one row for some
    for kind, (small, full) in expected.items():
        np.testing.assert_allclose(
            prepare_image(data[kind], size=48).rgb, small, rtol=0, atol=1e-5, err_msg=kind
        )
        np.testing.assert_array_equal(prepare_image(data[kind]).rgb, full, err_msg=kind)


def test_no_float_copy_of_the_whole_input(monkeypatch):
    """numpy's allocations during preparation (tracemalloc sees them): a band at a time. Before,
    a 2048^2 uint8 image allocated a float32 copy (4x) and masks and copies of it (~21x)."""
    monkeypatch.setattr(image_values, "BLOCK_VALUES", 1 << 16, raising=False)  # small bands
    data = RNG.integers(0, 256, (2048, 2048, 3), dtype=np.uint8)

    def peak(**kwargs):
        tracemalloc.start()
        try:
            prepared = prepare_image(data, **kwargs)
            return prepared, tracemalloc.get_traced_memory()[1] / data.nbytes
        finally:
            tracemalloc.stop()

    small, ratio = peak(size=256)
    assert small.shape == (256, 256, 3) and ratio < 0.25
    full, ratio = peak()  # full size: a copy in the input's own dtype
    assert full.values.dtype == np.uint8 and full.values.nbytes == data.nbytes
    assert ratio < 1.5
    floats = data.astype(np.float32) / 255
    tracemalloc.start()
    try:
        prepare_image(floats)  # one float32 copy, no float64 or mask copies of it
        assert tracemalloc.get_traced_memory()[1] < 1.5 * floats.nbytes
    finally:
        tracemalloc.stop()


def test_a_full_size_image_stays_compact_and_reads_as_before():
    rgb8 = RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    prepared = prepare_image(rgb8)
    # no copy: a read-only view of the caller's array, which stays writable and unchanged
    assert prepared.values.dtype == np.uint8 and np.shares_memory(prepared.values, rgb8)
    assert not prepared.values.flags.writeable and rgb8.flags.writeable
    expected = rgb8.astype(np.float32) / np.float32(255)
    np.testing.assert_allclose(prepared.rgb, expected, rtol=1e-7, atol=0)
    np.testing.assert_array_equal(
        prepared.read(slice(3, 9), slice(10, 30)), prepared.rgb[3:9, 10:30]
    )
    rows, cols = np.array([2, 1, 0, 1]), np.array([5, 4, 49])
    np.testing.assert_array_equal(prepared.read(rows, cols), prepared.rgb[rows][:, cols])
    np.testing.assert_array_equal(rgb8, (expected * 255).round().astype(np.uint8))
    # a channel of an RGBA image is not contiguous: copied, read-only too
    rgba8 = RNG.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    with_alpha = prepare_image(rgba8)
    assert not np.shares_memory(with_alpha.values, rgba8) and not with_alpha.values.flags.writeable
    # grayscale: one plane, three channels when read
    gray16 = RNG.integers(300, 3353, (30, 40), dtype=np.uint16)
    gray = prepare_image(gray16)
    assert gray.values.shape == (30, 40) and gray.shape == (30, 40, 3)
    assert np.array_equal(gray.rgb[..., 0], gray.rgb[..., 2]) and gray.rgb.min() == 0.0
    # float32 and wider inputs are stored mapped (a float32 copy is no larger than they are)
    assert prepare_image(expected).values.dtype == np.float32


def test_prepare_inputs_resizes_where_the_size_is_known():
    content = RNG.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    style = RNG.integers(0, 256, (500, 200, 3), dtype=np.uint8)
    init = RNG.random((150, 200, 3)).astype(np.float32)
    settings = napari_nst.Settings(size=64, style_scale=0.5, init=init, min_working_size=64)
    prepared, styles, initial = prepare_inputs(content, style, settings)
    assert prepared.shape == (48, 64, 3)
    # optimize uses the styles at its working size * style_scale (16 px at least)
    assert styles[0].shape == (*working_shape(500, 200, 32), 3) == (40, 16, 3)
    assert initial.shape == (48, 64, 3)
    # below the working floor (512 px) the content stays at size, the styles go to the floor's
    prepared, styles, initial = prepare_inputs(
        content, style, settings.replace(min_working_size=512)
    )
    assert prepared.shape == initial.shape == (48, 64, 3)
    assert styles[0].shape == (*working_shape(500, 200, 256), 3)
    # prediction embeds crops of the whole style image: the style keeps its size
    _, styles, _ = prepare_inputs(content, style, napari_nst.Settings(size=64, method="predict"))
    assert styles[0].shape == (500, 200, 3)


def test_a_working_image_predict_renders_through_files_is_prepared_in_files(monkeypatch):
    from napari_nst.engine.methods.predict import ghiasi as predict

    content = RNG.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    monkeypatch.setattr(predict, "STREAM_PIXELS", 130 * 130)
    settings = napari_nst.Settings(size=160, method="predict")
    prepared, _, _ = prepare_inputs(content, content, settings)
    assert prepared.shape == (120, 160, 3) and isinstance(prepared.values, FileArray)
    assert predict.streams(300, 400, settings)  # the same rule decides both
    small, _, _ = prepare_inputs(content, content, settings.replace(size=128))
    assert isinstance(small.values, np.ndarray) and not predict.streams(
        300, 400, settings.replace(size=128)
    )
    optimized, _, _ = prepare_inputs(content, content, settings.replace(method="optimize"))
    assert isinstance(optimized.values, np.ndarray)  # optimize holds its image in memory


# --- predict reads a compact image tile by tile --------------------------------------------------


@pytest.mark.shared
def test_tiled_render_reads_the_compact_image(env):
    from napari_nst.engine.methods.predict.magenta_weights import load_model
    from napari_nst.engine.methods.predict.renderer import render
    from napari_nst.engine.methods.predict.style_embedding import embed

    content = shared_image("tubingen.jpg", 200)
    prepared = prepare_image(content)
    assert prepared.values.dtype == np.uint8
    style = prepare_image(shared_image("the_scream.jpg", 128)).rgb
    embedding = embed(load_model("predictor"), style)
    transformer = load_model("transformer")
    from_array = render(transformer, prepared.rgb, embedding, tile_size=64)
    np.testing.assert_array_equal(
        render(transformer, prepared, embedding, tile_size=64), from_array
    )
    np.testing.assert_array_equal(
        render(transformer, prepared, embedding), render(transformer, prepared.rgb, embedding)
    )
    # the whole pipeline at full size, tiled: uint8 in gives what the same image as floats gives
    style = shared_image("starry_night.jpg", 128)
    run = dict(method="predict", device="cpu", size=200, tile_size=64)
    result = napari_nst.stylize(content, style, **run)
    assert result.shape == content.shape
    np.testing.assert_allclose(
        result, napari_nst.stylize(content / 255.0, style, **run), rtol=0, atol=1e-5
    )


# --- float64 beyond float32's range (item 8) -----------------------------------------------------


def test_float64_beyond_float32_range_is_mapped_in_float64():
    ramp = np.linspace(-1.0, 1.0, 32 * 40).reshape(32, 40) * 1e308
    prepared = prepare_image(ramp)
    assert prepared.window == (-1e308, 1e308)
    np.testing.assert_allclose(
        prepared.rgb[..., 0].ravel(), np.linspace(0, 1, 32 * 40), rtol=0, atol=1e-6
    )
    # in colour, with non-finite values, a window and a size as well
    rgb = np.stack([ramp, -ramp, np.full_like(ramp, 3e300)], axis=2)
    rgb[0, 0, 0], rgb[0, 1, 0] = np.nan, np.inf
    prepared = prepare_image(rgb, size=20)
    assert np.isfinite(prepared.rgb).all() and prepared.rgb.max() <= 1.0
    assert prepared.rgb[-1, -1, 0] > 0.95 and prepared.rgb[-1, -1, 1] < 0.05
    windowed = prepare_image(ramp, window=(-1e307, 1e307)).rgb[..., 0]
    assert windowed.min() == 0.0 and windowed.max() == 1.0
    assert ((windowed > 0.0) & (windowed < 1.0)).sum() > 100
    # a constant that large is mid-grey, as a small constant is
    assert prepare_image(np.full((20, 20), 1e308)).rgb.mean() == pytest.approx(0.5, abs=1e-6)
    # back to the content's range without NaN from high - low overflowing (float32 output:
    # beyond its range means +-inf, with the signs kept)
    prepared = prepare_image(ramp)
    with np.errstate(over="ignore"):
        back = output_image(prepared.rgb, prepared, "content")[..., 0]
    assert not np.isnan(back).any()
    assert (back[ramp < -1e39] == -np.inf).all() and (back[ramp > 1e39] == np.inf).all()
    assert back[0, 0] == -np.inf and back[-1, -1] == np.inf


# --- what a file name and channel-first data are told (item 10) ----------------------------------


@pytest.mark.parametrize(
    "path", ["photos/tubingen.jpg", Path("photos/tubingen.jpg"), np.array("photos/tubingen.jpg")]
)
def test_a_file_name_is_told_to_load_the_image(path):
    with pytest.raises(
        ValueError,
        match=r"content: 'photos/tubingen.jpg' is a file name, not "
        r"image data; load it first, e\.g\. "
        r"napari_nst\.io\.read_image\(path\)",
    ):
        prepare_image(path, name="content")
    with pytest.raises(ValueError, match=r"style: .* is a file name.*napari-nst stylize"):
        napari_nst.stylize(np.zeros((32, 32, 3), np.uint8), str(path), device="cpu")


@pytest.mark.parametrize("shape", [(3, 64, 80), (4, 40, 30), (1, 16, 16)])
def test_channel_first_data_is_told_to_move_the_axis(shape):
    data = RNG.integers(0, 256, shape, dtype=np.uint8)
    with pytest.raises(
        ValueError,
        match=rf"shape \({shape[0]}, {shape[1]}, {shape[2]}\) looks "
        r"channel-first.*np\.moveaxis\(data, 0, -1\)",
    ):
        prepare_image(data)
    # and that advice works
    assert prepare_image(np.moveaxis(data, 0, -1)).shape == (shape[1], shape[2], 3)


def test_other_channel_counts_keep_their_message():
    with pytest.raises(ValueError, match="has 64 channels in the last axis"):
        prepare_image(np.zeros((5, 32, 64), np.uint8))  # 5: not a colour axis
    with pytest.raises(ValueError, match="has 8 channels in the last axis"):
        prepare_image(np.zeros((3, 64, 8), np.uint8))  # trailing axes too small for an image
