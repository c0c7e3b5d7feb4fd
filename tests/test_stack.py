"""Whole stacks through the public API (``napari_nst.stylize_stack`` / ``iter_stack``): every plane
as ``stylize`` makes it with the stack's one window and one style target, numpy, dask and zarr
inputs, a zarr store on disk, and a real dask.distributed LocalCluster (two worker processes),
including a worker that dies mid-job."""

from __future__ import annotations

import os

import numpy as np
import pytest

import napari_nst
from tests.helpers import magenta_weights_dir, shared_image, shared_path

QUICK = dict(
    size=32, steps=3, device="cpu", coarse_to_fine=False, min_working_size=32, init="content"
)


def _stack(planes: int = 4, height: int = 40, width: int = 48) -> np.ndarray:
    """uint16 planes of one texture, shifted 2 px and 100 levels brighter plane by plane."""
    texture = np.random.default_rng(0).integers(500, 3000, (height, width + 2 * planes))
    return np.stack([texture[:, 2 * i : 2 * i + width] + 100 * i for i in range(planes)]).astype(
        np.uint16
    )


@pytest.fixture(scope="module")
def style():
    return np.random.default_rng(1).random((40, 40, 3)).astype(np.float32)


def test_each_plane_is_stylize_with_the_stacks_window(random_vgg, style):
    stack = _stack()
    frames = napari_nst.stylize_stack(
        stack, style, vgg_weights=random_vgg, warm_start=False, temporal_weight=0, **QUICK
    )
    assert frames.shape == (4, 27, 32, 3) and frames.dtype == np.float32
    window = (float(stack.min()), float(stack.max()))  # the stack's range, not each plane's
    for i in (0, 3):
        alone = napari_nst.stylize(
            stack[i], style, vgg_weights=random_vgg, content_window=window, **QUICK
        )
        np.testing.assert_array_equal(frames[i], alone)
    # one window: the planes' brightness steps survive (per-plane windows would flatten them)
    means = frames.mean(axis=(1, 2, 3))
    assert np.all(np.diff(means) > 0)


def test_planes_below_the_working_floor_are_worked_there_and_shrunk(random_vgg, style, monkeypatch):
    """With a floor above size, each plane is worked at the floor and shrunk to size, as
    ``stylize`` does it; the next plane follows the previous one's result at the floor (a link
    at ``size`` would pull it towards an enlarged, blurred result)."""

    linked = []
    from napari_nst.engine import motion as motion_module

    follow = motion_module.follow_motion

    def seen_follow_motion(previous, luma, motion, **options):
        linked.append((previous.image.shape, luma.shape))
        return follow(previous, luma, motion, **options)

    monkeypatch.setattr(motion_module, "follow_motion", seen_follow_motion)
    stack = _stack(planes=2)
    run = dict(QUICK, min_working_size=48, vgg_weights=random_vgg)
    frames = napari_nst.stylize_stack(stack, style, **run)
    assert frames.shape == (2, 27, 32, 3)
    assert linked == [((40, 48, 3), (40, 48))]
    window = (float(stack.min()), float(stack.max()))
    np.testing.assert_array_equal(
        frames[0], napari_nst.stylize(stack[0], style, content_window=window, **run)
    )
    loose = napari_nst.stylize_stack(stack, style, temporal_weight=0, warm_start=False, **run)
    assert np.abs(frames[1] - frames[0]).mean() < np.abs(loose[1] - loose[0]).mean()


def test_dask_input_into_a_zarr_store_with_progress(random_vgg, style, tmp_path):
    import dask.array as da
    import zarr

    stack = _stack(planes=6).reshape(2, 3, 40, 48)  # (t, z, H, W)
    lazy = da.from_array(stack, chunks=(1, 1, 40, 48))
    run = napari_nst.iter_stack(
        lazy, style, vgg_weights=random_vgg, out=str(tmp_path / "r.zarr"), **QUICK
    )
    assert run.output.shape == (2, 3, 27, 32, 3) and not np.asarray(run.output).any()  # allocated
    done = [(plane.index, plane.done, plane.total) for plane in run]
    assert sorted(index for index, _, _ in done) == [(t, z) for t in range(2) for z in range(3)]
    assert [d for _, d, _ in done] == list(range(1, 7)) and {t for _, _, t in done} == {6}
    stored = zarr.open_array(str(tmp_path / "r.zarr"), mode="r")
    in_memory = napari_nst.stylize_stack(stack, style, vgg_weights=random_vgg, **QUICK)
    np.testing.assert_array_equal(stored[...], in_memory)  # the same job, numpy in and out


