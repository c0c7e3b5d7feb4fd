"""Results keep what the content had: its alpha (RGBA in, RGBA out) and, with
``output_range="content"``, its own intensity range and dtype (a uint16 TIFF with values 300..3352
comes back in 300..3352, not stretched over 0..65535). Engine, CLI files and napari layers."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile
from PIL import Image

import napari_nst
from napari_nst.cli import main
from napari_nst.engine import weights as weights_module
from napari_nst.engine.images import prepare_image
from napari_nst.engine.output import output_image
from napari_nst.io import write_image
from tests.helpers import shared_image, shared_path, skip_or_fail

FAST = dict(
    size=32,
    steps=2,
    emit_every=1,
    device="cpu",
    coarse_to_fine=False,
    min_working_size=32,
    init="content",
)
QUICK = [
    "--size",
    "32",
    "--steps",
    "2",
    "--device",
    "cpu",
    "-q",
    "--no-coarse-to-fine",
    "--min-working-size",
    "32",
]
LOW, HIGH = 300, 3352


def gray16(rgb: np.ndarray) -> np.ndarray:
    """A real image's green channel as uint16 spanning exactly LOW..HIGH (a microscope's range)."""
    green = rgb[..., 1].astype(np.float64)
    green = (green - green.min()) / (green.max() - green.min())
    return np.rint(LOW + green * (HIGH - LOW)).astype(np.uint16)


def with_alpha(rgb: np.ndarray, opaque=255) -> np.ndarray:
    """``rgb`` plus an alpha channel: the left half transparent, the right half opaque."""
    alpha = np.zeros(rgb.shape[:2] + (1,), rgb.dtype)
    alpha[:, rgb.shape[1] // 2 :] = opaque
    return np.concatenate([rgb, alpha], axis=2)


def run_cli(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


# --- the mapping and its inverse -----------------------------------------------------------------


def test_prepare_image_records_alpha_window_and_dtype():
    rng = np.random.default_rng(0)
    rgba8 = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    before = rgba8.copy()
    prepared = prepare_image(rgba8)
    assert prepared.rgb.shape == (20, 24, 3) and prepared.alpha.shape == (20, 24)
    np.testing.assert_allclose(prepared.alpha, rgba8[..., 3] / 255, atol=1e-6)
    assert prepared.window == (0.0, 255.0) and prepared.dtype == np.uint8
    assert np.array_equal(rgba8, before)
    # integer alpha over its dtype's range (as napari and the file formats read it), not the
    # colour window: a uint16 image's min..max says nothing about its alpha
    rgba16 = rgba8.astype(np.uint16) * 10 + 300
    rgba16[..., 3] = 65535
    prepared = prepare_image(rgba16)
    assert prepared.alpha.min() == 1.0 and prepared.window == (300.0, 2850.0)
    # float alpha as 0..1; NaN is transparent, +inf opaque
    rgbaf = rng.random((16, 16, 4)).astype(np.float32)
    rgbaf[0, 0, 3], rgbaf[0, 1, 3], rgbaf[0, 2, 3] = np.nan, np.inf, 7.0
    alpha = prepare_image(rgbaf).alpha
    assert (alpha[0, 0], alpha[0, 1], alpha[0, 2]) == (0.0, 1.0, 1.0)
    # no alpha without a fourth channel; a given window is recorded
    assert prepare_image(rgba8[..., :3]).alpha is None
    assert prepare_image(rgba16[..., 0], window=(400, 900)).window == (400.0, 900.0)


def test_content_range_inverts_the_mapping():
    rng = np.random.default_rng(1)
    cases = [
        rng.integers(LOW, HIGH + 1, (18, 20), dtype=np.uint16),  # own min..max
        rng.integers(0, 256, (18, 20, 3), dtype=np.uint8),  # 0..255
        rng.integers(-100, 100, (18, 20), dtype=np.int16),  # signed
        (rng.random((18, 20, 3)) * 7 - 2).astype(np.float64),
    ]  # float outside 0..1
    for data in cases:
        prepared = prepare_image(data)
        back = output_image(prepared.rgb, prepared, "content")
        assert back.dtype == (np.float32 if data.dtype.kind == "f" else data.dtype)
        expected = data if data.ndim == 3 else np.repeat(data[..., None], 3, axis=2)
        np.testing.assert_allclose(back, expected, rtol=1e-6, atol=1e-5)
    # a window clips, and the result lies inside it
    prepared = prepare_image(cases[0], window=(1000, 2000))
    back = output_image(prepared.rgb, prepared, "content")
    assert back.min() == 1000 and back.max() == 2000
    # RGBA: alpha goes back over the dtype's range, exactly
    rgba = rng.integers(0, 65536, (18, 20, 4), dtype=np.uint16)
    prepared = prepare_image(rgba)
    assert np.array_equal(output_image(prepared.rgb, prepared, "content"), rgba)


def test_unit_range_adds_resized_alpha_and_leaves_inputs_alone():
    rgba = with_alpha(np.random.default_rng(2).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    prepared = prepare_image(rgba)
    small = prepared.rgb[::2, ::2].copy()
    before = small.copy()
    result = output_image(small, prepared)
    assert result.shape == (20, 30, 4) and result.dtype == np.float32
    np.testing.assert_array_equal(result[..., :3], small)
    assert result[:, :13, 3].max() == 0.0 and result[:, 17:, 3].min() == 1.0
    assert 0.0 <= result[..., 3].min() and result[..., 3].max() <= 1.0
    assert np.array_equal(small, before)
    with pytest.raises(ValueError, match="choose one of unit, content"):
        output_image(small, prepared, "display")
    with pytest.raises(ValueError, match="output_range='display' is not supported"):
        napari_nst.Settings(output_range="display")
    assert napari_nst.Settings().output_range == "unit"
    assert napari_nst.Settings(output_range="content").to_metadata()["output_range"] == "content"


# --- runs: optimize and predict ------------------------------------------------------------------


def test_optimize_keeps_alpha(random_vgg, content_small, style_small):
    rgba = with_alpha(content_small)
    plain = napari_nst.stylize(content_small, style_small, vgg_weights=random_vgg, **FAST)
    result = napari_nst.stylize(rgba, style_small, vgg_weights=random_vgg, **FAST)
    assert result.shape == (24, 32, 4) and result.dtype == np.float32
    np.testing.assert_array_equal(result[..., :3], plain)  # alpha does not change the colours
    assert result[:, :14, 3].max() == 0.0 and result[:, 18:, 3].min() == 1.0
    in_content = napari_nst.stylize(
        rgba, style_small, vgg_weights=random_vgg, **FAST, output_range="content"
    )
    assert in_content.dtype == np.uint8 and in_content.shape == (24, 32, 4)
    assert set(np.unique(in_content[:, :14, 3])) == {0} and set(
        np.unique(in_content[:, 18:, 3])
    ) == {255}


def test_optimize_content_range_on_16_bit_grayscale(random_vgg, content_small, style_small):
    gray = gray16(content_small)
    before = gray.copy()
    iterates = list(
        napari_nst.iterate(
            gray, style_small, vgg_weights=random_vgg, **FAST, output_range="content"
        )
    )
    final = iterates[-1].image
    assert final.dtype == np.uint16 and final.shape == (24, 32, 3)
    assert LOW <= final.min() and final.max() <= HIGH
    assert final.max() - final.min() > 0.3 * (HIGH - LOW)  # not squashed either
    unit = napari_nst.stylize(gray, style_small, vgg_weights=random_vgg, **FAST)
    np.testing.assert_array_equal(final, np.rint(LOW + unit.astype(np.float64) * (HIGH - LOW)))
    assert np.array_equal(gray, before)


@pytest.fixture
def predict_env(magenta_weights, monkeypatch, tmp_path):
    monkeypatch.setenv(weights_module.CACHE_DIR_ENV, str(tmp_path / "cache"))


@pytest.mark.shared
def test_predict_keeps_alpha_and_content_range(predict_env, random_vgg, content_small, style_small):
    settings = dict(method="predict", device="cpu", size=48)
    rgba = with_alpha(content_small)
    rgb = napari_nst.stylize(content_small, style_small, **settings)
    result = napari_nst.stylize(rgba, style_small, **settings)
    assert result.shape == (36, 48, 4)
    np.testing.assert_array_equal(result[..., :3], rgb)
    assert result[:, :22, 3].max() == 0.0 and result[:, 26:, 3].min() == 1.0
    gray = gray16(content_small)
    batch = napari_nst.predict_batch([gray, rgba], style_small, **settings, output_range="content")
    assert batch[0].dtype == np.uint16 and LOW <= batch[0].min() and batch[0].max() <= HIGH
    assert batch[1].dtype == np.uint8 and batch[1].shape == (36, 48, 4)
    # init="predict" starts optimize from the prediction's RGB in 0..1, whatever the output range
    start = napari_nst.stylize(
        gray,
        style_small,
        **{**FAST, "size": 48, "init": "predict"},
        output_range="content",
        vgg_weights=random_vgg,
    )
    assert start.dtype == np.uint16 and LOW <= start.min() and start.max() <= HIGH


# --- files ---------------------------------------------------------------------------------------


@pytest.fixture
def style_file(tmp_path):
    path = tmp_path / "style.jpg"
    Image.fromarray(shared_image("the_scream.jpg", 40)).save(path)
    return path


def test_cli_16_bit_tiff_keeps_its_range(style_file, vgg_file, tmp_path, magenta_weights):
    content = tmp_path / "cells.tif"
    tifffile.imwrite(content, gray16(shared_image("tubingen.jpg", 40)))

    def stylize(out, *args):
        return main(
            [
                "stylize",
                str(content),
                str(style_file),
                "-o",
                str(out),
                "--vgg-weights",
                str(vgg_file),
                *QUICK,
                *args,
            ]
        )

    out = tmp_path / "out.tif"
    assert stylize(out) == 0
    result = tifffile.imread(out)
    assert result.dtype == np.uint16 and result.shape == (24, 32)
    assert LOW <= result.min() and result.max() <= HIGH
    assert result.max() - result.min() > 0.3 * (HIGH - LOW)
    # asked for: the old stretch over 0..65535, or 8 bits
    stretched = tmp_path / "stretched.tif"
    assert stylize(stretched, "--output-range", "unit") == 0
    assert tifffile.imread(stretched).max() > 10 * HIGH
    eight = tmp_path / "eight.tif"
    assert stylize(eight, "--bit-depth", "8") == 0
    assert tifffile.imread(eight).dtype == np.uint8
    png = tmp_path / "preview.png"  # PNG holds 8 bits: the window is stretched, as before
    assert stylize(png) == 0
    assert np.asarray(Image.open(png)).dtype == np.uint8


@pytest.mark.parametrize(
    "dtype, output, extra, message",
    [
        ("uint16", "o.png", [], "needs a .tif output"),
        ("float32", "o.tif", [], "this content is float32"),
        ("uint16", "o.tif", ["--bit-depth", "8"], "not --bit-depth 8"),
    ],
)
def test_cli_content_range_that_a_file_cannot_hold(
    style_file, tmp_path, capsys, dtype, output, extra, message
):
    content = tmp_path / "content.tif"
    tifffile.imwrite(content, gray16(shared_image("tubingen.jpg", 40)).astype(dtype))
    assert (
        run_cli(
            [
                "stylize",
                str(content),
                str(style_file),
                "-o",
                str(tmp_path / output),
                "--output-range",
                "content",
                *extra,
            ]
        )
        == 2
    )
    assert message in capsys.readouterr().err


def test_cli_rgba_keeps_alpha(style_file, vgg_file, tmp_path, capsys, magenta_weights):
    rgba = with_alpha(shared_image("tubingen.jpg", 40))
    content = tmp_path / "content.png"
    Image.fromarray(rgba).save(content)
    run = ["--vgg-weights", str(vgg_file), *QUICK]
    assert (
        main(["stylize", str(content), str(style_file), "-o", str(tmp_path / "o.png"), *run]) == 0
    )
    png = np.asarray(Image.open(tmp_path / "o.png"))
    assert png.shape == (24, 32, 4) and png.dtype == np.uint8
    assert set(np.unique(png[:, :14, 3])) == {0} and set(np.unique(png[:, 18:, 3])) == {255}
    tif16 = tmp_path / "content16.tif"
    tifffile.imwrite(tif16, rgba.astype(np.uint16) * 257)
    assert main(["stylize", str(tif16), str(style_file), "-o", str(tmp_path / "o.tif"), *run]) == 0
    with tifffile.TiffFile(tmp_path / "o.tif") as tif:
        result = tif.asarray()
        assert tif.pages[0].extrasamples == (tifffile.EXTRASAMPLE.UNASSALPHA,)
    assert result.dtype == np.uint16 and result.shape == (24, 32, 4)
    assert result[:, :14, 3].max() == 0 and result[:, 18:, 3].min() == 65535
    # JPEG has no alpha: the colours are written, and the command says what was dropped
    jpg = tmp_path / "o.jpg"
    assert main(["stylize", str(content), str(style_file), "-o", str(jpg), *run]) == 0
    assert np.asarray(Image.open(jpg)).shape == (24, 32, 3)
    assert "has no alpha channel" in capsys.readouterr().err


def test_write_image_takes_integers_as_they_are(tmp_path):
    values = np.array([[LOW, HIGH], [1000, 2000]], np.uint16).repeat(8, 0).repeat(8, 1)
    before = values.copy()
    write_image(tmp_path / "a.tif", values, 16)
    assert np.array_equal(tifffile.imread(tmp_path / "a.tif"), values)
    write_image(tmp_path / "b.tif", values / 4000.0, 16)  # floats are still stretched
    assert tifffile.imread(tmp_path / "b.tif").max() == round(HIGH / 4000 * 65535)
    with pytest.raises(ValueError, match="uint16 pixels cannot be written at 8 bits"):
        write_image(tmp_path / "c.png", values, 8)
    assert np.array_equal(values, before)
    rgba = with_alpha(np.full((16, 16, 3), 9, np.uint8))
    write_image(tmp_path / "d.jpg", rgba)
    assert np.asarray(Image.open(tmp_path / "d.jpg")).shape == (16, 16, 3)


# --- napari --------------------------------------------------------------------------------------


def test_result_layers_keep_alpha_and_the_contents_display():
    """Layer arguments for results, handed to a real napari Image layer (no viewer needed)."""
    from napari.layers import Image as ImageLayer

    from napari_nst._jobs import Job, LayerSnapshot
    from napari_nst._result_layers import result_layer_kwargs
    from napari_nst.engine.result import StepResult

    def layer(data, window, rgb, output_range):
        snapshot = LayerSnapshot("c", data, window, rgb, (1.0, 1.0), (0.0, 0.0))
        prepared = prepare_image(data, window)
        image = output_image(prepared.rgb[::2, ::2], prepared, output_range)
        iterate = StepResult(1, 1, image, {}, 0.0, image.shape[:2])
        settings = napari_nst.Settings(output_range=output_range)
        return ImageLayer(**result_layer_kwargs(Job(snapshot, snapshot), iterate, settings))

    gray = gray16(np.random.default_rng(3).integers(0, 256, (32, 40, 3), dtype=np.uint8))
    shown = layer(gray, (LOW, 2000.0), False, "content")
    assert shown.data.dtype == np.uint16 and shown.data.ndim == 2 and not shown.rgb
    assert tuple(shown.contrast_limits) == (LOW, 2000.0)
    assert shown.metadata["napari_nst"]["settings"]["output_range"] == "content"
    assert tuple(layer(gray, (LOW, 2000.0), False, "unit").contrast_limits) == (0.0, 1.0)
    rgba = with_alpha(np.full((32, 40, 3), 100, np.uint8))
    unit = layer(rgba, (0.0, 255.0), True, "unit")
    assert unit.rgb and unit.data.shape == (16, 20, 4)
    # not napari's automatic min..max, which would count the alpha and vary between results
    assert tuple(unit.contrast_limits) == (0.0, 1.0)
    content = layer(rgba, (0.0, 255.0), True, "content")
    assert content.data.dtype == np.uint8 and tuple(content.contrast_limits) == (0.0, 255.0)


@pytest.mark.gui
def test_viewer_run_in_content_range(qtbot, request, random_vgg, monkeypatch, tmp_path):
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        skip_or_fail(
            "no display: napari tests need Xvfb (apt-get install xvfb; pytest-xvfb starts it)"
        )
    shared_path("images")  # before the viewer exists (see tests/test_napari.py)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    viewer = request.getfixturevalue("make_napari_viewer")()
    viewer.add_image(
        gray16(shared_image("tubingen.jpg", 40)), name="cells", contrast_limits=(LOW, 2500)
    )
    viewer.add_image(with_alpha(shared_image("tubingen.jpg", 40)), name="cutout", rgb=True)
    viewer.add_image(shared_image("starry_night.jpg", 40), name="style", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    assert widget.controls["output_range"].choices == ("unit", "content")
    worker = napari_nst.run_in_viewer(
        viewer,
        ["cells", "cutout"],
        "style",
        vgg_weights=random_vgg,
        **{**FAST, "steps": 1},
        output_range="content",
        start=False,
    )
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        worker.start()
    cells, cutout = (job.results[-1] for job in worker.jobs)
    assert cells.data.dtype == np.uint16 and tuple(cells.contrast_limits) == (LOW, 2500)
    assert LOW <= cells.data.min() and cells.data.max() <= 2500
    assert cutout.rgb and cutout.data.dtype == np.uint8 and cutout.data.shape == (24, 32, 4)
    assert cutout.data[:, :14, 3].max() == 0 and cutout.data[:, 18:, 3].min() == 255
