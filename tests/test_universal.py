"""Universal style transfer (Li et al. 2017) on the real Collaborative Distillation networks in
../shared/weights: the transform's algebra, its graded controls, tiles without seams, bad input."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import napari_nst
from tests.helpers import shared_image, shared_path


@pytest.fixture(autouse=True)
def weights_here(shared_weights):
    """Every test here reads ../shared/weights."""


@pytest.fixture(scope="module")
def photo():
    return shared_image("tubingen.jpg", 128)


@pytest.fixture(scope="module")
def painting():
    return shared_image("starry_night.jpg", 128)


def universal(content, style, **settings):
    return napari_nst.stylize(
        content, style, method="universal", device="cpu", size=128, **settings
    )


def _luma_correlation(a, b) -> float:
    from napari_nst.engine.output import luminance

    a, b = luminance(np.asarray(a, np.float32)), luminance(np.asarray(b, np.float32))
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_the_transform_gives_the_features_the_style_statistics():
    """Whitening then colouring: the transformed features have the style's mean and covariance
    (up to the ridge), whatever the content's were."""
    import torch

    from napari_nst.engine.methods.universal.wct import (
        Moments,
        StyleStatistics,
        affine,
        apply_affine,
    )

    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(8, 8, generator=generator, dtype=torch.float64)
    content = mixing @ torch.randn(8, 4000, generator=generator, dtype=torch.float64) + 3.0
    style = (
        torch.randn(8, 3000, generator=generator, dtype=torch.float64)
        * torch.arange(1, 9, dtype=torch.float64)[:, None]
        - 1.0
    )
    matrix, bias = affine(
        Moments(8).add(content),
        [StyleStatistics.from_moments(Moments.of(style.float()))],
        [1.0],
        strength=1.0,
    )
    moved = apply_affine(content.float().reshape(1, 8, 40, 100), matrix, bias)[0].reshape(8, -1)
    mean, covariance = Moments(8).add(moved).mean_covariance()
    style_mean, style_covariance = Moments(8).add(style).mean_covariance()
    np.testing.assert_allclose(mean, style_mean, atol=1e-3)
    np.testing.assert_allclose(covariance, style_covariance, rtol=1e-2, atol=2e-2)  # float32 maps
    # strength 0 is the identity
    matrix, bias = affine(
        Moments(8).add(content),
        [StyleStatistics.from_moments(Moments.of(style.float()))],
        [1.0],
        strength=0.0,
    )
    np.testing.assert_allclose(matrix, np.eye(8))
    np.testing.assert_allclose(bias, np.zeros(8))


def test_a_flat_region_stays_finite():
    """A constant feature map (covariance zero): the ridge keeps the whitening finite."""
    import torch

    from napari_nst.engine.methods.universal.wct import Moments, StyleStatistics, affine

    flat = torch.full((4, 100), 2.0, dtype=torch.float64)
    matrix, bias = affine(
        Moments(4).add(flat),
        [StyleStatistics.from_moments(Moments.of(flat.float()))],
        [1.0],
        strength=1.0,
    )
    assert torch.isfinite(matrix).all() and torch.isfinite(bias).all()


def test_style_strength_is_graded(photo, painting):
    """From 0 (the decoders' reconstruction of the content) to 1, the content is kept less at
    every step."""
    from napari_nst.engine.resample import resize_array

    reference = resize_array(photo.astype(np.float32) / 255, (96, 128))
    kept = [
        _luma_correlation(universal(photo, painting, style_strength=alpha), reference)
        for alpha in (0.0, 0.3, 0.6, 1.0)
    ]
    assert kept[0] > 0.7  # five levels of the decoders' reconstruction of the content
    assert all(a > b for a, b in zip(kept, kept[1:])), kept


def test_fewer_levels_keep_more_of_the_content(photo, painting):
    from napari_nst.engine.resample import resize_array

    reference = resize_array(photo.astype(np.float32) / 255, (96, 128))
    fine = _luma_correlation(universal(photo, painting, levels=(2, 1)), reference)
    full = _luma_correlation(universal(photo, painting, levels=(5, 4, 3, 2, 1)), reference)
    assert fine > full + 0.05


def test_levels_run_coarse_to_fine_whatever_order_they_are_given_in(photo, painting):
    a = universal(photo, painting, levels=(1, 3, 5))
    b = universal(photo, painting, levels="5,3,1")
    np.testing.assert_array_equal(a, b)


def test_the_result_takes_the_style_colours_and_keep_colors_restores_the_content(photo, painting):
    result = universal(photo, painting)
    blue = painting[..., 2].mean() / 255
    assert abs(result[..., 2].mean() - blue) < abs(photo[..., 2].mean() / 255 - blue)
    kept = universal(photo, painting, keep_colors=True)
    from napari_nst.engine.output import _RGB_TO_YIQ
    from napari_nst.engine.resample import resize_array

    chroma = lambda image: image @ _RGB_TO_YIQ[1:].T  # noqa: E731
    reference = resize_array(photo.astype(np.float32) / 255, (96, 128))
    assert np.abs(chroma(kept) - chroma(reference)).mean() < 0.02


