"""Whole stacks: every 2-D plane of an array with leading axes (z, t, positions), consistent from
plane to plane, read plane by plane (inputs bigger than memory) and run on dask.

A stack is an array whose last axes are one plane as the input contract reads it (``images``):
(..., H, W) grayscale or (..., H, W, 1|3|4). Numpy, dask and zarr arrays (and other array-likes
that slice, such as a tifffile memmap) are read one plane at a time; nothing here materialises
the whole input. The result has the stack's leading axes over planes as ``stylize`` returns them
(H', W', 3|4) at the working size, in a numpy array, or in a zarr array for results bigger than
memory (``out``).

Consistency from plane to plane:

* one style target for the whole stack: predict embeds the style once, optimize computes the
  style Gram matrices once (``optimize.style_targets``), and every plane uses them;
* one intensity window for the whole stack: ``content_window`` (napari's contrast limits), else
  the stack's own percentiles (min..max by default), computed chunk by chunk with dask -- never
  per plane, which would make the brightness flicker;
* each plane follows the previous plane's result along ``chain_axis``, moved onto it by the
  motion between the two contents (``motion``: scikit-image's optical flow, one global shift by
  cross-correlation, or none), where that motion can be trusted: a temporal term (Ruder et al. 2016's
  short-term consistency) pulls the result towards it -- optimize, at its working size, adds it
  to its loss and starts every coarse-to-fine scale from it (``warm_start``); predict solves the same pull in closed form twice, on the
  transformer's features after its residual blocks (which the upsampling layers then render
  crisp) and on its output pixels (motion finer than the features' 4-px grid) -- so textures
  stay where they were instead of flickering.

A plane too big to hold its result in memory (a working size of more than
``predict.STREAM_PIXELS``), which predict stylises at its own size or smaller into a zarr store,
is read from the input a tile at a time (or, to be resized, a band of rows at a time into a
temporary file) and rendered through files by the tiled renderer (``predict.predict_streamed``:
global statistics, no seams), then finished into the output a block at a time; it has no
temporal term.

How this maps onto dask: the job is one dask graph. A task computes the style target once; each
plane is a task that reads its plane (a dask slice of the input: only that plane's chunks),
stylises it and writes it to the output. Planes that follow the previous one form a *chain*
(a task depends on its predecessor's result), so a chain runs in order, while different chains --
and all planes with ``temporal_weight=0`` and no warm start, which then depend on nothing but the
style target -- are independent tasks that run in parallel where there are workers. Without a
client the graph runs on dask's local threaded scheduler in this process, one plane at a time
(torch already uses every core for one plane); with a ``dask.distributed`` client the planes
become tasks on the cluster: each worker process loads the networks once (the engine's
per-process caches) and writes its planes to the zarr store itself; a worker that dies is
replaced by dask, which reruns its tasks.
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..settings import Settings, make_settings
from .images import MIN_SIDE, PreparedImage, finish_image, luminance, output_dtype, \
    output_image, prepare_image, working_shape

#: How the motion between two planes is undone before a plane starts from its predecessor's
#: result: dense optical flow (TV-L1), one global shift (cross-correlation), or not at all.
MOTIONS = ("flow", "shift", "none")
#: Longer side at which the motion between two planes is estimated (TV-L1 takes about 0.7 s at
#: 256 px and 2.8 s at 512 px on 2 cores; motion between planes is smooth enough to scale up).
FLOW_SIDE = 256
#: Difference of two contents (in the window's units, 0..1) at which a pixel of the previous
#: plane's result is no longer trusted for this one (``follow_motion``).
MISMATCH = 0.1
#: Scale of the Gaussian low-pass applied to both contents before they are compared, in the
#: content's own pixels (a plane enlarged to its working size has its noise enlarged too).
MISMATCH_SIGMA = 2.0
#: Default weight of the temporal term for each method (``iter_stack``'s ``temporal_weight``).
#: Predict: against the prediction itself, at the features and at the pixels (1: halfway to the
#: previous plane where it is trusted). Optimize: the mean squared pixel difference
#: (``losses.TemporalLoss``) weighs as much as the content term. Checked with
#: ``benchmarks/bench_flicker.py`` (a pan and a nuclei z-stack): 1 keeps the style score within
#: 0.01 of planes run on their own in both (on the nuclei by a hair: -0.010 for both methods,
#: at flicker 0.50x and 0.42x); stronger pulls cost the nuclei more style (BENCHMARKS.md).
TEMPORAL_WEIGHTS = {"predict": 1.0, "optimize": 1.0}
#: Side of the zarr chunks of a result (a plane is split into tiles of at most this size).
CHUNK_SIDE = 1024
#: Bins of the histogram that stack-wide percentiles are read from (exact for integer data whose
#: range spans at most this many levels).
HISTOGRAM_BINS = 1 << 16


@dataclass(frozen=True)
class PlaneDone:
    """One finished plane of a stack run: its index over the leading axes, how many planes are
    done of how many, the seconds the plane took and the seconds since the run started, its
    provenance (method, device, weights), and the output array that holds it (``image``)."""

    index: tuple
    done: int
    total: int
    seconds: float
    elapsed: float
    info: dict = field(default_factory=dict)
    output: Any = field(default=None, repr=False, compare=False)

    @property
    def image(self) -> np.ndarray:
        """The plane's result as it is in the output (read back from a zarr store)."""
        return np.asarray(self.output[self.index])