def test_a_numpy_stack_is_read_in_place_not_copied(style):
    """dask's ``from_array`` copies a numpy array first (a second stack in memory); the run reads
    the caller's stack chunk by chunk instead, and the planes it reads are the stack's."""
    import tracemalloc

    from napari_nst.engine.stack_io import as_dask as _as_dask

    stack = np.random.default_rng(2).integers(0, 256, (3, 600, 700, 3), dtype=np.uint8)
    _as_dask(stack[:1, :64, :64])  # dask imported and warm
    tracemalloc.start()
    try:
        lazy = _as_dask(stack)
        assert tracemalloc.get_traced_memory()[1] < stack.nbytes / 10
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(np.asarray(lazy[1, 100:300, 650:]), stack[1, 100:300, 650:])
    assert lazy.name == _as_dask(stack).name  # the data's own token: the same array, the same name
    assert lazy.name != _as_dask(stack[::-1]).name


def test_closing_a_run_keeps_and_counts_the_plane_under_way(random_vgg, style):
    run = napari_nst.iter_stack(_stack(planes=6), style, vgg_weights=random_vgg, **QUICK)
    planes = iter(run)
    first = next(planes)
    planes.close()  # as napari's Stop does, while the second plane runs
    written = np.asarray(run.output).reshape(6, -1).max(axis=1) > 0
    assert first.done == 1 and run.done == written.sum() and 1 <= run.done < 6
    assert written[: run.done].all()


def test_a_plane_that_ends_after_the_stop_is_counted(random_vgg, style, monkeypatch):
    """The plane under way when the run is closed ends after the Stop: it is written, so it is
    counted (its record is not a task of its own that the Stop could cancel)."""
    import threading
    import time

    from napari_nst.engine import stack_tasks

    second, closing = threading.Event(), threading.Event()
    plane_task = stack_tasks.plane_task
    started = []

    def slow_second_plane(plane, index, *args):
        started.append(index[0])
        if len(started) == 2:  # (dask picks the order) ends well after the run is closed
            second.set()
            assert closing.wait(60)
            time.sleep(0.5)
        return plane_task(plane, index, *args)

    monkeypatch.setattr(stack_tasks, "plane_task", slow_second_plane)
    run = napari_nst.iter_stack(
        _stack(planes=4),
        style,
        vgg_weights=random_vgg,
        temporal_weight=0,
        warm_start=False,
        **QUICK,
    )
    planes = iter(run)
    assert next(planes).done == 1
    assert second.wait(60)
    closing.set()
    planes.close()  # as napari's Stop does, while the second plane runs
    written = np.asarray(run.output).reshape(4, -1).max(axis=1) > 0
    assert len(started) == 2 and written[started].all() and written.sum() == 2
    assert run.done == 2


def test_rgb_predict_stack_shares_one_embedding(style, monkeypatch):
    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(magenta_weights_dir()))
    photo = shared_image("tubingen.jpg", 64)
    stack = np.stack([photo, photo[::-1], photo[:, ::-1]])
    frames = napari_nst.stylize_stack(
        stack, style, method="predict", size=48, device="cpu", temporal_weight=0
    )
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
    with pytest.raises(ValueError, match="temporal_weight=-1: give a number >= 0"):
        napari_nst.stylize_stack(_stack(), style, temporal_weight=-1, vgg_weights=random_vgg)


# --- the link between planes: motion, trust, the temporal term ----------------------------------


def _pan_lumas(shift: int = 3):
    """Two smooth random textures (luma), the second the first moved ``shift`` px left."""
    from scipy.ndimage import gaussian_filter

    wide = gaussian_filter(np.random.default_rng(2).random((48, 72)), 2.0)
    wide = ((wide - wide.min()) / np.ptp(wide)).astype(np.float32)
    return wide[:, :64], wide[:, shift : 64 + shift]


