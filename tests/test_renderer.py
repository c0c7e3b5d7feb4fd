"""The fused, tiled renderer (``engine.renderer``) against the readable reference module, itself
tiled and untiled, and into destinations other than a fresh numpy array.

The reference for the transformer's arithmetic is ``StyleTransformer.forward``; the renderer may
differ from it only by float rounding (fused kernels, statistics summed in another order), and
tiling may change only that rounding: no seams.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch

from napari_nst.engine import weights as weights_module
from napari_nst.engine.memory import FileArray
from napari_nst.engine.methods.predict import renderer, tiles
from napari_nst.engine.methods.predict.magenta import StyleTransformer
from napari_nst.engine.methods.predict.magenta_weights import load_model
from napari_nst.engine.methods.predict.renderer import (
    bottleneck_shape,
    render,
    render_into,
    space_to_depth_kernel,
    subpixel_kernel,
    tile_grid,
)
from napari_nst.engine.methods.predict.style_embedding import embed
from tests.helpers import magenta_weights_dir, shared_image


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """(predictor, transformer) from ../shared/weights, converted into a temporary cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(weights_module.WEIGHTS_DIR_ENV, str(magenta_weights_dir()))
        patch.setenv(weights_module.CACHE_DIR_ENV, str(tmp_path_factory.mktemp("cache")))
        yield load_model("predictor"), load_model("transformer")


@pytest.fixture(scope="module")
def embedding(networks):
    return embed(networks[0], shared_image("starry_night.jpg", 128).astype(np.float32) / 255)


@pytest.fixture(scope="module")
def golden_gate():
    return shared_image("golden_gate.jpg", 222).astype(np.float32) / 255  # 166 x 222


def reference_forward(transformer: StyleTransformer, rgb: np.ndarray, embedding) -> np.ndarray:
    height, width = rgb.shape[:2]
    pad_h, pad_w = -height % 4, -width % 4
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
        x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        return transformer(x, embedding)[0, :, :height, :width].permute(1, 2, 0).numpy()


# --- the fused kernels ----------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize("shape", [(17, 23), (72, 96), (61, 45)])
def test_fused_renderer_equals_the_module_at_any_size(networks, embedding, shape):
    from PIL import Image

    transformer = networks[1]
    content = shared_image("tubingen.jpg", 96)
    rgb = np.asarray(Image.fromarray(content).resize(shape[::-1]), dtype=np.float32) / 255
    fast = render(transformer, rgb, embedding)
    assert fast.shape == (*shape, 3) and fast.dtype == np.float32
    np.testing.assert_allclose(fast, reference_forward(transformer, rgb, embedding), atol=1e-4)


def test_subpixel_and_space_to_depth_kernels_are_exact():
    """The rearranged kernels compute the same convolutions (random weights, odd sizes)."""
    F = torch.nn.functional
    generator = torch.Generator().manual_seed(0)
    low = torch.rand(1, 5, 7, 9, generator=generator)
    weight = torch.randn(4, 5, 3, 3, generator=generator)
    direct = F.conv2d(
        F.pad(F.interpolate(low, scale_factor=2, mode="nearest"), (1,) * 4, mode="reflect"), weight
    )
    phases = F.conv2d(F.pad(low, (1,) * 4, mode="replicate"), subpixel_kernel(weight))
    for phase in range(4):
        a, b = divmod(phase, 2)
        torch.testing.assert_close(
            phases[:, phase * 4 : (phase + 1) * 4, a : a + 7, b : b + 9], direct[:, :, a::2, b::2]
        )
    image = torch.rand(1, 3, 14, 18, generator=generator)
    weight9 = torch.randn(2, 3, 9, 9, generator=generator)
    direct9 = F.conv2d(image, weight9)  # 6 x 10
    s2d = torch.cat([image[:, :, p::2, q::2] for p in range(2) for q in range(2)], dim=1)
    out = F.conv2d(s2d, space_to_depth_kernel(weight9))
    for phase in range(4):
        a, b = divmod(phase, 2)
        torch.testing.assert_close(out[:, phase * 2 : (phase + 1) * 2], direct9[:, :, a::2, b::2])


# --- tiling ---------------------------------------------------------------------------------------


