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
* optimize (``warm_start``): each plane starts from the previous plane's result along
  ``chain_axis``, with the motion between the two contents undone (``motion``: scikit-image's
  optical flow, a phase-correlation shift, or none), so textures stay where they were.

How this maps onto dask: the job is one dask graph. A task computes the style target once; each
plane is a task that reads its plane (a dask slice of the input: only that plane's chunks),
stylises it and writes it to the output. Planes that start from the previous one form a *chain*
(a task depends on its predecessor's result), so a chain runs in order, while different chains --
and predict's planes, which depend on nothing but the style target -- are independent tasks that
run in parallel where there are workers. Without a client the graph runs on dask's local threaded
scheduler in this process, one plane at a time (torch already uses every core for one plane);
with a ``dask.distributed`` client the planes become tasks on the cluster: each worker process
loads the networks once (the engine's per-process caches) and writes its planes to the zarr store
itself; a worker that dies is replaced by dask, which reruns its tasks.
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
from .images import MIN_SIDE, PreparedImage, finish_image, luminance, output_image, \
    prepare_image, working_shape

#: How the motion between two planes is undone before a plane starts from its predecessor's
#: result: dense optical flow (TV-L1), one global shift (phase correlation), or not at all.
MOTIONS = ("flow", "shift", "none")
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
    done stay in ``output``. A run can be iterated once.
    """

    def __init__(self, lazy, styles, settings: Settings, output, *, channels: bool,
                 warm_start: bool, motion: str, chain_axis: int, client, percentiles):
        self.output = output
        self.leading_shape = tuple(lazy.shape[:lazy.ndim - (3 if channels else 2)])
        self.total = math.prod(self.leading_shape)
        self.settings = settings
        self._lazy, self._styles, self._channels = lazy, styles, channels
        self._warm_start, self._motion, self._chain_axis = warm_start, motion, chain_axis
        self._client, self._percentiles = client, percentiles
        self._started = False

    @property
    def chained(self) -> bool:
        """Whether planes start from their predecessor's result (optimize with warm starts)."""
        return self._warm_start and self.settings.method == "optimize" and bool(self.leading_shape)

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
        self.settings = settings
        writer = self.output if _is_zarr(self.output) or self._client is None else None
        job = _Job(settings, self.chained, self._motion, writer)
        records = self._graph(job)
        execute = _run_distributed if self._client is not None else _run_local
        done = 0
        for record in execute(records, self._client):
            if record.image is not None:
                self.output[record.index] = record.image
            done += 1
            yield PlaneDone(record.index, done, self.total, record.seconds,
                            time.perf_counter() - start, record.info, self.output)

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
                task = dask.delayed(_plane_task, nout=2)(
                    self._lazy[index], index, target, job, previous,
                    dask_key_name=f"napari-nst-plane-{token}-{name}")
                records.append(task[0])
                previous = task[1]
        return records


def _run_local(records: list, client=None) -> Iterator[_PlaneRecord]:
    """The graph on dask's threaded scheduler (one worker thread) in a background thread; records
    come back through a queue as each plane finishes. Closing stops before the next task."""
    import dask

    wanted = {record.key for record in records}
    results: queue.Queue = queue.Queue()
    stop = threading.Event()
    finished = object()

    class _Stopped(Exception):
        pass

    def pretask(key, dsk, state):
        if stop.is_set():
            raise _Stopped

    def posttask(key, result, dsk, state, worker_id):
        if key in wanted:
            results.put(result)

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


def _run_distributed(records: list, client) -> Iterator[_PlaneRecord]:
    """The graph on a ``dask.distributed`` cluster; records as their planes finish. Closing
    cancels the planes not done."""
    from distributed import as_completed

    futures = client.compute(records)
    try:
        for future in as_completed(futures):
            record = future.result()
            future.release()
            yield record
    finally:
        client.cancel(futures)


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


def _plane_task(plane, index: tuple, target: _Target, job: _Job, previous):
    """Stylise one plane: (its record, what the next plane of its chain starts from).

    Writes the result to ``job.writer`` when there is one (the record then carries no image)."""
    import torch

    start = time.perf_counter()
    settings = job.settings
    device = _device(settings)
    label = "content plane " + (str(list(index)) if index else "")
    content = prepare_image(plane, settings.content_window, name=label.strip(),
                            size=settings.size)
    del plane
    with torch.inference_mode(False):
        if settings.method == "predict":
            image, info, warm = *_predict_plane(content, target, settings, device), None
        else:
            image, info, warm = _optimize_plane(content, target, job, device, previous)
    info = {"method": settings.method, "device": str(device), **info}
    record = _PlaneRecord(index, time.perf_counter() - start, info)
    if job.writer is not None:
        job.writer[index] = image
    else:
        record.image = image
    return record, warm


def _predict_plane(content: PreparedImage, target: _Target, settings: Settings, device):
    import torch

    from .predict import load_networks, stylize_one

    predictor, transformer = load_networks(settings, device)
    embeddings = [e.to(device) for e in target.embeddings]
    with torch.inference_mode():
        result = stylize_one(content, embeddings, predictor, transformer, settings)
    info = {"weights": f"{predictor.weights_identity} + {transformer.weights_identity}",
            "precision": "float32"}
    return output_image(result, content, settings.output_range), info


def _optimize_plane(content: PreparedImage, target: _Target, job: _Job, device, previous):
    """The optimised plane, its provenance, and (raw result, content luma) for the next plane.

    The optimisation runs on the content as plain RGB with a plain output, so that its raw
    result (before grayscale, ``keep_colors`` and ``output_range`` are applied, as a single run
    applies them to its final image) can start the next plane."""
    from .optimize import optimize

    settings = job.settings
    luma = luminance(content.rgb)
    initial = None
    if previous is not None:
        previous_rgb, previous_luma = previous
        initial = undo_motion(previous_rgb, previous_luma, luma, job.motion)
    elif settings.init == "predict":
        from .predict import predict_image

        initial = predict_image(content, target.styles, settings, device)
    plain = dataclasses.replace(content, values=content.rgb, grayscale=False, alpha=None)
    plain_settings = settings.replace(emit_every=settings.steps, keep_colors=False,
                                      output_range="unit")
    final = None
    for final in optimize(plain, target.styles, plain_settings, device, initial=initial,
                          targets=target.grams):
        pass
    raw = final.image
    image = output_image(finish_image(raw, content, settings.keep_colors), content,
                         settings.output_range)
    warm = (raw, luma) if job.warm_start else None
    return image, final.info, warm


# --- motion --------------------------------------------------------------------------------------

def undo_motion(previous: np.ndarray, previous_luma: np.ndarray, luma: np.ndarray,
                motion: str = "flow") -> np.ndarray:
    """``previous`` (H, W, C), a result for the content whose luma is ``previous_luma``, moved
    onto the content whose luma is ``luma``: "flow" follows scikit-image's TV-L1 optical flow
    between the two contents, "shift" one global shift (phase correlation, sub-pixel), "none"
    leaves it. Pixels that come from outside the image repeat the nearest edge."""
    if motion == "none":
        return previous
    from skimage.transform import warp

    rows, cols = np.meshgrid(np.arange(luma.shape[0], dtype=np.float32),
                             np.arange(luma.shape[1], dtype=np.float32), indexing="ij")
    if motion == "flow":
        from skimage.registration import optical_flow_tvl1

        flow = optical_flow_tvl1(luma, previous_luma)  # previous(p + flow(p)) ~ current(p)
        coords = np.stack([rows + flow[0], cols + flow[1]])
    elif motion == "shift":
        from skimage.registration import phase_cross_correlation

        shift = phase_cross_correlation(luma, previous_luma, upsample_factor=10)[0]
        coords = np.stack([rows - shift[0], cols - shift[1]])  # previous(p - shift) ~ current(p)
    else:
        raise ValueError(f"motion={motion!r} is not supported; choose one of {', '.join(MOTIONS)}")
    moved = np.empty_like(previous)
    for channel in range(previous.shape[2]):
        moved[..., channel] = warp(previous[..., channel], coords, order=1, mode="edge",
                                   preserve_range=True)
    return moved


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
    """``stack`` as a dask array with one plane per chunk at most (slicing reads one plane)."""
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
    chunks = tuple(1 for _ in stack.shape[:-2]) + tuple(stack.shape[-2:])
    return da.from_array(stack, chunks=chunks, asarray=True)


def _channels(shape: tuple) -> bool:
    """Whether the last axis holds channels: 1, 3 or 4 values in an array of 3 or more axes (a
    plane is at least 16 pixels wide, so such an axis cannot be the plane's width)."""
    return len(shape) >= 3 and shape[-1] in (1, 3, 4)


def result_shape(stack_shape: tuple, settings: Settings) -> tuple:
    """The shape of a stack's result: its leading axes, then each plane at its working size with
    3 channels (4 for RGBA content)."""
    channels = _channels(stack_shape)
    plane = stack_shape[len(stack_shape) - (3 if channels else 2):]
    colour = 4 if channels and plane[-1] == 4 else 3
    return (*stack_shape[:len(stack_shape) - len(plane)],
            *working_shape(plane[0], plane[1], settings.size), colour)


def result_dtype(stack_dtype, settings: Settings) -> np.dtype:
    """float32, or with ``output_range="content"`` the content's dtype where it is an integer."""
    dtype = np.dtype(stack_dtype)
    if settings.output_range == "content" and np.issubdtype(dtype, np.integer):
        return dtype
    return np.dtype(np.float32)


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
               warm_start: bool = True, motion: str = "flow", chain_axis: int | None = None,
               window_percentiles=(0.0, 100.0), **overrides) -> StackRun:
    """Stylise every plane of ``stack``, as a ``StackRun`` to iterate for per-plane progress
    (``PlaneDone``); its ``output`` is filled in place. Validates eagerly.

    ``stack``: numpy, dask or zarr array (..., H, W) or (..., H, W, 1|3|4); ``style`` as for
    ``stylize``. ``out``: None (a new numpy array), a path (a new zarr store: results bigger than
    memory; see ``temporary_store``), or a numpy/zarr array of ``result_shape`` and
    ``result_dtype``. ``client``: a ``dask.distributed`` Client to run the planes on its cluster;
    None: in this process. ``warm_start`` (optimize): each plane
    starts from its predecessor's result along ``chain_axis`` (default: the last leading axis),
    ``motion`` undone (see ``undo_motion``). ``window_percentiles``: the stack-wide window when
    ``content_window`` is not given. Settings as for ``stylize`` (``settings`` and overrides).
    """
    settings = make_settings(settings, **overrides)
    if settings.init_image is not None:
        raise ValueError("init_image is a start image for one plane; a stack starts each plane "
                         "from its content (init) or, with warm_start, from the previous plane")
    if motion not in MOTIONS:
        raise ValueError(f"motion={motion!r} is not supported; choose one of {', '.join(MOTIONS)}")
    lazy = _as_dask(stack)
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
    return StackRun(lazy, styles, settings, output, channels=channels, warm_start=warm_start,
                    motion=motion, chain_axis=chain_axis, client=client,
                    percentiles=window_percentiles)


def stylize_stack(stack, style, *, out=None, client=None, settings: Settings | None = None,
                  **options):
    """Stylise every plane of ``stack`` and return the result: a float32 array of the stack's
    leading axes over planes as ``stylize`` returns them (or the zarr array at ``out``). Options
    and settings as for ``iter_stack``."""
    run = iter_stack(stack, style, out=out, client=client, settings=settings, **options)
    for _ in run:
        pass
    return run.output


__all__ = ["MOTIONS", "PlaneDone", "StackRun", "iter_stack", "result_dtype", "result_shape",
           "stack_window", "stylize_stack", "temporary_store", "undo_motion"]
