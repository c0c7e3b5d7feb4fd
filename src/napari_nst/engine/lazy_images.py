"""Planes too big to copy (a dask or zarr array, a memmap) as a ``PreparedImage`` that reads its
pixels only when asked: the tiled renderer then reads them a tile at a time (the input contract
itself is ``images``)."""

from __future__ import annotations

import numpy as np

from .image_values import count_nan_pixels, to_unit
from .images import PreparedImage, resampled_image, shrinks, target_shape, warn_nan


class LazyValues:
    """The colour values of a plane too big to copy, read on demand from an array-like (a dask
    or zarr array, a memmap): what ``prepare_lazy`` puts in a PreparedImage. Indexing reads that
    block only; data wider than the compact dtypes is mapped to [0, 1] as it is read."""

    def __init__(self, source, window: tuple[float, float]):
        self.source = source
        self.window = window
        self.compact = np.dtype(source.dtype).itemsize < 4
        self.dtype = np.dtype(source.dtype) if self.compact else np.dtype(np.float32)
        self.shape = tuple(source.shape)
        self.ndim = len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        block = self.raw(key)
        return block if self.compact else to_unit(block, *self.window)

    def raw(self, key) -> np.ndarray:
        """The block ``key`` of the source's own values, read now."""
        block = self.source[key]
        if hasattr(block, "dask"):  # read here, in the task's thread: not on whatever dask
            block = block.compute(scheduler="sync")  # scheduler is the default (a Client)
        return np.asarray(block)


def prepare_lazy(
    plane, window: tuple[float, float], *, name: str = "image", size=None
) -> PreparedImage:
    """A grayscale (H, W) / (H, W, 1) or RGB (H, W, 3) plane in ``window`` as a PreparedImage
    that reads its pixels only when asked (``LazyValues``): the tiled renderer then reads it a
    tile at a time. The window must be known (a whole-plane pass is what this avoids).

    ``size`` (as ``prepare_image``'s): a plane larger than that is resized now, read a band of
    rows at a time, into temporary files (``memory.FileArray``), for a render through files.
    NaN pixels are counted (and warned of: ``images.warn_nan``) while a plane is resized, which
    reads it whole anyway; a plane kept at full size is not scanned for them."""
    if plane.ndim == 3 and plane.shape[2] == 1:
        plane = plane[..., 0]
    if not (plane.ndim == 2 or (plane.ndim == 3 and plane.shape[2] == 3)):
        raise ValueError(
            f"{name}: shape {tuple(plane.shape)}; a plane read lazily is (H, W) or (H, W, 3)"
        )
    low, high = (float(v) for v in window)
    values, grayscale = LazyValues(plane, (low, high)), plane.ndim == 2
    height, width = plane.shape[:2]
    target = target_shape(height, width, size)
    if shrinks((height, width), target):
        nan_pixels = 0

        def read(r0, r1):
            nonlocal nan_pixels
            block = values.raw(slice(r0, r1))
            if block.dtype.kind == "f":
                nan_pixels += count_nan_pixels(block)
            return to_unit(block, low, high)

        image = resampled_image(
            read,
            None,
            (height, width),
            target,
            grayscale,
            (low, high),
            np.dtype(plane.dtype),
            in_file=True,
        )
        warn_nan(name, nan_pixels, height * width)
        return image
    return PreparedImage(values, grayscale, None, (low, high), np.dtype(plane.dtype))