@dataclass(frozen=True)
class _Job:
    """What every plane task needs besides its plane: the settings (with the stack's window),
    the stack options, and where results go (None: back to the caller)."""

    settings: Settings
    warm_start: bool
    motion: str
    temporal_weight: float
    writer: Any = None


@dataclass
class _PlaneRecord:
    index: tuple
    seconds: float
    info: dict
    image: np.ndarray | None = None  # None when the task wrote it to the output itself


class StackRun:
    """A validated stack job, returned by ``iter_stack``: ``output`` is allocated before any plane
    runs (a napari layer can show it from the start); iterating runs the job and yields a
    ``PlaneDone`` per finished plane, in the order they finish. Closing the iteration early
    (``break``, ``close()``, napari's Stop) stops the job after the planes under way; the planes
    done stay in ``output``. A run can be iterated once. ``done`` counts the planes written to
    ``output``, including those that were under way when the iteration was closed and finished
    after it (they are kept too).
    """

    def __init__(self, lazy, styles, settings: Settings, output, *, channels: bool,
                 warm_start: bool, motion: str, temporal_weight: float, chain_axis: int,
                 client, percentiles, source=None):
        self.output = output
        self.leading_shape = tuple(lazy.shape[:_leading(lazy.shape)])
        self.total = math.prod(self.leading_shape)
        self.settings = settings
        self._lazy, self._styles, self._channels = lazy, styles, channels
        self._warm_start, self._motion, self._chain_axis = warm_start, motion, chain_axis
        self.temporal_weight = temporal_weight
        self._client, self._percentiles = client, percentiles
        # what a streamed plane's tiles are read from: the caller's array where it is at hand
        # (a numpy, zarr or other sliceable array read in this process: exactly the tile, where
        # dask would read every chunk the tile touches), else the dask array
        self._source = source if source is not None else lazy
        self._started = False
        self.done = 0
        from . import predict

        plane = lazy.shape[len(self.leading_shape):]
        # planes predict renders through files (``predict.streams``) at their own size or
        # smaller are read from the input a tile (or a band) at a time too, and stand on their
        # own (no temporal term)
        working = working_shape(plane[0], plane[1], settings.size)
        self.streamed = (settings.method == "predict" and _is_zarr(output)
                         and not (channels and plane[-1] == 4)
                         and working[0] <= plane[0] and working[1] <= plane[1]
                         and predict.streams(plane[0], plane[1], settings))
        if self.streamed:
            self.temporal_weight = 0.0

    @property
    def warm_start(self) -> bool:
        """Whether each plane starts from its predecessor's moved result (optimize only)."""
        return self._warm_start and self.settings.method == "optimize"

    @property
    def chained(self) -> bool:
        """Whether planes depend on their predecessor's result (a warm start or a temporal
        term), so that each chain runs in order."""
        return bool(self.leading_shape) and (self.warm_start or self.temporal_weight > 0)

    def chains(self) -> list[list[tuple]]:
        """The planes' indices as chains: each chain runs in order, chains are independent."""
        indices = list(np.ndindex(*self.leading_shape))
        if not self.chained:
            return [[index] for index in indices]
        groups: dict[tuple, list[tuple]] = {}
        for index in indices:
            groups.setdefault(index[:self._chain_axis] + index[self._chain_axis + 1:], []).append(index)
        return list(groups.values())

    def __iter__(self) -> Iterator[PlaneDone]:
        if self._started:
            raise RuntimeError("a stack run can be iterated once; call iter_stack again")
        self._started = True
        return self._run()

    def _run(self) -> Iterator[PlaneDone]:
        start = time.perf_counter()
        settings = self.settings
        if settings.content_window is None:
            window = stack_window(self._lazy, self._channels, self._percentiles, self._client)
            if window is not None:
                settings = settings.replace(content_window=window)
            elif self.streamed:  # no pass over a huge plane: uint8 or float RGB in 0..1
                settings = settings.replace(
                    content_window=(0.0, 255.0) if self._lazy.dtype == np.uint8 else (0.0, 1.0))
        self.settings = settings
        writer = self.output if _is_zarr(self.output) or self._client is None else None
        job = _Job(settings, self.warm_start, self._motion,
                   self.temporal_weight if self.chained else 0.0, writer)
        records = self._graph(job)
        execute = _run_distributed if self._client is not None else _run_local
        for record in execute(records, self._client, self._keep):
            self._keep(record)
            yield PlaneDone(record.index, self.done, self.total, record.seconds,
                            time.perf_counter() - start, record.info, self.output)

    def _keep(self, record: _PlaneRecord) -> None:
        """A finished plane into the output (also one that finished after the iteration was
        closed: the planes under way at a Stop are kept too)."""
        if record.image is not None:
            self.output[record.index] = record.image
        self.done += 1

    def _graph(self, job: _Job) -> list:
        """One delayed record per plane: the style target once, then the planes (chained where
        they start from their predecessor)."""
        import dask

        token = uuid.uuid4().hex[:8]
        target = dask.delayed(_style_target, pure=False)(
            self._styles, job.settings, dask_key_name=f"napari-nst-style-{token}")
        records = []
        for chain in self.chains():
            previous = None
            for index in chain:
                name = "-".join(map(str, index)) or "0"
                plane = _PlaneSource(self._source, index) if self.streamed else self._lazy[index]
                task = dask.delayed(_plane_task, nout=2)(
                    plane, index, target, job, previous,
                    dask_key_name=f"{_PLANE_TASK}{token}-{name}")
                records.append(task[0])
                previous = task[1]
        return records