def test_tile_grid_covers_the_padded_image():
    assert tile_grid(166, 222, None) == ([(0, 168)], [(0, 224)])  # whole image: one tile
    assert tile_grid(166, 222, 224) == ([(0, 168)], [(0, 224)])
    rows, cols = tile_grid(166, 222, 64)
    assert len(rows) == 3 and len(cols) == 4
    for spans, padded in ((rows, 168), (cols, 224)):
        assert spans[0][0] == 0 and spans[-1][1] == padded
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, no overlap
        assert all(start % 4 == 0 and 0 < stop - start <= 64 for start, stop in spans)
    assert tile_grid(1000, 1000, 10)[0] == tile_grid(1000, 1000, 64)[0]  # tiles of 64 at least


@pytest.mark.shared
@pytest.mark.parametrize(
    "shape, tile, piece_rows", [((166, 222), 64, 256), ((130, 197), 64, 256), ((166, 222), 64, 20)]
)
def test_tiled_and_untiled_results_agree(
    networks, embedding, golden_gate, shape, tile, piece_rows, monkeypatch
):
    """Instance-norm statistics are global, so tiles cannot differ in tone: the tiled result is
    the untiled one (and the reference module's) up to float rounding, seams included, also
    where the image is not a multiple of 4 or of the tile, and where the contraction and the
    upsampling run a band of a tile at a time (``PIECE_ROWS`` below the tile)."""
    transformer = networks[1]
    rgb = np.ascontiguousarray(golden_gate[: shape[0], : shape[1]])
    whole = render(transformer, rgb, embedding, tile_size=1024)
    monkeypatch.setattr(tiles, "PIECE_ROWS", piece_rows)
    assert len(renderer._pieces_of((0, tile))) == -(-tile // piece_rows)
    tiled = render(transformer, rgb, embedding, tile_size=tile)
    rows, cols = tile_grid(*shape, tile)
    assert len(rows) >= 3 and len(cols) >= 3
    assert np.abs(tiled - whole).max() < 1e-4
    np.testing.assert_allclose(tiled, reference_forward(transformer, rgb, embedding), atol=1e-4)
    # No seam: the step across each tile boundary is the untiled image's step.
    for _, boundary in rows[:-1]:
        np.testing.assert_allclose(
            tiled[boundary] - tiled[boundary - 1], whole[boundary] - whole[boundary - 1], atol=2e-4
        )
    for _, boundary in cols[:-1]:
        np.testing.assert_allclose(
            tiled[:, boundary] - tiled[:, boundary - 1],
            whole[:, boundary] - whole[:, boundary - 1],
            atol=2e-4,
        )


@pytest.mark.shared
@pytest.mark.parametrize("tile", [None, 64])
def test_bottleneck_sees_the_residual_features_and_what_it_returns_is_upsampled(
    networks, embedding, golden_gate, tile
):
    """``bottleneck`` is given the module's features after the residual blocks (whole or tiled)
    and the render upsamples what it returns, as the module's ``expand`` would."""
    transformer = networks[1]
    t = transformer.transformer
    rgb = np.ascontiguousarray(golden_gate[:130, :197])  # not a multiple of 4
    x = torch.nn.functional.pad(
        torch.from_numpy(rgb).permute(2, 0, 1)[None], (0, 3, 0, 2), mode="reflect"
    )
    with torch.inference_mode():
        features = t.residual(t.contract(x), embedding)
        changed = features.roll(5, dims=3) * 0.5 + 0.1
        expected = t.expand(changed, embedding)[0, :, :130, :197].permute(1, 2, 0).numpy()
    seen = []

    def replace(given):
        seen.append(given.clone())
        return changed.clone()

    result = render(transformer, rgb, embedding, tile_size=tile, bottleneck=replace)
    assert len(seen) == 1 and seen[0].shape == (1, 32, *bottleneck_shape(130, 197))
    np.testing.assert_allclose(seen[0].numpy(), features.numpy(), atol=1e-4)
    np.testing.assert_allclose(result, expected, atol=1e-4)
    unchanged = render(transformer, rgb, embedding, tile_size=tile, bottleneck=lambda f: f)
    np.testing.assert_array_equal(unchanged, render(transformer, rgb, embedding, tile_size=tile))
    with pytest.raises(ValueError, match="bottleneck returned"):
        render(transformer, rgb, embedding, tile_size=tile, bottleneck=lambda f: f[:, :, 1:])


@pytest.mark.shared
@pytest.mark.parametrize("keep_bytes", [0, 100_000])
def test_recomputing_instead_of_keeping_gives_the_same_bits(
    networks, embedding, golden_gate, keep_bytes
):
    """Tiled rendering with less memory for kept convolution outputs (none, or some of them: the
    rest recomputed) gives exactly the result of keeping them all (this image's fit easily)."""
    transformer = networks[1]
    kept = render(transformer, golden_gate, embedding, tile_size=64)
    recomputed = np.empty_like(kept)
    render_into(
        transformer, golden_gate, embedding, recomputed, tile_size=64, keep_bytes=keep_bytes
    )
    np.testing.assert_array_equal(recomputed, kept)


# --- sources and destinations ---------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize("tile", [None, 64])
def test_render_into_memmaps_equals_render(networks, embedding, golden_gate, tmp_path, tile):
    """Content read from and result written to files on disk (np.memmap): the same bits as the
    in-memory render, whole and tiled."""
    transformer = networks[1]
    expected = render(transformer, golden_gate, embedding, tile_size=tile)
    source = np.memmap(tmp_path / "content.f32", np.float32, "w+", shape=golden_gate.shape)
    source[:] = golden_gate
    destination = np.memmap(tmp_path / "result.f32", np.float32, "w+", shape=golden_gate.shape)
    render_into(transformer, source, embedding, destination, tile_size=tile)
    destination.flush()
    del destination
    on_disk = np.fromfile(tmp_path / "result.f32", np.float32).reshape(golden_gate.shape)
    np.testing.assert_array_equal(on_disk, expected)


@pytest.mark.shared
@pytest.mark.parametrize("tile", [None, 64])
def test_render_into_zarr_arrays_equals_render(networks, embedding, golden_gate, tmp_path, tile):
    """Content read from and result written to zarr arrays on disk, chunked across the tiles:
    the same bits as the in-memory render."""
    zarr = pytest.importorskip("zarr")
    transformer = networks[1]
    expected = render(transformer, golden_gate, embedding, tile_size=tile)
    source = zarr.open_array(
        str(tmp_path / "content.zarr"),
        mode="w",
        shape=golden_gate.shape,
        chunks=(50, 70, 3),
        dtype="float32",
    )
    source[:] = golden_gate
    destination = zarr.open_array(
        str(tmp_path / "result.zarr"),
        mode="w",
        shape=golden_gate.shape,
        chunks=(64, 96, 3),
        dtype="float32",
    )
    render_into(transformer, source, embedding, destination, tile_size=tile)
    on_disk = zarr.open_array(str(tmp_path / "result.zarr"), mode="r")[:]
    np.testing.assert_array_equal(on_disk, expected)


@pytest.mark.shared
@pytest.mark.parametrize("keep_bytes", [0, 100_000])
def test_features_on_disk_give_the_same_bits(
    networks, embedding, golden_gate, tmp_path, monkeypatch, keep_bytes
):
    """A tiled render whose quarter-resolution features live in files (``features_on_disk``)
    gives exactly the in-memory result; the files are unnamed (nothing in the temporary
    folder, even while they exist) and each is closed, its space freed, by the end."""
    transformer = networks[1]
    expected = render(transformer, golden_gate, embedding, tile_size=64)
    made = []

    class RecordedFileArray(FileArray):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)
            assert not list(tmp_path.iterdir())

    monkeypatch.setattr(tiles, "FileArray", RecordedFileArray)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = np.empty_like(expected)
    render_into(
        transformer,
        golden_gate,
        embedding,
        result,
        tile_size=64,
        keep_bytes=keep_bytes,
        features_on_disk=True,
    )
    np.testing.assert_array_equal(result, expected)
    rows = len(tile_grid(*golden_gate.shape[:2], 64)[0])
    assert len(made) == rows * 6  # each band from the contraction, then once per residual block
    assert all(band._file.closed for band in made)
    with pytest.raises(ValueError, match="bottleneck needs the features in memory"):
        render_into(
            transformer,
            golden_gate,
            embedding,
            result,
            tile_size=64,
            features_on_disk=True,
            bottleneck=lambda f: f,
        )


def test_render_into_rejects_a_destination_it_cannot_fill(networks, embedding, golden_gate):
    transformer = networks[1]
    for wrong in (np.empty(golden_gate.shape, np.float64), np.empty((166, 222, 4), np.float32)):
        with pytest.raises(ValueError, match=r"float32 of shape \(166, 222, 3\)"):
            render_into(transformer, golden_gate, embedding, wrong)