@pytest.mark.parametrize("motion", ["flow", "shift"])
def test_follow_motion_moves_the_previous_result_and_trusts_what_it_saw(motion):
    from napari_nst.engine.motion import Carry, follow_motion

    before, after = _pan_lumas(shift=3)
    result = np.stack([before, 1 - before, before**2], axis=2)  # any image aligned with before
    link = follow_motion(Carry(result, before), after, motion)
    inner = (slice(4, -4), slice(4, -8))
    expected = np.stack([after, 1 - after, after**2], axis=2)
    assert np.abs(link.image[inner] - expected[inner]).mean() < 0.02
    assert link.trust[inner].mean() > 0.95
    assert link.trust[:, -2:].max() == 0.0  # the columns that came into view: nothing to follow


def _quarter(image: np.ndarray):
    """(H, W, C) -> (1, C, H/4, W/4) tensor of 4 x 4 means, as features on the transformer's
    quarter-resolution grid."""
    import torch

    height, width, channels = image.shape
    means = image.reshape(height // 4, 4, width // 4, 4, channels).mean(axis=(1, 3))
    return torch.from_numpy(np.ascontiguousarray(means.transpose(2, 0, 1)))[None]


@pytest.mark.parametrize("shift", [8, 6])
def test_link_moves_quarter_resolution_features_with_the_pixels(shift):
    """Predict's pull on the transformer's features: features of the previous plane, moved by
    the link, are the features of this plane where it saw the same thing (also for motion that
    is not a whole number of feature cells), and their trust is the pixels' averaged."""
    from napari_nst.engine.motion import Carry, follow_motion

    before, after = _pan_lumas(shift=shift)
    channels = lambda luma: np.stack([luma, 1 - luma, luma**2], axis=2)  # noqa: E731
    link = follow_motion(Carry(channels(before), before), after, "shift")
    moved, trust = link.move_features(_quarter(channels(before)))
    expected = _quarter(channels(after))
    assert moved.shape == expected.shape and trust.shape == expected.shape[-2:]
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1 - (shift + 3) // 4))
    error = (moved - expected)[inner].abs().mean()
    unmoved = (_quarter(channels(before)) - expected)[inner].abs().mean()
    # whole cells move exactly; a move between cells interpolates 4 x 4 means of a texture
    assert error < (0.01 if shift % 4 == 0 else 0.3 * unmoved) and unmoved > 0.1
    assert trust[:, -1].max() < 0.5 < trust[1:-1, 1:-3].min()


def test_follow_motion_does_not_trust_what_changed_in_place():
    from napari_nst.engine.motion import Carry, follow_motion

    before, _ = _pan_lumas()
    after = before.copy()
    after[10:26, 10:26] = 1.0 - after[10:26, 10:26]  # a nucleus comes into focus, say
    after[10:26, 10:26] += 0.5
    result = np.repeat(before[..., None], 3, axis=2)
    trust = follow_motion(Carry(result, before), np.clip(after, 0, 1), "none").trust
    assert trust[14:22, 14:22].max() < 0.2 and trust[36:, 36:].min() > 0.9


def test_follow_motion_compares_enlarged_planes_over_their_own_pixels():
    """A microscope's noise is new in every plane, one value per content pixel; a plane enlarged
    4x to its working size has 4x wider noise, which the low-pass must span to trust the
    unchanged structure under it."""
    from skimage.transform import resize

    from napari_nst.engine.motion import Carry, follow_motion

    rng = np.random.default_rng(3)
    structure = resize(rng.random((6, 6)), (24, 24), order=3) * 0.6 + 0.2
    planes = [
        resize(np.clip(structure + rng.normal(0, 0.08, (24, 24)), 0, 1), (96, 96), order=1).astype(
            np.float32
        )
        for _ in range(2)
    ]
    result = np.repeat(planes[0][..., None], 3, axis=2)
    as_drawn = follow_motion(Carry(result, planes[0]), planes[1], "none").trust
    enlarged = follow_motion(Carry(result, planes[0]), planes[1], "none", enlargement=4).trust
    assert enlarged.mean() > 0.8 and enlarged.mean() > as_drawn.mean() + 0.15


def test_blend_with_previous_solves_the_temporal_term():
    from napari_nst.engine.motion import blend_with_previous

    result, moved = np.zeros((4, 4, 3), np.float32), np.ones((4, 4, 3), np.float32)
    trust = np.array([[0.0], [0.5], [1.0], [1.0]], np.float32).repeat(4, axis=1)
    blended = blend_with_previous(result, moved, trust, weight=2.0)
    # argmin |y - 0|^2 + w t |y - 1|^2 = w t / (1 + w t)
    np.testing.assert_allclose(blended[:, 0, 0], [0.0, 0.5, 2 / 3, 2 / 3], rtol=1e-6)


def _consecutive_flicker(frames: np.ndarray, shift: int) -> float:
    return float(
        np.mean(
            [
                np.abs(frames[i][:, :-shift] - frames[i - 1][:, shift:]).mean()
                for i in range(1, len(frames))
            ]
        )
    )


def test_temporal_term_steadies_a_predicted_pan(style, monkeypatch):
    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(magenta_weights_dir()))
    photo = shared_image("golden_gate.jpg", 96)
    pan = np.stack([photo[:64, 3 * i : 3 * i + 64] for i in range(4)])
    options = dict(method="predict", size=64, device="cpu")
    run = napari_nst.iter_stack(pan, style, **options)
    assert run.chained and run.temporal_weight == 1.0  # predict's default
    steady = napari_nst.stylize_stack(pan, style, **options)
    alone = napari_nst.stylize_stack(pan, style, temporal_weight=0, **options)
    assert not napari_nst.iter_stack(pan, style, temporal_weight=0, **options).chained
    np.testing.assert_array_equal(steady[0], alone[0])  # the first plane has nothing to follow
    assert _consecutive_flicker(steady, 3) < 0.7 * _consecutive_flicker(alone, 3)