#: The start of the dask key of every plane's task (which returns (record, carry)).
_PLANE_TASK = "napari-nst-plane-"


def _run_local(records: list, client=None, late=None) -> Iterator[_PlaneRecord]:
    """The graph on dask's threaded scheduler (one worker thread) in a background thread; records
    come back through a queue as each plane finishes. Closing stops before the next task; the
    planes under way finish and go to ``late``."""
    import dask

    results: queue.Queue = queue.Queue()
    stop = threading.Event()
    finished = object()

    class _Stopped(Exception):
        pass

    def pretask(key, dsk, state):
        if stop.is_set():
            raise _Stopped

    def posttask(key, result, dsk, state, worker_id):
        # a record as soon as its plane's task ends, which wrote the plane: the task that
        # takes the record out of its result is one of its own, which a Stop could prevent
        if isinstance(key, str) and key.startswith(_PLANE_TASK):
            results.put(result[0])

    def compute():
        try:
            # our callbacks passed explicitly: with dask's global ones (``with Callback()``) the
            # scheduler swaps ``Callback.active`` out for the whole run, from this thread, under
            # napari, which registers its own cache there while it slices dask layers
            # (start, start_state, pretask, posttask, finish), dask's documented tuple form
            dask.compute(*records, scheduler="threads", num_workers=1,
                         callbacks=[(None, None, pretask, posttask, None)])
            results.put(finished)
        except _Stopped:
            results.put(finished)
        except BaseException as error:  # handed to the consumer's thread
            results.put(error)

    thread = threading.Thread(target=compute, name="napari-nst-stack", daemon=True)
    thread.start()
    try:
        while (item := results.get()) is not finished:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
        while not results.empty():
            item = results.get()
            if isinstance(item, _PlaneRecord) and late is not None:
                late(item)


def _run_distributed(records: list, client, late=None) -> Iterator[_PlaneRecord]:
    """The graph on a ``dask.distributed`` cluster; records as their planes finish. Closing
    cancels the planes not done; those finished but not yet handed out go to ``late``."""
    from distributed import as_completed

    futures = client.compute(records)
    handed = set()
    try:
        for future in as_completed(futures):
            record = future.result()
            handed.add(future.key)
            future.release()
            yield record
    finally:
        finished = [f.result() for f in futures if f.key not in handed and f.status == "finished"]
        client.cancel(futures)
        for record in finished if late is not None else ():
            late(record)


# --- the tasks -----------------------------------------------------------------------------------

@dataclass
class _Target:
    """The style target of a whole stack: the prepared styles, and the style embeddings
    (predict) or the style Gram matrices of every scale (optimize), on the CPU so that they can
    travel between worker processes."""

    styles: list
    embeddings: list | None = None
    grams: dict | None = None


def _style_target(styles: list[PreparedImage], settings: Settings) -> _Target:
    """The style target, computed once per run (one task)."""
    import torch

    device = _device(settings)
    with torch.inference_mode(False):
        if settings.method == "predict":
            from .predict import load_networks, style_embeddings_of

            predictor, _ = load_networks(settings, device)
            embeddings = style_embeddings_of(predictor, styles, settings)
            return _Target(styles, embeddings=[e.cpu() for e in embeddings])
        from .optimize import style_targets

        grams = style_targets(styles, settings, device)
        return _Target(styles, grams={size: [[g.cpu() for g in layers] for layers in per_style]
                                      for size, per_style in grams.items()})


def _device(settings: Settings):
    from ._triton_guard import guard_triton_import

    guard_triton_import()
    from .devices import resolve_device

    return resolve_device(settings.device)


def _plane_task(plane, index: tuple, target: _Target, job: _Job, previous: Carry | None):
    """Stylise one plane: (its record, what the next plane of its chain gets: a ``Carry`` or
    None). ``previous``: the ``Carry`` of the plane before it in its chain.

    Writes the result to ``job.writer`` when there is one (the record then carries no image)."""
    import torch

    start = time.perf_counter()
    settings = job.settings
    device = _device(settings)
    if isinstance(plane, _PlaneSource):
        info = {"method": settings.method, "device": str(device),
                **_predict_streamed(plane, index, target, job, device)}
        return _PlaneRecord(index, time.perf_counter() - start, info), None
    label = "content plane " + (str(list(index)) if index else "")
    content = prepare_image(plane, settings.content_window, name=label.strip(),
                            size=settings.size)
    del plane
    plane_task = _predict_plane if settings.method == "predict" else _optimize_plane
    with torch.inference_mode(False):
        raw, info = plane_task(content, target, job, device, previous)
    info = {"method": settings.method, "device": str(device), **info}
    # optimize works at its working size (at least ``min_working_size``); the plane's result is
    # at ``size``, as a single run's; the next plane links to the working-size raw result
    result = _resized(raw.image, working_shape(*content.shape[:2], settings.size))
    image = output_image(finish_image(result, content, settings.keep_colors), content,
                         settings.output_range)
    record = _PlaneRecord(index, time.perf_counter() - start, info)
    if job.writer is not None:
        job.writer[index] = image
    else:
        record.image = image
    return record, raw if job.temporal_weight > 0 or job.warm_start else None


