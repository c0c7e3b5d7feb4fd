"""Whole stacks through the public API (``napari_nst.stylize_stack`` / ``iter_stack``): every plane
as ``stylize`` makes it with the stack's one window and one style target, numpy, dask and zarr
inputs, a zarr store on disk, and a real dask.distributed LocalCluster (two worker processes),
including a worker that dies mid-job."""

from __future__ import annotations

import os

import numpy as np
import pytest

import napari_nst
from tests.helpers import shared_image, shared_path

QUICK = dict(size=32, steps=3, device="cpu", coarse_to_fine=False)


def _stack(planes: int = 4, height: int = 40, width: int = 48) -> np.ndarray:
    """uint16 planes of one texture, shifted 2 px and 100 levels brighter plane by plane."""
    texture = np.random.default_rng(0).integers(500, 3000, (height, width + 2 * planes))
    return np.stack([texture[:, 2 * i:2 * i + width] + 100 * i
                     for i in range(planes)]).astype(np.uint16)


@pytest.fixture(scope="module")
def style():
    return np.random.default_rng(1).random((40, 40, 3)).astype(np.float32)


def test_each_plane_is_stylize_with_the_stacks_window(random_vgg, style):
    stack = _stack()
    frames = napari_nst.stylize_stack(stack, style, vgg_weights=random_vgg, warm_start=False, **QUICK)
    assert frames.shape == (4, 27, 32, 3) and frames.dtype == np.float32
    window = (float(stack.min()), float(stack.max()))  # the stack's range, not each plane's
    for i in (0, 3):
        alone = napari_nst.stylize(stack[i], style, vgg_weights=random_vgg, content_window=window,
                                   **QUICK)
        np.testing.assert_array_equal(frames[i], alone)
    # one window: the planes' brightness steps survive (per-plane windows would flatten them)
    means = frames.mean(axis=(1, 2, 3))
    assert np.all(np.diff(means) > 0)


def test_dask_input_into_a_zarr_store_with_progress(random_vgg, style, tmp_path):
    import dask.array as da
    import zarr

    stack = _stack(planes=6).reshape(2, 3, 40, 48)  # (t, z, H, W)
    lazy = da.from_array(stack, chunks=(1, 1, 40, 48))
    run = napari_nst.iter_stack(lazy, style, vgg_weights=random_vgg, out=str(tmp_path / "r.zarr"),
                                **QUICK)
    assert run.output.shape == (2, 3, 27, 32, 3) and not np.asarray(run.output).any()  # allocated
    done = [(plane.index, plane.done, plane.total) for plane in run]
    assert sorted(index for index, _, _ in done) == [(t, z) for t in range(2) for z in range(3)]
    assert [d for _, d, _ in done] == list(range(1, 7)) and {t for _, _, t in done} == {6}
    stored = zarr.open_array(str(tmp_path / "r.zarr"), mode="r")
    in_memory = napari_nst.stylize_stack(stack, style, vgg_weights=random_vgg, **QUICK)
    np.testing.assert_array_equal(stored[...], in_memory)  # the same job, numpy in and out


def test_rgb_predict_stack_shares_one_embedding(style, monkeypatch):
    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(shared_path("weights")))
    photo = shared_image("tubingen.jpg", 64)
    stack = np.stack([photo, photo[::-1], photo[:, ::-1]])
    frames = napari_nst.stylize_stack(stack, style, method="predict", size=48, device="cpu")
    for i in range(3):  # 8-bit planes: 0..255 is every plane's window, as for one image
        alone = napari_nst.stylize(stack[i], style, method="predict", size=48, device="cpu")
        np.testing.assert_array_equal(frames[i], alone)
    assert len({frames[i].tobytes() for i in range(3)}) == 3


def test_bad_stacks_say_what_to_do(random_vgg, style):
    with pytest.raises(ValueError, match="too small"):
        napari_nst.stylize_stack(np.zeros((3, 8, 8), np.uint8), style, vgg_weights=random_vgg)
    with pytest.raises(ValueError, match="motion='warp' is not supported"):
        napari_nst.stylize_stack(_stack(), style, motion="warp", vgg_weights=random_vgg)
    with pytest.raises(ValueError, match="file name, not a stack"):
        napari_nst.stylize_stack("stack.tif", style, vgg_weights=random_vgg)


# --- dask.distributed ---------------------------------------------------------------------------

class DiesOnceInAWorker:
    """An array that kills the worker process reading it, once (a file marks that it happened)."""

    def __init__(self, array: np.ndarray, marker: str, home: int):
        self.array, self.marker, self.home = array, marker, home
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, index):
        if os.getpid() != self.home and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)  # the worker dies mid-task, as a killed or crashed process would
        return self.array[index]


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def _one_thread(function):
    """Run ``function`` with torch on one thread, as dask's worker processes run it (they start
    with OMP_NUM_THREADS=1): convolutions then sum in the same order, bit for bit."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return function()
    finally:
        torch.set_num_threads(threads)


def test_cluster_gives_the_local_result_bit_for_bit(cluster, random_vgg, style):
    stack = _stack()
    settings = dict(vgg_weights=random_vgg, **QUICK)
    local = _one_thread(lambda: napari_nst.stylize_stack(stack, style, **settings))
    remote = napari_nst.stylize_stack(stack, style, client=cluster, **settings)
    np.testing.assert_array_equal(remote, local)
    assert napari_nst.iter_stack(stack, style, client=cluster, **settings).chained  # one chain


def test_a_worker_that_dies_is_replaced_and_the_result_complete(cluster, random_vgg, style,
                                                                 tmp_path):
    stack = _stack()
    marker = str(tmp_path / "died")
    dying = DiesOnceInAWorker(stack, marker, os.getpid())
    settings = dict(vgg_weights=random_vgg, warm_start=False, **QUICK)
    result = napari_nst.stylize_stack(dying, style, client=cluster, out=str(tmp_path / "r.zarr"),
                                      **settings)
    assert os.path.exists(marker)  # a worker did die
    expected = _one_thread(lambda: napari_nst.stylize_stack(stack, style, **settings))
    np.testing.assert_array_equal(np.asarray(result), expected)