def test_predict_pulls_a_plane_at_the_features_and_at_the_pixels(style, monkeypatch):
    """Plane 2 of a predicted stack, rebuilt with the readable transformer module: its
    features after the residual blocks pulled towards plane 1's, ``(f + w·t·f₁) / (1 + w·t)``,
    upsampled, and the output pulled the same way towards plane 1's output."""
    import torch

    from napari_nst.engine.methods.predict.magenta_weights import load_model
    from napari_nst.engine.methods.predict.style_embedding import embed
    from napari_nst.engine.motion import Carry, blend_with_previous, follow_motion
    from napari_nst.engine.output import luminance

    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(magenta_weights_dir()))
    photo = shared_image("tubingen.jpg", 96)[:64, :64]
    noise = np.random.default_rng(0).normal(0, 12, photo.shape)
    planes = np.stack([photo, np.clip(photo + noise, 0, 255).astype(np.uint8)])  # a noisy twin
    weight = 1.5
    result = napari_nst.stylize_stack(
        planes,
        style,
        method="predict",
        size=64,
        device="cpu",
        motion="none",
        temporal_weight=weight,
    )
    t = load_model("transformer").transformer
    embedding = embed(load_model("predictor"), style)  # the fixture is float RGB in [0, 1]
    with torch.inference_mode():
        x = torch.from_numpy(planes.astype(np.float32) / 255).permute(0, 3, 1, 2)
        first, second = t.residual(t.contract(x), embedding).split(1)
        lumas = [luminance(p.astype(np.float32) / 255) for p in planes]
        link = follow_motion(Carry(result[0], lumas[0]), lumas[1], "none")
        trust = torch.from_numpy(link.move_features(first)[1])
        pulled = (second + weight * trust * first) / (1 + weight * trust)
        out = t.expand(pulled, embedding)[0].permute(1, 2, 0).numpy()
        alone = t.expand(second, embedding)[0].permute(1, 2, 0).numpy()
    expected = blend_with_previous(out, result[0], link.trust, weight)
    np.testing.assert_allclose(result[1], expected, atol=2e-4)
    assert 0.02 < trust.mean() < 0.98  # partly trusted: the test sees both ends of the pull
    assert np.abs(out - alone).mean() > 0.005  # the pull on the features changed the output


@pytest.mark.parametrize("size", [48, 96])  # planes at their own size, and enlarged twice
def test_optimize_keeps_close_to_the_previous_plane(random_vgg, style, size):
    before, _ = _pan_lumas()
    wide = np.concatenate([before, before[:, ::-1]], axis=1)
    stack = np.stack([wide[:, 2 * i : 2 * i + 48] for i in range(3)])  # 2 px per plane
    options = dict(vgg_weights=random_vgg, warm_start=False, **dict(QUICK, size=size, steps=30))
    loose = napari_nst.stylize_stack(stack, style, temporal_weight=0, **options)
    steady = napari_nst.stylize_stack(stack, style, temporal_weight=1e3, **options)
    np.testing.assert_array_equal(steady[0], loose[0])
    shift = 2 * size // 48  # in result pixels
    assert _consecutive_flicker(steady, shift) < 0.5 * _consecutive_flicker(loose, shift)