class _PlaneSource:
    """A plane handed to its task unread: dask computes the collections among a task's
    arguments before the call, also inside lists, dicts and dataclasses, which would read the
    whole plane into memory; a plain object keeps it lazy, so that the task reads it tile by
    tile."""

    __slots__ = ("stack", "index")

    def __init__(self, stack, index: tuple):
        self.stack, self.index = stack, index

    def plane(self):
        """The plane as an array-like that reads only what is indexed (``_PlaneView``), or the
        dask array's plane (lazy itself)."""
        if hasattr(self.stack, "dask"):
            return self.stack[self.index]
        return _PlaneView(self.stack, self.index)


class _PlaneView:
    """Plane ``index`` of a stack, read only where it is indexed (``stack[index]`` would read
    the whole plane from a zarr array): what ``images.prepare_lazy`` needs of a plane -- its
    shape and dtype, ``[rows, cols]`` blocks, and ``[..., 0]`` for a single channel."""

    def __init__(self, stack, index: tuple, channel: int | None = None):
        self._stack, self._index, self._channel = stack, tuple(index), channel
        shape = tuple(stack.shape[len(self._index):])
        self.shape = shape[:-1] if channel is not None else shape
        self.ndim, self.dtype = len(self.shape), np.dtype(stack.dtype)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if len(key) == 2 and key[0] is Ellipsis and self._channel is None:
            return _PlaneView(self._stack, self._index, key[1])
        channel = () if self._channel is None else (slice(None),) * (self.ndim - len(key)) \
            + (self._channel,)
        return np.asarray(self._stack[(*self._index, *key, *channel)])


def _predict_streamed(source: _PlaneSource, index: tuple, target: _Target, job: _Job,
                      device) -> dict:
    """Predict a plane too big for memory (``predict.predict_streamed``): read from the input a
    tile at a time, written to the output a block at a time. Returns the provenance."""
    import torch

    from .images import prepare_lazy
    from .predict import load_networks, predict_streamed

    settings = job.settings
    content = prepare_lazy(source.plane(), settings.content_window,
                           name="content plane " + str(list(index)), size=settings.size)
    predictor, transformer = load_networks(settings, device)
    with torch.inference_mode():
        predict_streamed(content, [e.to(device) for e in target.embeddings], predictor,
                         transformer, settings, job.writer, index)
    return {"weights": f"{predictor.weights_identity} + {transformer.weights_identity}",
            "precision": "float32", "tiled": "streamed from and to zarr"}


def _link(previous: Carry | None, luma: np.ndarray, content: PreparedImage,
          job: _Job) -> Link | None:
    """The previous plane's result moved onto this plane (whose ``content`` has the luma
    ``luma`` at the working size) and its trust, or None."""
    if previous is None:
        return None
    return follow_motion(previous, luma, job.motion,
                         enlargement=luma.shape[0] / content.shape[0])


def _predict_plane(content: PreparedImage, target: _Target, job: _Job, device,
                   previous: Carry | None) -> tuple[Carry, dict]:
    """The plane's raw prediction (blended with the previous plane's where a temporal weight is
    set) and its provenance."""
    import torch

    from .predict import load_networks, stylize_one, working_content

    settings = job.settings
    predictor, transformer = load_networks(settings, device)
    embeddings = [e.to(device) for e in target.embeddings]
    working = working_content(content, settings)  # resized once, for the prediction and the link
    weight = job.temporal_weight
    luma = luminance(working.rgb) if weight > 0 else None
    link = _link(previous, luma, content, job) if weight > 0 else None
    carried = {}

    def pull_features(features):
        """The temporal pull on the features after the residual blocks (kept for the next
        plane): the upsampling layers render the pulled features as crisply as any, where a
        pull on the pixels alone averages two textures into a paler one."""
        if link is not None and previous.features is not None:
            moved, trust = link.move_features(previous.features)
            pulled = blend_with_previous(_channels_last(features), _channels_last(moved),
                                         trust, weight)
            features = torch.from_numpy(pulled).permute(2, 0, 1)[None].to(features.device)
        carried["features"] = features.cpu().clone()
        return features

    with torch.inference_mode():  # raw: grayscale and keep_colors are applied once, at the end
        result = stylize_one(working, embeddings, predictor, transformer, settings, finish=False,
                             bottleneck=pull_features if weight > 0 else None)
    if link is not None:  # and on the pixels: motion finer than the features' 4-px grid
        result = blend_with_previous(result, link.image, link.trust, weight)
    info = {"weights": f"{predictor.weights_identity} + {transformer.weights_identity}",
            "precision": "float32"}
    return Carry(result, luma, carried.get("features")), info


