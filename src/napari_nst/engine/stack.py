"""Whole stacks: every 2-D plane of an array with leading axes (z, t, positions), consistent from
plane to plane, read plane by plane (inputs bigger than memory) and run on dask.

A stack is an array whose last axes are one plane as the input contract reads it (``images``):
(..., H, W) grayscale or (..., H, W, 1|3|4). Numpy, dask and zarr arrays (and other array-likes
that slice, such as a tifffile memmap) are read one plane at a time; nothing here materialises
the whole input. The result has the stack's leading axes over planes as ``stylize`` returns them
(H', W', 3|4) at the working size, in a numpy array, or in a zarr array for results bigger than
memory (``out``).

Consistency from plane to plane:

* one style target for the whole stack: the method's ``Method.target`` (predict's style
  embeddings, optimize's Gram matrices of every scale, universal's style statistics of every
  level) is computed once, and every plane uses it;
* one intensity window for the whole stack: ``content_window`` (napari's contrast limits), else
  the stack's own percentiles (min..max by default), computed chunk by chunk with dask -- never
  per plane, which would make the brightness flicker (``stack_io.stack_window``);
* each plane follows the previous plane's result along ``chain_axis``, moved onto it by the
  motion between the two contents (``motion``), where that motion can be trusted: each method's
  ``Method.plane`` pulls towards it with the temporal weight and, where it can
  (``Method.warm_starts``), starts from it.

A plane too big to hold its result in memory, which the method can stream (``Method.streams``:
predict above ``STREAM_PIXELS``) into a zarr store, is handed to ``Method.plane_streamed`` unread
(``stack_io.PlaneSource``), which reads it a tile at a time and writes the output a block at a
time; it has no temporal term.

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

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..settings import Settings, make_settings
from . import methods
from .images import MIN_SIDE, working_shape
from .motion import check_motion
from .stack_graph import build_graph, run_distributed, run_local
from .stack_io import (
    PlaneSource,
    as_dask,
    has_channels,
    is_zarr,
    leading_axes,
    output_array,
    result_dtype,
    result_shape,
    scattered,
    stack_window,
    temporary_store,
)
from .stack_tasks import PlaneJob, PlaneRecord


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


class StackRun:
    """A validated stack job, returned by ``iter_stack``: ``output`` is allocated before any plane
    runs (a napari layer can show it from the start); iterating runs the job and yields a
    ``PlaneDone`` per finished plane, in the order they finish. Closing the iteration early
    (``break``, ``close()``, napari's Stop) stops the job after the planes under way; the planes
    done stay in ``output``. A run can be iterated once. ``done`` counts the planes written to
    ``output``, including those that were under way when the iteration was closed and finished
    after it (they are kept too).
    """

    def __init__(
        self,
        lazy,
        styles,
        settings: Settings,
        output,
        *,
        channels: bool,
        warm_start: bool,
        motion: str,
        temporal_weight: float,
        chain_axis: int,
        client,
        percentiles,
        source=None,
        regions=None,
        assignment=None,
    ):
        self.output = output
        self.leading_shape = tuple(lazy.shape[: leading_axes(lazy.shape)])
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
        self._regions, self._assignment = regions, assignment
        self._started = False
        self.done = 0
        method = methods.get(settings.method)
        plane = lazy.shape[len(self.leading_shape) :]
        # planes the method renders through files (``Method.streams``) at their own size or
        # smaller are read from the input a tile (or a band) at a time too, and stand on their
        # own (no temporal term)
        working = working_shape(plane[0], plane[1], settings.size)
        self.streamed = (
            is_zarr(output)
            and not (channels and plane[-1] == 4)
            and working[0] <= plane[0]
            and working[1] <= plane[1]
            and method.streams(plane[0], plane[1], settings)
        )
        if self.streamed:
            self.temporal_weight = 0.0

    @property
    def warm_start(self) -> bool:
        """Whether each plane starts from its predecessor's moved result (where the method can:
        ``Method.warm_starts``)."""
        return self._warm_start and methods.get(self.settings.method).warm_starts

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
            groups.setdefault(index[: self._chain_axis] + index[self._chain_axis + 1 :], []).append(
                index
            )
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
                    content_window=(0.0, 255.0) if self._lazy.dtype == np.uint8 else (0.0, 1.0)
                )
        self.settings = settings
        writer = self.output if is_zarr(self.output) or self._client is None else None
        job = PlaneJob(
            settings,
            self.warm_start,
            self._motion,
            self.temporal_weight if self.chained else 0.0,
            writer,
            self._assignment,
        )
        records = build_graph(self._styles, job, self.chains(), self._plane_inputs)
        execute = run_distributed if self._client is not None else run_local
        for record in execute(records, self._client, self._keep):
            self._keep(record)
            yield PlaneDone(
                record.index,
                self.done,
                self.total,
                record.seconds,
                time.perf_counter() - start,
                record.info,
                self.output,
            )

    def _keep(self, record: PlaneRecord) -> None:
        """A finished plane into the output (also one that finished after the iteration was
        closed: the planes under way at a Stop are kept too)."""
        if record.image is not None:
            self.output[record.index] = record.image
        self.done += 1

    def _plane_inputs(self, index: tuple) -> tuple:
        """A plane's task arguments: its content (a dask slice of the input: only that plane's
        chunks; a streamed plane unread) and its labels (None without regions)."""
        plane = PlaneSource(self._source, index) if self.streamed else self._lazy[index]
        labels = None
        if self._regions is not None:  # one label image for all, or the plane's own
            labels = self._regions if self._regions.ndim == 2 else self._regions[index]
        return plane, labels


# --- the API -------------------------------------------------------------------------------------


def iter_stack(
    stack,
    style,
    *,
    out=None,
    client=None,
    settings: Settings | None = None,
    warm_start: bool = True,
    motion: str = "flow",
    temporal_weight: float | None = None,
    chain_axis: int | None = None,
    window_percentiles=(0.0, 100.0),
    **overrides,
) -> StackRun:
    """Stylise every plane of ``stack``, as a ``StackRun`` to iterate for per-plane progress
    (``PlaneDone``); its ``output`` is filled in place. Validates eagerly.

    ``stack``: numpy, dask or zarr array (..., H, W) or (..., H, W, 1|3|4); ``style`` as for
    ``stylize``. ``out``: None (a new numpy array), a path (a new zarr store: results bigger than
    memory; see ``temporary_store``), or a numpy/zarr array of ``result_shape`` and
    ``result_dtype``. ``client``: a ``dask.distributed`` Client to run the planes on its cluster;
    None: in this process. Planes follow their predecessor along ``chain_axis`` (default: the
    last leading axis), with the ``motion`` between the two contents undone (``follow_motion``):
    ``temporal_weight`` keeps each result close to the previous one where the motion is trusted
    (None: the method's ``Method.temporal_weight``; 0: planes independent, which also lets them run
    in parallel); ``warm_start`` (methods that can: optimize) starts each plane from the previous result.
    ``window_percentiles``: the stack-wide window when
    ``content_window`` is not given. Settings as for ``stylize`` (``settings`` and overrides).
    """
    settings = make_settings(settings, **overrides)
    temporal_weight = _checked_options(settings, motion, temporal_weight)
    lazy = as_dask(stack)
    if client is not None and isinstance(stack, np.ndarray):
        lazy = scattered(stack, client)
    channels, leading, chain_axis = _stack_layout(lazy.shape, chain_axis)
    height, width = lazy.shape[leading : leading + 2]
    from .regions import warn_if_unlabelled
    from .run import check_regions_size, prepare_inputs, style_inputs

    style_images, assignment = style_inputs(style, settings)
    regions = None
    if assignment is not None:
        regions = _stack_regions(settings.regions, lazy.shape[: leading + 2], leading)
        check_regions_size((height, width), settings)
        # the planes do not warn one by one: once for the stack (labels in memory: a store's
        # are read plane by plane, not scanned here)
        if isinstance(regions, np.ndarray) and not regions.any():
            warn_if_unlabelled([0], assignment, stacklevel=4)
        settings = settings.replace(regions=None, style_blend=None)  # blends: the assignment's
    corner = np.asarray(lazy[(0,) * leading + (slice(0, 64), slice(0, 64))])
    _, styles, _ = prepare_inputs(corner, style_images, settings)  # checks dtype and styles
    output = output_array(
        out, result_shape(lazy.shape, settings), result_dtype(lazy.dtype, settings)
    )
    at_hand = client is None and hasattr(stack, "shape") and not hasattr(stack, "dask")
    return StackRun(
        lazy,
        styles,
        settings,
        output,
        channels=channels,
        warm_start=warm_start,
        motion=motion,
        temporal_weight=float(temporal_weight),
        chain_axis=chain_axis,
        client=client,
        percentiles=window_percentiles,
        source=stack if at_hand else None,
        regions=regions,
        assignment=assignment,
    )


def _checked_options(settings: Settings, motion: str, temporal_weight) -> float:
    """The temporal weight (None: the method's), once the options that a stack does not take
    or cannot use are ruled out."""
    if settings.init_image is not None:
        raise ValueError(
            "init_image is a start image for one plane; a stack starts each plane "
            "from its content (init) or, with warm_start, from the previous plane"
        )
    check_motion(motion)
    if temporal_weight is None:
        temporal_weight = methods.get(settings.method).temporal_weight
    if not (isinstance(temporal_weight, (int, float)) and 0.0 <= temporal_weight < math.inf):
        raise ValueError(
            f"temporal_weight={temporal_weight!r}: give a number >= 0 (0: every "
            "plane on its own), or None for the method's default"
        )
    return temporal_weight


def _stack_layout(shape: tuple, chain_axis: int | None) -> tuple[bool, int, int]:
    """(whether the planes have channels, the number of leading axes, the chain axis counted
    from 0) of a stack of ``shape``, or a ValueError saying what is wrong with it."""
    channels = has_channels(shape)
    plane_ndim = 3 if channels else 2
    if len(shape) < 2:
        raise ValueError(
            f"content: shape {shape} is not a stack of images; pass (..., H, W) "
            "grayscale or (..., H, W, 3|4) colour planes"
        )
    leading = len(shape) - plane_ndim
    if chain_axis is None:
        chain_axis = max(leading - 1, 0)
    if leading and not -leading <= chain_axis < leading:
        raise ValueError(
            f"chain_axis={chain_axis}: the stack of shape {shape} has "
            f"{leading} leading axis/axes before its planes; pick one of them"
        )
    chain_axis %= max(leading, 1)
    height, width = shape[leading : leading + 2]
    if min(height, width) < MIN_SIDE:
        raise ValueError(
            f"content: planes of {height}x{width} pixels (stack shape {shape}) "
            f"are too small; each side needs at least {MIN_SIDE} pixels"
        )
    if 0 in shape[:leading]:
        raise ValueError(f"content: the stack of shape {shape} has no planes")
    return channels, leading, chain_axis


def _stack_regions(labels, shape: tuple, leading: int):
    """A stack's regions: one label image for every plane (H, W), or one per plane, of the
    stack's leading axes and plane shape (..., H, W); each plane's labels are checked and fitted
    where the plane runs."""
    from .regions import check_label_array

    labels = check_label_array(labels if hasattr(labels, "ndim") else np.asarray(labels))
    if (
        labels.ndim == 2
        or tuple(labels.shape[:leading]) == tuple(shape[:leading])
        and labels.ndim == leading + 2
    ):
        return labels
    raise ValueError(
        f"regions: labels of shape {tuple(labels.shape)} fit neither one plane "
        f"{tuple(shape[leading:])} nor the stack's planes {tuple(shape)}; pass one "
        "label image for every plane, or one per plane"
    )


def stylize_stack(
    stack, style, *, out=None, client=None, settings: Settings | None = None, **options
):
    """Stylise every plane of ``stack`` and return the result: a float32 array of the stack's
    leading axes over planes as ``stylize`` returns them (or the zarr array at ``out``). Options
    and settings as for ``iter_stack``."""
    run = iter_stack(stack, style, out=out, client=client, settings=settings, **options)
    for _ in run:
        pass
    return run.output


__all__ = [
    "PlaneDone",
    "StackRun",
    "iter_stack",
    "result_dtype",
    "result_shape",
    "stack_window",
    "stylize_stack",
    "temporary_store",
]
