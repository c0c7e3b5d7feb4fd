"""A stack's data: reading it plane by plane (numpy, dask, zarr and other sliceable arrays), its
stack-wide intensity window, and the array its results go to."""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np

from ..settings import Settings
from .images import working_shape
from .output import output_dtype

#: Side of the zarr chunks of a result (a plane is split into tiles of at most this size).
CHUNK_SIDE = 1024
#: Bins of the histogram that stack-wide percentiles are read from (exact for integer data whose
#: range spans at most this many levels).
HISTOGRAM_BINS = 1 << 16


def plane_name(index: tuple) -> str:
    """How errors name a plane: "content plane [2, 5]" (or "content plane" for a single one)."""
    return ("content plane " + (str(list(index)) if index else "")).strip()


class PlaneSource:
    """A plane handed to its task unread: dask computes the collections among a task's
    arguments before the call, also inside lists, dicts and dataclasses, which would read the
    whole plane into memory; a plain object keeps it lazy, so that the task reads it tile by
    tile."""

    __slots__ = ("stack", "index")

    def __init__(self, stack, index: tuple):
        self.stack, self.index = stack, index

    def plane(self):
        """The plane as an array-like that reads only what is indexed (``PlaneView``), or the
        dask array's plane (lazy itself)."""
        if hasattr(self.stack, "dask"):
            return self.stack[self.index]
        return PlaneView(self.stack, self.index)


class PlaneView:
    """Plane ``index`` of a stack, read only where it is indexed (``stack[index]`` would read
    the whole plane from a zarr array): what ``lazy_images.prepare_lazy`` needs of a plane -- its
    shape and dtype, ``[rows, cols]`` blocks, and ``[..., 0]`` for a single channel."""

    def __init__(self, stack, index: tuple, channel: int | None = None):
        self._stack, self._index, self._channel = stack, tuple(index), channel
        shape = tuple(stack.shape[len(self._index) :])
        self.shape = shape[:-1] if channel is not None else shape
        self.ndim, self.dtype = len(self.shape), np.dtype(stack.dtype)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if len(key) == 2 and key[0] is Ellipsis and self._channel is None:
            return PlaneView(self._stack, self._index, key[1])
        channel = (
            ()
            if self._channel is None
            else (slice(None),) * (self.ndim - len(key)) + (self._channel,)
        )
        return np.asarray(self._stack[(*self._index, *key, *channel)])


# --- the stack's window -------------------------------------------------------------------------


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
        raise ValueError(
            f"window_percentiles={percentiles!r}: give (low, high) with 0 <= low < high <= 100"
        )
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


# --- inputs and outputs -------------------------------------------------------------------------


def is_zarr(array) -> bool:
    return type(array).__module__.startswith("zarr")


def as_dask(stack):
    """``stack`` as a dask array with one plane per chunk at most (slicing reads one plane), an
    array-like's planes split into tiles of ``CHUNK_SIDE`` (a huge plane is read a tile at a time
    for the stack's window)."""
    import dask.array as da

    if isinstance(stack, da.Array):
        return stack
    if is_zarr(stack):
        return da.from_zarr(stack)
    if isinstance(stack, (str, bytes, os.PathLike)):
        raise ValueError(
            f"content: {os.fsdecode(stack)!r} is a file name, not a stack; open it "
            "first, e.g. zarr.open_array(path) or tifffile.memmap(path)"
        )
    if not hasattr(stack, "shape"):
        stack = np.asarray(stack)
    leading = leading_axes(stack.shape)
    chunks = (
        *(1 for _ in stack.shape[:leading]),
        *(min(n, CHUNK_SIDE) for n in stack.shape[leading : leading + 2]),
        *stack.shape[leading + 2 :],
    )
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


def scattered(stack: np.ndarray, client):
    """A numpy stack for a cluster: sent to the workers once (``client.scatter``) and read there
    plane by plane, instead of travelling inside the task graph (dask warns of a large graph,
    and the scheduler would hold a copy of the data)."""
    import operator

    import dask
    import dask.array as da

    leading = leading_axes(stack.shape)
    if leading == 0:
        return da.from_array(stack, chunks=stack.shape)
    future = client.scatter(stack, hash=False)  # its own key: no other run can release it
    plane_shape = stack.shape[leading:]
    planes = [
        da.from_delayed(
            dask.delayed(operator.getitem)(future, index), shape=plane_shape, dtype=stack.dtype
        )
        for index in np.ndindex(*stack.shape[:leading])
    ]
    return da.stack(planes).reshape(stack.shape)


def leading_axes(shape: tuple) -> int:
    """How many axes (z, t, positions) come before the planes of an array of ``shape``."""
    return len(shape) - (3 if has_channels(shape) else 2)


def has_channels(shape: tuple) -> bool:
    """Whether the last axis holds channels: 1, 3 or 4 values in an array of 3 or more axes (a
    plane is at least 16 pixels wide, so such an axis cannot be the plane's width)."""
    return len(shape) >= 3 and shape[-1] in (1, 3, 4)


def result_shape(stack_shape: tuple, settings: Settings) -> tuple:
    """The shape of a stack's result: its leading axes, then each plane at its working size with
    3 channels (4 for RGBA content)."""
    leading = leading_axes(stack_shape)
    plane = stack_shape[leading:]
    colour = 4 if has_channels(stack_shape) and plane[-1] == 4 else 3
    return (*stack_shape[:leading], *working_shape(plane[0], plane[1], settings.size), colour)


def result_dtype(stack_dtype, settings: Settings) -> np.dtype:
    """float32, or with ``output_range="content"`` the content's dtype where it is an integer."""
    return output_dtype(stack_dtype, settings.output_range)


def temporary_store(prefix: str = "napari-nst-") -> str:
    """A path for a new zarr store in a new temporary folder (``out=`` of a stack run); the
    caller removes it when done with the result."""
    return os.path.join(tempfile.mkdtemp(prefix=prefix), "result.zarr")


def output_array(out, shape: tuple, dtype: np.dtype):
    """The array results are written to: a new numpy array (None), the caller's numpy or zarr
    array (checked), or a new zarr store at a path."""
    if out is None:
        return np.zeros(shape, dtype)
    if isinstance(out, (str, os.PathLike)):
        import zarr

        if os.path.exists(out):
            raise ValueError(
                f"out: {os.fspath(out)!r} exists already; choose a new path for the "
                "result's zarr store, or remove the old one"
            )
        chunks = (
            *(1 for _ in shape[:-3]),
            min(shape[-3], CHUNK_SIDE),
            min(shape[-2], CHUNK_SIDE),
            shape[-1],
        )
        return zarr.open_array(
            os.fspath(out), mode="w-", shape=shape, chunks=chunks, dtype=dtype, fill_value=0
        )
    if not (isinstance(out, np.ndarray) or is_zarr(out)):
        raise ValueError(
            f"out: a {type(out).__name__} cannot hold the result; pass None (a new "
            "array), a path for a zarr store, a zarr array or a numpy array"
        )
    if tuple(out.shape) != tuple(shape) or np.dtype(out.dtype) != dtype:
        raise ValueError(
            f"out: shape {tuple(out.shape)} and dtype {out.dtype}; the result needs "
            f"shape {tuple(shape)} and dtype {dtype} (napari_nst.engine.stack."
            "result_shape and result_dtype say so for a stack)"
        )
    return out