def _resized(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An (H, W, 3) image in [0, 1] at ``shape``, resized as a run resizes its result."""
    if tuple(image.shape[:2]) == tuple(shape):
        return image
    import torch

    from .optimize import to_image, to_tensor

    return to_image(to_tensor(image, shape, torch.device("cpu")))


def _channels_last(features) -> np.ndarray:
    """(1, C, h, w) tensor -> (h, w, C) float32 array."""
    return features[0].permute(1, 2, 0).cpu().numpy()


def _optimize_plane(content: PreparedImage, target: _Target, job: _Job, device,
                    previous: Carry | None) -> tuple[Carry, dict]:
    """The plane's raw optimised result at the working size (``Settings.working_size``) and its
    provenance.

    The optimisation runs on the content as plain RGB, so that its raw result (before grayscale,
    ``keep_colors`` and ``output_range`` are applied, as a single run applies them to its final
    image) can start the next plane. With a previous plane, it starts from that plane's moved
    result (``warm_start``) and keeps close to it where it is trusted (the temporal term)."""
    from .optimize import optimize

    settings = job.settings
    # at the working size: the link to the previous plane is made where the optimisation works
    # (a link made at a smaller ``size`` pulls towards an enlarged, blurred result)
    working_size = settings.working_size()
    working = content.resized(working_shape(*content.shape[:2], working_size)).rgb
    luma = luminance(working)
    link = _link(previous, luma, content, job)
    initial = None
    if settings.init == "predict":
        from .predict import predict_image

        initial = _resized(predict_image(content, target.styles, settings, device),
                           working.shape[:2])
    if link is not None and job.warm_start:
        # the moved result where it is trusted; elsewhere (what came into view, what changed)
        # the start a plane on its own would have, not the moved result's stretched edges
        moved, trust = link.image, link.trust
        fresh = initial
        if fresh is None:
            fresh = (np.random.default_rng(settings.seed).random(moved.shape, np.float32)
                     if settings.init == "noise" else working)
        initial = trust[..., None] * moved + (1.0 - trust[..., None]) * fresh
    temporal = (link.image, link.trust) if link is not None and job.temporal_weight > 0 else None
    warm = (link.image, link.trust) if link is not None and job.warm_start else None
    plain = dataclasses.replace(content, values=content.rgb, grayscale=False, alpha=None)
    plain_settings = settings.replace(size=working_size, emit_every=settings.steps,
                                      keep_colors=False, output_range="unit")
    final = None
    for final in optimize(plain, target.styles, plain_settings, device, initial=initial,
                          targets=target.grams, temporal=temporal,
                          temporal_weight=job.temporal_weight, warm=warm):
        pass
    return Carry(final.image, luma), final.info


# --- motion and the link between planes ----------------------------------------------------------

@dataclass
class Carry:
    """What a plane hands to the next plane of its chain: its raw result (H, W, 3) in [0, 1] at
    the size its method works at, its content's luma at the same size and, for predict, the
    transformer's features after its residual blocks (1, C, h, w; ``renderer.bottleneck_shape``)."""

    image: np.ndarray
    luma: np.ndarray
    features: Any = None


@dataclass
class Link:
    """The previous plane's result moved onto this plane (``image``), how far each pixel of it
    can be trusted (``trust``, (H, W) in [0, 1]), and where each pixel of this plane lies in the
    previous one (``coords``, (2, H, W) rows and columns)."""

    image: np.ndarray
    trust: np.ndarray
    coords: np.ndarray

    def move_features(self, features) -> tuple[Any, np.ndarray]:
        """Features (1, C, h, w) on the transformer's quarter-resolution grid of the previous
        plane (its image padded to multiples of 4) moved the same way, and their trust (h, w).

        The motion and the trust are averaged over each feature's 4 x 4 pixels (the padding
        repeats the image's edge); features are sampled bilinearly, the edge repeated beyond."""
        import torch
        import torch.nn.functional as F

        rows, cols = features.shape[-2:]
        height, width = self.trust.shape
        grid = np.stack(np.meshgrid(np.arange(height, dtype=np.float32),
                                    np.arange(width, dtype=np.float32), indexing="ij"))
        pad = ((0, 0), (0, 4 * rows - height), (0, 4 * cols - width))
        shift = np.pad(self.coords - grid, pad, mode="edge")
        shift = shift.reshape(2, rows, 4, cols, 4).mean(axis=(2, 4)) / 4
        trust = np.pad(self.trust, pad[1:], mode="edge").reshape(rows, 4, cols, 4).mean(axis=(1, 3))
        # where each feature comes from, in grid_sample's [-1, 1] (corners aligned)
        source_rows = (np.arange(rows, dtype=np.float32)[:, None] + shift[0]) / max(rows - 1, 1)
        source_cols = (np.arange(cols, dtype=np.float32)[None, :] + shift[1]) / max(cols - 1, 1)
        sample = torch.from_numpy(
            (np.stack([source_cols, source_rows], axis=-1) * 2 - 1).astype(np.float32))
        moved = F.grid_sample(features.float(), sample[None].to(features.device), mode="bilinear",
                              padding_mode="border", align_corners=True)
        return moved, trust.astype(np.float32)


def follow_motion(previous: Carry, luma: np.ndarray, motion: str = "flow",
                  enlargement: float = 1.0) -> Link:
    """The previous plane's result moved onto the content whose luma is ``luma``, and how far
    each pixel of it can be trusted (H, W) in [0, 1] (a ``Link``).

    ``motion``: "flow" follows scikit-image's TV-L1 optical flow between the two contents
    (estimated at ``FLOW_SIDE`` px at most and scaled up), "shift" one global shift
    (cross-correlation, sub-pixel), "none" leaves the result where it was. A pixel is trusted where it
    comes from inside the previous plane and the previous content, moved the same way, matches
    this one (Ruder et al. 2016 drop disoccluded pixels; a photometric check also drops what
    changed in place, such as a nucleus coming into focus in a z-stack): the trust falls from 1
    to 0 as the difference of the two contents, low-passed, grows to ``MISMATCH``.
    ``enlargement``: the working size over the content's own (above 1 where a small plane was
    enlarged); the low-pass spans ``MISMATCH_SIGMA`` of the content's own pixels.
    """
    _check_motion(motion)
    from scipy.ndimage import gaussian_filter
    from skimage.transform import warp

    height, width = luma.shape
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float32),
                             np.arange(width, dtype=np.float32), indexing="ij")
    if motion == "flow":
        flow = _flow(luma, previous.luma)  # previous(p + flow(p)) ~ current(p)
        coords = np.stack([rows + flow[0], cols + flow[1]])
    elif motion == "shift":
        from skimage.filters import window
        from skimage.registration import phase_cross_correlation

        # plain cross-correlation of the Hann-windowed contents: whitening (phase correlation)
        # is led by the image borders on small, smooth planes and finds no shift there
        hann = window("hann", luma.shape)
        shift = phase_cross_correlation((luma - luma.mean()) * hann,
                                        (previous.luma - previous.luma.mean()) * hann,
                                        upsample_factor=10, normalization=None)[0]
        coords = np.stack([rows - shift[0], cols - shift[1]])  # previous(p - shift) ~ current(p)
    else:
        coords = np.stack([rows, cols])

    def moved(channel: np.ndarray) -> np.ndarray:
        return warp(channel, coords, order=1, mode="edge", preserve_range=True).astype(np.float32)

    image = np.stack([moved(previous.image[..., c]) for c in range(previous.image.shape[2])],
                     axis=2)
    inside = ((coords[0] >= -0.5) & (coords[0] <= height - 0.5)
              & (coords[1] >= -0.5) & (coords[1] <= width - 0.5))
    # low-passed contents: noise (independent in each plane of a microscope stack) is no change
    sigma = MISMATCH_SIGMA * max(1.0, enlargement)
    mismatch = np.abs(gaussian_filter(moved(previous.luma), sigma) - gaussian_filter(luma, sigma))
    trust = np.clip(1.0 - mismatch / MISMATCH, 0.0, 1.0) * inside
    return Link(image, trust.astype(np.float32), coords)