def test_temporal_loss_is_zero_on_the_previous_result_and_counts_trusted_pixels():
    import torch

    from napari_nst.engine.methods.optimize.losses import TemporalLoss

    previous = torch.rand(1, 3, 8, 8)
    trust = torch.zeros(1, 1, 8, 8)
    trust[..., :4] = 1.0
    loss = TemporalLoss(previous, trust)
    assert float(loss(previous)) == 0.0
    changed = previous.clone()
    changed[..., 4:] += 0.5  # untrusted pixels: free
    assert float(loss(changed)) == 0.0
    changed[..., :4] += 0.1  # trusted ones: their mean squared difference
    assert float(loss(changed)) == pytest.approx(0.01, rel=1e-4)


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
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
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


@pytest.mark.parametrize("method", ["predict", "universal"])
def test_one_shot_methods_on_the_cluster_give_the_local_result(cluster, style, method, monkeypatch):
    """The style target (embeddings, universal's statistics) travels to the workers; each
    worker loads the networks itself from the weights folder."""
    weights = magenta_weights_dir() if method == "predict" else shared_path("weights")
    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(weights))
    stack = _stack()
    settings = dict(method=method, size=48, device="cpu", temporal_weight=0)
    local = _one_thread(lambda: napari_nst.stylize_stack(stack, style, **settings))
    remote = napari_nst.stylize_stack(stack, style, client=cluster, **settings)
    np.testing.assert_allclose(remote, local, atol=1e-5)


def test_regions_per_plane_on_the_cluster_give_the_local_result(cluster, style, monkeypatch):
    """A label stack travels with each plane's task: the workers style each plane's labels."""
    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(shared_path("weights")))
    stack = _stack()
    labels = np.zeros(stack.shape[:3], np.uint8)
    labels[:, :, : stack.shape[2] // 2] = 1
    labels[-1] = 0
    settings = dict(method="universal", size=48, device="cpu", temporal_weight=0, regions=labels)
    local = _one_thread(lambda: napari_nst.stylize_stack(stack, {1: style}, **settings))
    remote = napari_nst.stylize_stack(stack, {1: style}, client=cluster, **settings)
    np.testing.assert_allclose(remote, local, atol=1e-5)
    low, high = float(stack.min()), float(stack.max())  # the stack-wide window
    as_content = (stack.astype(np.float32) - low) / (high - low)
    assert np.abs(remote[-1][..., 0] - as_content[-1]).max() < 1e-4  # no label: kept
    assert np.abs(remote[0][..., 0] - as_content[0])[:, :20].mean() > 0.05  # label 1: styled


def test_a_large_numpy_stack_goes_to_the_cluster_outside_the_graph(cluster, vgg_file, style):
    import warnings

    texture = np.random.default_rng(3).integers(0, 4000, (1200, 1210))
    stack = np.stack([texture[:, i : i + 1200] for i in range(4)]).astype(np.uint16)  # 11.5 MB
    # the weights as a file: a VGG module in the settings would itself make the graph large
    settings = dict(vgg_weights=str(vgg_file), temporal_weight=0, warm_start=False, **QUICK)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*large graph.*")  # dask's warning, as an error
        remote = napari_nst.stylize_stack(stack, style, client=cluster, **settings)
    local = _one_thread(lambda: napari_nst.stylize_stack(stack, style, **settings))
    np.testing.assert_array_equal(remote, local)


def test_a_worker_that_dies_is_replaced_and_the_result_complete(
    cluster, random_vgg, style, tmp_path
):
    stack = _stack()
    marker = str(tmp_path / "died")
    dying = DiesOnceInAWorker(stack, marker, os.getpid())
    settings = dict(vgg_weights=random_vgg, warm_start=False, temporal_weight=0, **QUICK)
    result = napari_nst.stylize_stack(
        dying, style, client=cluster, out=str(tmp_path / "r.zarr"), **settings
    )
    assert os.path.exists(marker)  # a worker did die
    expected = _one_thread(lambda: napari_nst.stylize_stack(stack, style, **settings))
    np.testing.assert_array_equal(np.asarray(result), expected)


# --- planes too big for memory -------------------------------------------------------------------


class ReadRecorder:
    """An array that records the shape of every block read from it (with ``phase``, also
    ``phase["now"]`` at the time: (shape, now))."""

    def __init__(self, array: np.ndarray, phase: dict | None = None):
        self.array, self.reads, self.phase = array, [], phase
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, index):
        block = self.array[index]
        self.reads.append(block.shape if self.phase is None else (block.shape, self.phase["now"]))
        return block


