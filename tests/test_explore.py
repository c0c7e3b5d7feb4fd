"""Explore: sweeps of settings side by side, Fig. 1's reconstructions, contact sheets, the CLI.

Real weights from ../shared/weights (the distilled VGG-19) and real images.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import napari_nst
from napari_nst.cli import main
from napari_nst.engine import methods
from napari_nst.engine.explore import GROWING_STYLE_LAYERS, CellDone, iter_sweep
from napari_nst.engine.explore_presets import parse_values
from tests.helpers import shared_image

FAST = dict(
    network="vgg19-distilled", size=64, steps=12, min_working_size=64, min_size=64, device="cpu"
)


@pytest.fixture(autouse=True)
def weights_here(shared_weights):
    """Every test here reads ../shared/weights."""


@pytest.fixture(scope="module")
def content():
    return shared_image("tubingen.jpg", 64)  # 48 x 64


@pytest.fixture(scope="module")
def style():
    return shared_image("starry_night.jpg", 64)


def _kept(image, content) -> float:
    return float(np.abs(image - content / 255.0).mean())


def test_a_sweep_of_two_settings_fills_its_grid(content, style):
    done = []
    result = napari_nst.sweep(
        content,
        style,
        rows=("style_layers", GROWING_STYLE_LAYERS[:2]),
        cols=("content_weight", [0.01, 30.0]),
        progress=done.append,
        **{**FAST, "init": "noise", "steps": 30},
    )
    assert result.images.shape == (2, 2, 48, 64, 3) and result.done.all()
    assert [d.label for d in done] == [
        "style_layers=conv1_1, content_weight=0.01",
        "style_layers=conv1_1, content_weight=30",
        "style_layers=conv1_1+conv2_1, content_weight=0.01",
        "style_layers=conv1_1+conv2_1, content_weight=30",
    ]
    assert result.row_values == list(GROWING_STYLE_LAYERS[:2])
    assert result.col_name == "content_weight"
    for row in range(2):  # more content weight: closer to the content
        assert _kept(result.images[row, 1], content) < _kept(result.images[row, 0], content)
    assert not np.allclose(result.images[0, 0], result.images[1, 0])


def test_cells_share_the_style_target_where_it_is_the_same(
    content, style, monkeypatch, magenta_weights
):
    impl = methods.get("optimize")
    calls = []
    real = type(impl).target
    monkeypatch.setattr(
        type(impl), "target", lambda self, *a, **k: calls.append(1) or real(self, *a, **k)
    )
    napari_nst.sweep(content, style, rows=("content_weight", [0.1, 1.0, 10.0]), **FAST)
    assert len(calls) == 1  # the weights change, the Gram targets do not
    napari_nst.sweep(content, style, rows=("style_layers", GROWING_STYLE_LAYERS[:3]), **FAST)
    assert len(calls) == 4  # one per layer set


def test_methods_side_by_side_at_one_size(content, style, magenta_weights):
    result = napari_nst.sweep(
        content, style, None, ("method", ["optimize", "predict", "universal"]), **FAST
    )
    assert result.images.shape == (1, 3, 48, 64, 3)
    assert result.labels == [["method=optimize", "method=predict", "method=universal"]]
    assert len({round(float(result.images[0, c].mean()), 4) for c in range(3)}) == 3


def test_a_size_sweep_gives_every_cell_the_working_size(content, style, magenta_weights):
    result = napari_nst.sweep(
        content, style, ("size", [32, 64]), method="predict", device="cpu", size=64
    )
    assert result.images.shape == (2, 1, 48, 64, 3) and result.done.all()


def test_content_reconstructions_lose_detail_with_depth(content):
    from skimage.metrics import structural_similarity

    result = napari_nst.reconstruct(
        content, "content", layers=("conv1_1", "conv5_1"), **{**FAST, "steps": 60}
    )
    assert result.col_name == "content_layers" and result.shape == (1, 2)
    gray = content.mean(axis=2) / 255.0
    scores = [
        structural_similarity(result.images[0, c].mean(axis=2), gray, data_range=1.0)
        for c in range(2)
    ]
    assert scores[0] > scores[1] + 0.2  # conv1_1 almost perfect, conv5_1 only the layout


def test_style_reconstructions_grow_their_layer_sets(style):
    result = napari_nst.reconstruct(
        style, "style", layers=("conv1_1", "conv2_1", "conv3_1"), **FAST
    )
    assert result.col_values == [
        ("conv1_1",),
        ("conv1_1", "conv2_1"),
        ("conv1_1", "conv2_1", "conv3_1"),
    ]
    assert result.done.all() and np.isfinite(result.images).all()


def test_the_contact_sheet_shows_cells_and_labels(content, style, magenta_weights):
    result = napari_nst.sweep(
        content,
        style,
        ("style_strength", [0.0, 1.0]),
        ("keep_colors", [False, True]),
        method="predict",
        device="cpu",
        size=64,
    )
    sheet = result.contact_sheet()
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
    assert sheet.shape[0] > 2 * 48 and sheet.shape[1] > 2 * 64
    cell = (np.clip(result.images[1, 1], 0, 1) * 255 + 0.5).astype(np.uint8)
    bottom_right = sheet[-6 - 48 : -6, -6 - 64 : -6]
    assert np.abs(bottom_right.astype(int) - cell).max() <= 1  # the cell itself, unscaled
    header = sheet[:20]
    assert (header < 100).any() and (header == 255).mean() > 0.5  # dark text on white
    assert result.contact_sheet(cell=128).shape[1] > sheet.shape[1]


def test_stopping_a_sweep_keeps_the_cells_done(content, style, magenta_weights):
    result, steps = iter_sweep(content, style, ("content_weight", [0.1, 1.0, 10.0]), **FAST)
    for event in steps:
        if isinstance(event, CellDone):
            break
    steps.close()
    assert result.done.tolist() == [[True], [False], [False]]
    assert result.images[0, 0].std() > 0.02 and not result.images[1:].any()


@pytest.mark.parametrize(
    "rows, message",
    [
        (("colour", [1, 2]), "'colour' is not a setting"),
        (("content_weight", []), "no values for content_weight"),
        (("content_weight", [1.0, -1.0]), "content_weight=-1.0"),
        (("regions", [None]), "regions cannot be swept"),
        (("seed", list(range(40))), "40 cells is more than 36"),
        ("content_weight", "give .setting name, values."),
    ],
)
def test_bad_sweeps_fail_before_any_work(content, style, rows, message):
    with pytest.raises(ValueError, match=message):
        iter_sweep(content, style, rows, **FAST)


def test_values_from_text():
    assert parse_values("content_weight", "0.1; 1;10") == ["0.1", "1", "10"]
    assert parse_values("style_layers", "conv1_1;conv1_1,conv2_1") == [
        ("conv1_1",),
        ("conv1_1", "conv2_1"),
    ]
    assert parse_values("style_layers", "growing") == list(GROWING_STYLE_LAYERS)
    assert parse_values("keep_colors", "no;yes") == [False, True]
    with pytest.raises(ValueError, match="no values"):
        parse_values("seed", " ; ")


def test_cli_sweep_writes_the_sheet(tmp_path, capsys, magenta_weights):
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    Image.fromarray(shared_image("tubingen.jpg", 64)).save(content)
    Image.fromarray(shared_image("starry_night.jpg", 64)).save(style)
    out = tmp_path / "sheet.png"
    assert (
        main(
            [
                "sweep",
                str(content),
                str(style),
                "--rows",
                "style_strength=0;1",
                "--cols",
                "method=predict;universal",
                "-o",
                str(out),
                "--size",
                "64",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "sweep: 4 cells, one pass each" in err and "cell 4/4" in err  # the cost first
    sheet = np.asarray(Image.open(out))
    assert sheet.shape[0] > 2 * 48 and sheet.shape[1] > 2 * 64
    assert (
        main(
            [
                "sweep",
                str(content),
                "--preset",
                "fig1-content",
                "-o",
                str(out),
                "--size",
                "64",
                "--steps",
                "4",
                "--network",
                "vgg19-distilled",
                "--min-working-size",
                "64",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "sweep: 5 cells x 4 optimisation steps at 64 px" in err and "cell 5/5" in err
    # the style preset reconstructs the style: without one it says so (it took the content)
    assert main(["sweep", str(content), "--preset", "fig1-style", "-o", str(out)]) == 2
    assert "fig1-style preset reconstructs the style image" in capsys.readouterr().err
    assert main(["sweep", str(content), str(style), "--rows", "colour=1;2", "-o", str(out)]) == 2
    assert "'colour' is not a setting" in capsys.readouterr().err