def _check_motion(motion: str) -> None:
    if motion not in MOTIONS:
        raise ValueError(f"motion={motion!r} is not supported; choose one of {', '.join(MOTIONS)}")


def _flow(luma: np.ndarray, previous_luma: np.ndarray) -> np.ndarray:
    """TV-L1 flow (2, H, W) from ``luma`` to ``previous_luma``, estimated on both resized to
    ``FLOW_SIDE`` px at most (its cost grows with the pixels) and scaled back up."""
    from skimage.registration import optical_flow_tvl1
    from skimage.transform import resize

    shape = luma.shape
    small = working_shape(*shape, min(FLOW_SIDE, max(shape)))
    if small == shape:
        return optical_flow_tvl1(luma, previous_luma)
    flow = optical_flow_tvl1(resize(luma, small, anti_aliasing=True),
                             resize(previous_luma, small, anti_aliasing=True))
    return np.stack([resize(flow[0], shape, order=1) * (shape[0] / small[0]),
                     resize(flow[1], shape, order=1) * (shape[1] / small[1])])


def blend_with_previous(result: np.ndarray, moved: np.ndarray, trust: np.ndarray,
                        weight: float) -> np.ndarray:
    """Predict's temporal term in closed form: per pixel, the image y closest to
    ``|y - result|² + weight·trust·|y - moved|²``, i.e. ``(result + w·t·moved) / (1 + w·t)``:
    the same squared pull towards the previous plane's moved result that optimize adds to its
    loss, against the prediction instead of the content and style terms. Channels last (an
    image, or the transformer's features)."""
    pull = (weight * trust)[..., None]
    return ((result + pull * moved) / (1.0 + pull)).astype(np.float32)


# --- the stack's window --------------------------------------------------------------------------

def stack_window(lazy, channels: bool, percentiles=(0.0, 100.0), client=None):
    """The intensity window of a whole stack (``lazy``, a dask array), chunk by chunk: the
    ``percentiles`` of its colour values (the default: its finite min..max). None where the
    input contract's own rule already gives every plane the same window: uint8 (0..255), float
    RGB inside 0..1, a constant stack."""
    import dask.array as da

    colour = lazy
    if channels:
        colour = lazy[..., 0] if lazy.shape[-1] == 1 else lazy[..., :3]
    grayscale = not channels or lazy.shape[-1] == 1
    low_q, high_q = (float(q) for q in percentiles)
    if not 0.0 <= low_q < high_q <= 100.0:
        raise ValueError(f"window_percentiles={percentiles!r}: give (low, high) with "
                         "0 <= low < high <= 100")
    full_range = (low_q, high_q) == (0.0, 100.0)
    if full_range and colour.dtype == np.uint8:
        return None
    values = colour
    if colour.dtype.kind == "f":
        values = da.where(da.isfinite(colour), colour, np.nan)
        bounds = (da.nanmin(values), da.nanmax(values))
    else:
        bounds = (values.min(), values.max())
    low, high = (float(v) for v in _compute(bounds, client))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("content: the stack has no finite values (all NaN or inf)")
    if high <= low:
        return None
    if full_range:
        if not grayscale and colour.dtype.kind == "f" and low >= 0.0 and high <= 1.0:
            return None
        return low, high
    # A second pass: a histogram over low..high, one bin per level for integer data.
    levels = colour.dtype.kind in "iu" and high - low < HISTOGRAM_BINS
    bins = int(high - low) + 1 if levels else HISTOGRAM_BINS
    edges = (low - 0.5, high + 0.5) if levels else (low, high)
    counts, _ = da.histogram(values, bins=bins, range=edges)
    cumulative = np.cumsum(_compute((counts,), client)[0])

    def first_bin(q):  # the first bin that reaches the q-th percentile
        return min(int(np.searchsorted(cumulative, q / 100.0 * cumulative[-1])), bins - 1)

    if levels:
        low, high = low + first_bin(low_q), low + first_bin(high_q)
    else:
        width = (high - low) / bins
        low, high = low + width * first_bin(low_q), low + width * (first_bin(high_q) + 1)
    return (float(low), float(high)) if high > low else None