def test_a_blend_of_styles_moves_between_them(photo, painting):
    scream = shared_image("the_scream.jpg", 128)
    alone = universal(photo, painting)
    np.testing.assert_allclose(
        universal(photo, [painting, scream], style_blend=(1, 0)), alone, atol=1e-5
    )
    half = universal(photo, [painting, scream], style_blend=(1, 1))
    other = universal(photo, scream)
    assert 0.01 < np.abs(half - alone).mean() and 0.01 < np.abs(half - other).mean()


def test_large_images_go_in_tiles_with_the_whole_image_statistics(monkeypatch, photo, painting):
    """Tiles of 64 px with their halos give the untiled result: no seams."""
    from napari_nst.engine.methods.universal import transfer

    whole = universal(photo, painting)
    monkeypatch.setattr(transfer, "WHOLE_PIXELS", 32 * 32)
    monkeypatch.setattr(transfer, "TILE", 64)
    tiled = universal(photo, painting)
    assert np.abs(tiled - whole).max() < 5e-4  # float32 rounding, no seams


def test_a_result_too_big_for_memory_goes_through_files(monkeypatch, tmp_path, photo, painting):
    import tempfile

    from napari_nst.engine.methods.universal import transfer

    whole = universal(photo, painting, output_range="content")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for name, value in (("WHOLE_PIXELS", 32 * 32), ("TILE", 64), ("IN_FILE_PIXELS", 40 * 40)):
        monkeypatch.setattr(transfer, name, value)
    through_files = universal(photo, painting, output_range="content")
    assert isinstance(through_files, np.memmap) and through_files.dtype == np.uint8
    assert np.abs(through_files.astype(int) - whole).max() <= 1
    assert list(tmp_path.iterdir()) == []  # unnamed files only


def test_the_smallest_images_are_padded_for_the_deepest_level(painting):
    tiny = shared_image("tubingen.jpg", 16)
    result = napari_nst.stylize(tiny, painting[:16, :16], method="universal", size=16)
    assert min(result.shape[:2]) == 16 and np.isfinite(result).all()


def test_the_weights_download_on_first_use_with_their_sha256(mirror, photo, painting):
    from napari_nst.engine.weights import UNIVERSAL_DECODERS, UNIVERSAL_ENCODERS

    files = [
        entry.filename for entry in (*UNIVERSAL_ENCODERS.values(), *UNIVERSAL_DECODERS.values())
    ]
    for name in files:
        (mirror.folder / name).write_bytes(shared_path("weights", name).read_bytes())
    result = napari_nst.stylize(photo, painting, method="universal", size=64, levels=(2, 1))
    assert np.isfinite(result).all()
    assert sorted(mirror.requests) == sorted(
        f"cd_wct_16x_{kind}{level}.pth" for kind in ("encoder", "decoder") for level in (1, 2)
    )


def test_a_corrupt_weights_file_names_the_file_where_and_the_expected_sha256(
    tmp_path, monkeypatch, photo, painting
):
    from napari_nst.engine import clear_caches
    from napari_nst.engine.weights import UNIVERSAL_DECODERS, WeightsError

    folder = tmp_path / "weights"
    folder.mkdir()
    for path in shared_path("weights").glob("*.pth"):
        (folder / path.name).write_bytes(path.read_bytes())
    broken = folder / "cd_wct_16x_decoder1.pth"
    broken.write_bytes(broken.read_bytes()[:-100])
    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(folder))
    clear_caches()
    with pytest.raises(WeightsError) as error:
        universal(photo, painting)
    message = str(error.value)
    assert str(broken) in message and UNIVERSAL_DECODERS[1].sha256 in message
    assert hashlib.sha256(broken.read_bytes()).hexdigest()[:16] in message
    clear_caches()


def test_a_missing_weights_file_says_where_it_was_looked_for(
    tmp_path, monkeypatch, photo, painting
):
    from napari_nst.engine import clear_caches
    from napari_nst.engine.weights import DOWNLOAD_URL_ENV, UNIVERSAL_ENCODERS, WeightsError

    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("NAPARI_NST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(DOWNLOAD_URL_ENV, "http://127.0.0.1:9")  # nothing listens there
    clear_caches()
    with pytest.raises(WeightsError) as error:
        universal(photo, painting, levels=(4,))
    message = str(error.value)
    entry = UNIVERSAL_ENCODERS[4]
    assert entry.filename in message and str(tmp_path) in message and entry.sha256 in message
    clear_caches()


def test_optimize_can_start_from_the_universal_result(photo, painting):
    """``init="universal"``: optimize's start image is universal's result (one step keeps it
    close), where ``init="content"`` starts from the photograph."""
    quick = dict(network="vgg19-distilled", min_working_size=96, min_size=96, size=96, steps=1)
    start = napari_nst.stylize(photo, painting, method="universal", size=96)
    from_universal = napari_nst.stylize(photo, painting, init="universal", **quick)
    from_content = napari_nst.stylize(photo, painting, init="content", **quick)
    assert np.abs(from_universal - start).mean() < 0.01 < np.abs(from_content - start).mean()