@pytest.mark.parametrize("colour", [False, True])
def test_huge_planes_stream_tile_by_tile_without_seams(style, monkeypatch, tmp_path, colour):
    import zarr

    from napari_nst.engine import stack_io
    from napari_nst.engine.methods.predict import ghiasi as predict_module

    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(magenta_weights_dir()))
    photo = shared_image("tubingen.jpg", 300)  # 300 x 225
    planes = np.stack([photo, photo[::-1]]).astype(np.uint16) * 200  # uint16, RGB
    if not colour:
        planes = planes[..., 1]
    options = dict(
        method="predict",
        size=300,
        tile_size=128,
        device="cpu",
        output_range="content",
        style_strength=0.5 if colour else 1.0,
    )
    whole = napari_nst.stylize_stack(
        planes, style, out=str(tmp_path / "whole.zarr"), temporal_weight=0, **options
    )
    monkeypatch.setattr(predict_module, "STREAM_PIXELS", 100 * 100)
    monkeypatch.setattr(predict_module, "STREAM_BLOCK", 64)  # scratch and output blocks
    monkeypatch.setattr(stack_io, "CHUNK_SIDE", 64)  # input tiles and output chunks
    source = ReadRecorder(planes)
    run = napari_nst.iter_stack(source, style, out=str(tmp_path / "streamed.zarr"), **options)
    assert run.streamed and not run.chained
    records = list(run)
    assert {record.info["tiled"] for record in records} == {"streamed from and to zarr"}
    streamed = zarr.open_array(str(tmp_path / "streamed.zarr"), mode="r")
    assert streamed.dtype == np.uint16 and streamed.shape == whole.shape
    # the same picture: tiles with the global statistics, no seams (rounding to uint16 only)
    difference = np.abs(streamed[...].astype(np.int32) - whole[...].astype(np.int32))
    assert difference.max() <= 1 * 200 and difference.mean() < 2
    # never a whole plane read at once: tiles (with their halo) and the band of the stack window;
    # with style_strength < 1 also the content's own embedding's copy at 1024 px at most, here
    # the whole (small) plane, once per plane
    sides = [
        int(np.prod(shape[-3 if colour else -2 :][:2])) for shape in source.reads if len(shape) >= 2
    ]
    assert max(side for side in sides if side < 300 * 225) < 300 * 225 / 3
    assert sides.count(300 * 225) == (2 if colour else 0)


def test_huge_planes_resized_stream_through_files_too(style, monkeypatch, tmp_path):
    """A plane whose working size is smaller than the plane but still too big for memory is
    resized a band of rows at a time into a temporary file, then rendered through files: the
    picture of the in-memory run (rounding only), and the plane never read whole."""
    import zarr

    from napari_nst.engine import image_values, stack_io
    from napari_nst.engine.methods.predict import ghiasi as predict_module

    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(magenta_weights_dir()))
    photo = shared_image("tubingen.jpg", 300)  # 300 x 225
    planes = np.stack([photo, photo[::-1]]).astype(np.uint16) * 200
    options = dict(method="predict", size=200, tile_size=128, device="cpu", output_range="content")
    whole = napari_nst.stylize_stack(
        planes, style, out=str(tmp_path / "whole.zarr"), temporal_weight=0, **options
    )
    assert whole.shape == (2, 150, 200, 3)
    monkeypatch.setattr(predict_module, "STREAM_PIXELS", 100 * 100)
    monkeypatch.setattr(stack_io, "CHUNK_SIDE", 64)
    monkeypatch.setattr(image_values, "BLOCK_VALUES", 300 * 3 * 20)  # bands of 20 rows
    source = ReadRecorder(planes)
    run = napari_nst.iter_stack(source, style, out=str(tmp_path / "streamed.zarr"), **options)
    assert run.streamed
    assert {record.info["tiled"] for record in run} == {"streamed from and to zarr"}
    streamed = zarr.open_array(str(tmp_path / "streamed.zarr"), mode="r")
    assert streamed.shape == whole.shape and streamed.dtype == np.uint16
    difference = np.abs(streamed[...].astype(np.int32) - whole[...].astype(np.int32))
    assert difference.max() <= 200 and difference.mean() < 2
    plane_reads = [int(np.prod(shape[-3:-1])) for shape in source.reads if len(shape) >= 3]
    assert plane_reads and max(plane_reads) <= 300 * 40  # bands, not the 300 x 225 plane