def _compute(collections, client):
    if client is not None:
        return client.gather(client.compute(list(collections)))
    import dask

    return dask.compute(*collections, scheduler="threads")


# --- inputs and outputs --------------------------------------------------------------------------

def _is_zarr(array) -> bool:
    return type(array).__module__.startswith("zarr")


def _as_dask(stack):
    """``stack`` as a dask array with one plane per chunk at most (slicing reads one plane), an
    array-like's planes split into tiles of ``CHUNK_SIDE`` (a huge plane is read a tile at a time
    for the stack's window)."""
    import dask.array as da

    if isinstance(stack, da.Array):
        return stack
    if _is_zarr(stack):
        return da.from_zarr(stack)
    if isinstance(stack, (str, bytes, os.PathLike)):
        raise ValueError(f"content: {os.fsdecode(stack)!r} is a file name, not a stack; open it "
                         "first, e.g. zarr.open_array(path) or tifffile.memmap(path)")
    if not hasattr(stack, "shape"):
        stack = np.asarray(stack)
    leading = _leading(stack.shape)
    chunks = (*(1 for _ in stack.shape[:leading]),
              *(min(n, CHUNK_SIDE) for n in stack.shape[leading:leading + 2]),
              *stack.shape[leading + 2:])
    return da.from_array(_Uncopied(stack), chunks=chunks, asarray=True)


class _Uncopied:
    """An array-like read by slicing and nothing else: dask's ``from_array`` copies whatever has
    a ``copy`` method first (numpy arrays included: a whole second stack in memory), and reads
    this one chunk by chunk instead."""

    def __init__(self, array):
        self._array = array
        self.shape, self.dtype, self.ndim = tuple(array.shape), np.dtype(array.dtype), array.ndim

    def __getitem__(self, key):
        return np.asarray(self._array[key])

    def __dask_tokenize__(self):  # the data's own token (else dask would pickle this object)
        from dask.base import tokenize

        return "uncopied", tokenize(self._array)


def _scattered(stack: np.ndarray, client):
    """A numpy stack for a cluster: sent to the workers once (``client.scatter``) and read there
    plane by plane, instead of travelling inside the task graph (dask warns of a large graph,
    and the scheduler would hold a copy of the data)."""
    import operator

    import dask
    import dask.array as da

    leading = _leading(stack.shape)
    if leading == 0:
        return da.from_array(stack, chunks=stack.shape)
    future = client.scatter(stack, hash=False)  # its own key: no other run can release it
    plane_shape = stack.shape[leading:]
    planes = [da.from_delayed(dask.delayed(operator.getitem)(future, index), shape=plane_shape,
                              dtype=stack.dtype)
              for index in np.ndindex(*stack.shape[:leading])]
    return da.stack(planes).reshape(stack.shape)


def _leading(shape: tuple) -> int:
    """How many axes (z, t, positions) come before the planes of an array of ``shape``."""
    return len(shape) - (3 if _channels(shape) else 2)


def _channels(shape: tuple) -> bool:
    """Whether the last axis holds channels: 1, 3 or 4 values in an array of 3 or more axes (a
    plane is at least 16 pixels wide, so such an axis cannot be the plane's width)."""
    return len(shape) >= 3 and shape[-1] in (1, 3, 4)


def result_shape(stack_shape: tuple, settings: Settings) -> tuple:
    """The shape of a stack's result: its leading axes, then each plane at its working size with
    3 channels (4 for RGBA content)."""
    leading = _leading(stack_shape)
    plane = stack_shape[leading:]
    colour = 4 if _channels(stack_shape) and plane[-1] == 4 else 3
    return (*stack_shape[:leading], *working_shape(plane[0], plane[1], settings.size), colour)


def result_dtype(stack_dtype, settings: Settings) -> np.dtype:
    """float32, or with ``output_range="content"`` the content's dtype where it is an integer."""
    return output_dtype(stack_dtype, settings.output_range)


def temporary_store(prefix: str = "napari-nst-") -> str:
    """A path for a new zarr store in a new temporary folder (``out=`` of a stack run); the
    caller removes it when done with the result."""
    return os.path.join(tempfile.mkdtemp(prefix=prefix), "result.zarr")


