"""The ``napari-nst`` command: round trips through PNG, JPEG and 16-bit TIFF, and exit codes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_nst.cli import main
from tests.conftest import shared_image, shared_path

QUICK = ["--size", "32", "--steps", "3", "--device", "cpu", "-q", "--no-coarse-to-fine"]


def run_cli(argv) -> int:
    """Exit status of ``napari-nst argv`` (argparse's own errors exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture
def images(tmp_path):
    content = tmp_path / "content.png"
    style = tmp_path / "style.jpg"
    Image.fromarray(shared_image("tubingen.jpg", 40)).save(content)
    Image.fromarray(shared_image("the_scream.jpg", 40)).save(style)
    return content, style


def test_png_round_trip_with_intermediates(images, vgg_file, tmp_path, capsys):
    content, style = images
    out = tmp_path / "out.png"
    code = main(["stylize", str(content), str(style), "-o", str(out), "--vgg-weights", str(vgg_file),
                 "--size", "32", "--steps", "4", "--save-every", "2", "--device", "cpu",
                 "--no-coarse-to-fine"])
    assert code == 0
    result = np.asarray(Image.open(out))
    assert result.shape == (24, 32, 3) and result.dtype == np.uint8
    assert (tmp_path / "out_step0002.png").is_file()
    err = capsys.readouterr().err
    assert "step 2/4" in err and "step 4/4" in err and "total loss" in err


def test_16bit_tiff_in_and_out(images, vgg_file, tmp_path):
    content, style = images
    gray16 = (np.asarray(Image.open(content).convert("L")).astype(np.uint16) * 257)[:, :] // 4 + 1000
    tif = tmp_path / "gray16.tif"
    tifffile.imwrite(tif, gray16)
    out = tmp_path / "out.tif"
    assert main(["stylize", str(tif), str(style), "-o", str(out), "--vgg-weights", str(vgg_file),
                 *QUICK]) == 0
    result = tifffile.imread(out)
    assert result.dtype == np.uint16 and result.ndim == 2  # grayscale in, grayscale 16-bit out
    assert result.max() > 255  # really uses the 16-bit range
    rgb16 = tmp_path / "rgb16.tif"
    tifffile.imwrite(rgb16, (np.asarray(Image.open(content)).astype(np.uint16) * 257))
    out8 = tmp_path / "out8.jpg"
    assert main(["stylize", str(rgb16), str(style), "-o", str(out8), "--vgg-weights", str(vgg_file),
                 *QUICK]) == 0
    assert np.asarray(Image.open(out8)).shape == (24, 32, 3)


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "steps=0 is out of range"),
    (["--device", "cuda:7"], "cuda:7"),
    (["--optimizer", "sgd"], "invalid choice"),
    (["--bit-depth", "16"], "16-bit output needs a .tif"),
])
def test_bad_arguments_exit_2(images, tmp_path, capsys, args, message):
    content, style = images
    assert run_cli(["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), *args]) == 2
    assert message in capsys.readouterr().err


def test_bad_input_files_exit_2(images, tmp_path, capsys):
    content, style = images
    assert main(["stylize", str(tmp_path / "missing.png"), str(style), "-o", str(tmp_path / "o.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tiny)
    assert main(["stylize", str(tiny), str(style), "-o", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "too small" in err and len(err.strip().splitlines()) == 1
    assert main(["stylize", str(content), str(style), "-o", str(tmp_path / "o.bmp")]) == 2


def test_failure_during_run_exits_1(images, tmp_path, capsys):
    content, style = images
    corrupt = tmp_path / "vgg.pth"
    corrupt.write_bytes(b"\0" * 100)
    code = main(["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"),
                 "--vgg-weights", str(corrupt), *QUICK])
    assert code == 1
    assert "cannot read weights" in capsys.readouterr().err


def test_console_script_runs_on_shared_images(vgg_file, tmp_path):
    """The installed command, as the README uses it, on the full-size shared images."""
    out = tmp_path / "out.png"
    proc = subprocess.run(
        [sys.executable, "-m", "napari_nst.cli", "stylize", str(shared_path("images", "tubingen.jpg")),
         str(shared_path("images", "starry_night.jpg")), "-o", str(out), "--size", "64", "--steps", "20",
         "--vgg-weights", str(vgg_file), "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (64, 48)
    losses = [float(line.split("total=")[1].split()[0]) for line in proc.stderr.splitlines()
              if line.startswith("step ")]
    assert len(losses) >= 2 and losses[-1] < losses[0]


def test_network_option(images, tmp_path, capsys):
    """--network vgg19-distilled runs on the distilled weights found in $NAPARI_NST_WEIGHTS_DIR."""
    shared_path("weights", "cd_vgg19_distilled_16x_conv5_1.pth")
    _, style = images
    content = tmp_path / "content64.png"
    Image.fromarray(shared_image("tubingen.jpg", 64)).save(content)
    out = tmp_path / "out.png"
    assert main(["stylize", str(content), str(style), "-o", str(out), "--network",
                 "vgg19-distilled", "--size", "64", "--steps", "2", "--device", "cpu",
                 "--no-coarse-to-fine"]) == 0
    assert np.asarray(Image.open(out)).shape == (48, 64, 3)
    assert run_cli(["stylize", str(content), str(style), "-o", str(out), "--network", "vgg16"]) == 2
    assert "invalid choice: 'vgg16'" in capsys.readouterr().err
