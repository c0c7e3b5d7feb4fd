"""``napari-nst stylize --stack``: multi-page TIFF, folder of images, zarr and OME-Zarr in; TIFF
or zarr out, plane by plane; a dask scheduler address. Real files on disk, the real predict
networks from ../shared/weights."""

from __future__ import annotations

import numpy as np
import pytest

import napari_nst
from napari_nst.cli import main
from tests.helpers import magenta_weights_dir

PREDICT = ["--method", "predict", "--size", "32", "--device", "cpu", "-q"]


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A (T, Z, H, W) uint16 stack, its planes as PNGs in a folder, and a style PNG."""
    from PIL import Image

    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(magenta_weights_dir()))
    rng = np.random.default_rng(0)
    stack = rng.integers(300, 3000, (2, 3, 40, 48)).astype(np.uint16)
    style = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(style).save(tmp_path / "style.png")
    folder = tmp_path / "planes"
    folder.mkdir()
    for i, plane in enumerate(stack.reshape(6, 40, 48)):
        Image.fromarray((plane // 12).astype(np.uint8)).save(folder / f"plane_{i:02d}.png")
    return tmp_path, stack, style


def test_tiff_stack_in_tiff_out_plane_by_plane(files):
    import tifffile

    folder, stack, style = files
    tifffile.imwrite(folder / "stack.tif", stack, metadata={"axes": "TZYX"})
    code = main(
        [
            "stylize",
            str(folder / "stack.tif"),
            str(folder / "style.png"),
            "-o",
            str(folder / "out.tif"),
            "--stack",
            *PREDICT,
        ]
    )
    assert code == 0
    written = tifffile.imread(folder / "out.tif")
    assert written.shape == (2, 3, 27, 32) and written.dtype == np.uint16  # 16-bit stays 16-bit
    expected = napari_nst.stylize_stack(
        stack, style, method="predict", size=32, device="cpu", output_range="content"
    )
    np.testing.assert_array_equal(written, expected[..., 0])
    assert 300 <= written.min() and written.max() <= 2999  # the content's own range


def test_folder_in_zarr_out_and_a_folder_that_does_not_stack(files, capsys):
    import zarr
    from PIL import Image

    folder, _, _ = files
    code = main(
        [
            "stylize",
            str(folder / "planes"),
            str(folder / "style.png"),
            "-o",
            str(folder / "out.zarr"),
            *PREDICT,
        ]
    )  # a folder implies --stack
    assert code == 0
    written = zarr.open_array(str(folder / "out.zarr"), mode="r")
    assert written.shape == (6, 27, 32, 3) and written.dtype == np.uint8
    assert all(np.asarray(written[i]).any() for i in range(6))
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(folder / "planes" / "plane_99.png")
    code = main(
        [
            "stylize",
            str(folder / "planes"),
            str(folder / "style.png"),
            "-o",
            str(folder / "again.zarr"),
            *PREDICT,
        ]
    )
    assert code == 2 and "plane_99.png is (20, 20) pixels" in capsys.readouterr().err
    assert not (folder / "again.zarr").exists()


def test_ome_zarr_in_on_a_dask_scheduler(files):
    import zarr
    from distributed import LocalCluster

    folder, stack, style = files
    image = zarr.open_group(str(folder / "image.zarr"), mode="w")
    image.create_array("0", data=stack)
    image.create_array("1", data=stack[..., ::2, ::2])
    image.attrs["multiscales"] = [{"datasets": [{"path": "0"}, {"path": "1"}]}]
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        code = main(
            [
                "stylize",
                str(folder / "image.zarr"),
                str(folder / "style.png"),
                "-o",
                str(folder / "out.zarr"),
                "--scheduler",
                cluster.scheduler_address,
                *PREDICT,
            ]
        )
    assert code == 0
    written = np.asarray(zarr.open_array(str(folder / "out.zarr"), mode="r"))
    assert written.shape == (2, 3, 27, 32, 3)  # the full-resolution level
    local = napari_nst.stylize_stack(
        stack, style, method="predict", size=32, device="cpu", output_range="content"
    )
    np.testing.assert_array_equal(written, local)  # the same process's threads: bit for bit


def test_stack_options_are_checked_before_the_run(files, capsys):
    folder, _, _ = files
    assert (
        main(
            [
                "stylize",
                str(folder / "planes"),
                str(folder / "style.png"),
                "-o",
                str(folder / "out.png"),
                *PREDICT,
            ]
        )
        == 2
    )
    assert "a .zarr store or a .tif file, not out.png" in capsys.readouterr().err
    assert (
        main(
            [
                "stylize",
                str(folder / "style.png"),
                str(folder / "style.png"),
                "-o",
                str(folder / "out.png"),
                "--scheduler",
                "tcp://127.0.0.1:9",
                *PREDICT,
            ]
        )
        == 2
    )
    assert "--scheduler is for the planes of a stack: add --stack" in capsys.readouterr().err
    assert (
        main(
            [
                "stylize",
                str(folder / "style.png"),
                str(folder / "style.png"),
                "-o",
                str(folder / "out.png"),
                "--temporal-weight",
                "0",
                *PREDICT,
            ]
        )
        == 2
    )
    assert "--temporal-weight is for the planes of a stack" in capsys.readouterr().err
    assert (
        main(
            [
                "stylize",
                str(folder / "planes"),
                str(folder / "style.png"),
                "-o",
                str(folder / "out.zarr"),
                "--temporal-weight",
                "-2",
                *PREDICT,
            ]
        )
        == 2
    )
    assert "temporal_weight=-2.0: give a number >= 0" in capsys.readouterr().err