@pytest.mark.parametrize("given", ["array", "dask"])
def test_a_streamed_plane_is_read_by_tiles(style, monkeypatch, tmp_path, given):
    """A plane that streams is read as the renderer goes, never whole up front (dask computes
    a dask array found among a task's arguments, also inside a dataclass, before the task
    starts): from an array at hand exactly the tiles (with their halos, about 1.3 times the
    plane) and once more as the result is finished block by block; from a dask array chunk by
    chunk."""
    import dask.array as da

    from napari_nst.engine import stack_io
    from napari_nst.engine.methods.predict import ghiasi as predict_module

    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(magenta_weights_dir()))
    plane = np.tile(shared_image("tubingen.jpg", 400), (2, 2, 1))[:600, :800]  # uint8 RGB
    monkeypatch.setattr(predict_module, "STREAM_PIXELS", 100 * 100)
    monkeypatch.setattr(predict_module, "STREAM_BLOCK", 128)
    monkeypatch.setattr(stack_io, "CHUNK_SIDE", 128)
    phase = {"now": "before"}
    render_into = predict_module.render_into

    def rendering(*args, **kwargs):  # the real renderer, noting when it runs
        phase["now"] = "rendering"
        try:
            return render_into(*args, **kwargs)
        finally:
            phase["now"] = "after"

    monkeypatch.setattr(predict_module, "render_into", rendering)
    source = ReadRecorder(plane[None], phase)
    stack = (
        source if given == "array" else da.from_array(source, chunks=(1, 128, 128, 3), name=False)
    )  # no cached chunks
    run = napari_nst.iter_stack(
        stack,
        style,
        out=str(tmp_path / "r.zarr"),
        method="predict",
        size=800,
        tile_size=128,
        device="cpu",
    )
    assert run.streamed
    list(run)
    read = {
        now: sum(int(np.prod(shape)) for shape, when in source.reads if when == now) / plane.size
        for now in ("before", "rendering", "after")
    }
    assert read["before"] < 0.05 and read["rendering"] >= 1.0, read
    if given == "array":
        assert 1.2 < read["rendering"] < 1.4 and read["after"] == 1.0, read
        assert max(int(np.prod(shape)) for shape, _ in source.reads) < plane.size / 4
    assert np.asarray(run.output[0, 300:400, 400:500]).std() > 0.02  # it was stylised


def test_a_warm_start_starts_every_scale_where_it_is_trusted(random_vgg):
    """Coarse-to-fine would blur the previous plane's texture away on its way up from the
    smallest scale: every scale starts from the warm image where it is trusted. Adam with the
    smallest step barely moves the pixels, so the result shows where the last scale started."""
    import torch

    from napari_nst.engine.images import prepare_image
    from napari_nst.engine.methods.optimize.gatys import optimize
    from napari_nst.settings import Settings

    rng = np.random.default_rng(5)
    content = prepare_image(rng.random((64, 64, 3)).astype(np.float32))
    texture = rng.random((64, 64, 3)).astype(np.float32)
    trust = np.zeros((64, 64), np.float32)
    trust[:, :32] = 1.0
    settings = Settings(
        size=64,
        min_size=32,
        min_working_size=64,
        steps=3,
        optimizer="adam",
        coarse_to_fine=True,
        init="content",
        learning_rate=1e-5,
        device="cpu",
        vgg_weights=random_vgg,
    )
    *_, last = optimize(
        content, [content], settings, torch.device("cpu"), initial=texture, warm=(texture, trust)
    )
    np.testing.assert_allclose(last.image[:, :28], texture[:, :28], atol=1e-3)
    # untrusted: the coarse scales' result, upsampled (the texture blurred)
    assert np.abs(last.image[:, 36:] - texture[:, 36:]).mean() > 0.1