def _output(out, shape: tuple, dtype: np.dtype):
    """The array results are written to: a new numpy array (None), the caller's numpy or zarr
    array (checked), or a new zarr store at a path."""
    if out is None:
        return np.zeros(shape, dtype)
    if isinstance(out, (str, os.PathLike)):
        import zarr

        if os.path.exists(out):
            raise ValueError(f"out: {os.fspath(out)!r} exists already; choose a new path for the "
                             "result's zarr store, or remove the old one")
        chunks = (*(1 for _ in shape[:-3]), min(shape[-3], CHUNK_SIDE),
                  min(shape[-2], CHUNK_SIDE), shape[-1])
        return zarr.open_array(os.fspath(out), mode="w-", shape=shape, chunks=chunks,
                               dtype=dtype, fill_value=0)
    if not (isinstance(out, np.ndarray) or _is_zarr(out)):
        raise ValueError(f"out: a {type(out).__name__} cannot hold the result; pass None (a new "
                         "array), a path for a zarr store, a zarr array or a numpy array")
    if tuple(out.shape) != tuple(shape) or np.dtype(out.dtype) != dtype:
        raise ValueError(f"out: shape {tuple(out.shape)} and dtype {out.dtype}; the result needs "
                         f"shape {tuple(shape)} and dtype {dtype} (napari_nst.engine.stack."
                         "result_shape and result_dtype say so for a stack)")
    return out


# --- the API -------------------------------------------------------------------------------------

def iter_stack(stack, style, *, out=None, client=None, settings: Settings | None = None,
               warm_start: bool = True, motion: str = "flow", temporal_weight: float | None = None,
               chain_axis: int | None = None, window_percentiles=(0.0, 100.0),
               **overrides) -> StackRun:
    """Stylise every plane of ``stack``, as a ``StackRun`` to iterate for per-plane progress
    (``PlaneDone``); its ``output`` is filled in place. Validates eagerly.

    ``stack``: numpy, dask or zarr array (..., H, W) or (..., H, W, 1|3|4); ``style`` as for
    ``stylize``. ``out``: None (a new numpy array), a path (a new zarr store: results bigger than
    memory; see ``temporary_store``), or a numpy/zarr array of ``result_shape`` and
    ``result_dtype``. ``client``: a ``dask.distributed`` Client to run the planes on its cluster;
    None: in this process. Planes follow their predecessor along ``chain_axis`` (default: the
    last leading axis), with the ``motion`` between the two contents undone (``follow_motion``):
    ``temporal_weight`` keeps each result close to the previous one where the motion is trusted
    (None: ``TEMPORAL_WEIGHTS`` for the method; 0: planes independent, which also lets them run
    in parallel); ``warm_start`` (optimize) starts each plane from the previous result.
    ``window_percentiles``: the stack-wide window when
    ``content_window`` is not given. Settings as for ``stylize`` (``settings`` and overrides).
    """
    settings = make_settings(settings, **overrides)
    if settings.init_image is not None:
        raise ValueError("init_image is a start image for one plane; a stack starts each plane "
                         "from its content (init) or, with warm_start, from the previous plane")
    _check_motion(motion)
    if temporal_weight is None:
        temporal_weight = TEMPORAL_WEIGHTS[settings.method]
    if not (isinstance(temporal_weight, (int, float)) and 0.0 <= temporal_weight < math.inf):
        raise ValueError(f"temporal_weight={temporal_weight!r}: give a number >= 0 (0: every "
                         "plane on its own), or None for the method's default")
    lazy = _as_dask(stack)
    if client is not None and isinstance(stack, np.ndarray):
        lazy = _scattered(stack, client)
    channels = _channels(lazy.shape)
    plane_ndim = 3 if channels else 2
    if lazy.ndim < 2:
        raise ValueError(f"content: shape {lazy.shape} is not a stack of images; pass (..., H, W) "
                         "grayscale or (..., H, W, 3|4) colour planes")
    leading = lazy.ndim - plane_ndim
    if chain_axis is None:
        chain_axis = max(leading - 1, 0)
    if leading and not -leading <= chain_axis < leading:
        raise ValueError(f"chain_axis={chain_axis}: the stack of shape {lazy.shape} has "
                         f"{leading} leading axis/axes before its planes; pick one of them")
    chain_axis %= max(leading, 1)
    height, width = lazy.shape[leading:leading + 2]
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"content: planes of {height}x{width} pixels (stack shape {lazy.shape}) "
                         f"are too small; each side needs at least {MIN_SIDE} pixels")
    if 0 in lazy.shape[:leading]:
        raise ValueError(f"content: the stack of shape {lazy.shape} has no planes")
    from .run import prepare_inputs

    corner = np.asarray(lazy[(0,) * leading + (slice(0, 64), slice(0, 64))])
    _, styles, _ = prepare_inputs(corner, style, settings)  # checks the dtype and the styles
    output = _output(out, result_shape(lazy.shape, settings),
                     result_dtype(lazy.dtype, settings))
    at_hand = client is None and hasattr(stack, "shape") and not hasattr(stack, "dask")
    return StackRun(lazy, styles, settings, output, channels=channels, warm_start=warm_start,
                    motion=motion, temporal_weight=float(temporal_weight), chain_axis=chain_axis,
                    client=client, percentiles=window_percentiles,
                    source=stack if at_hand else None)


def stylize_stack(stack, style, *, out=None, client=None, settings: Settings | None = None,
                  **options):
    """Stylise every plane of ``stack`` and return the result: a float32 array of the stack's
    leading axes over planes as ``stylize`` returns them (or the zarr array at ``out``). Options
    and settings as for ``iter_stack``."""
    run = iter_stack(stack, style, out=out, client=client, settings=settings, **options)
    for _ in run:
        pass
    return run.output


__all__ = ["MOTIONS", "TEMPORAL_WEIGHTS", "Carry", "Link", "PlaneDone", "StackRun",
           "blend_with_previous", "follow_motion", "iter_stack", "result_dtype", "result_shape", "stack_window",
           "stylize_stack", "temporary_store"]
