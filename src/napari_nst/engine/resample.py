"""Antialiased resizing of float images in [0, 1], a band of rows at a time: only bands are ever
held as float, never a copy of the image at its own size (``images`` resizes its inputs with it
while it maps them)."""

from __future__ import annotations

import math

import numpy as np

from . import image_values  # BLOCK_VALUES is read at call time (tests patch it there)

_FILTERS = {"bicubic": 2.0, "bilinear": 1.0}  # PIL filter name: support in pixels at scale 1


def resample_rows(read, size, shape, channels: int, method: str, out=None) -> np.ndarray:
    """Resize an image of ``size`` (H, W) with ``channels`` channels, whose rows ``read(r0, r1)``
    gives as float, to ``shape``: float32 (h, w, channels), clipped to [0, 1], into ``out`` when
    given (an array-like of that shape, or (h, w) for one channel; rows are written a band at
    a time), else a new array.

    PIL's antialiased filters (torch's ``antialias=True`` computes the same), separable: each band
    of input rows is read once, in order, and resized horizontally; each band of output rows is
    then resized vertically from the horizontally resized rows it needs (its filter support plus a
    margin, so that results do not depend on the bands). Only bands are ever held as float.
    """
    from PIL import Image

    resample = getattr(Image.Resampling, method.upper())
    height, width = size
    out_h, out_w = shape
    scale = height / out_h
    margin = math.ceil(_FILTERS[method] * max(scale, 1.0)) + 1
    in_step = max(1, image_values.BLOCK_VALUES // (width * channels))
    out_step = max(1, image_values.BLOCK_VALUES // (out_w * channels * math.ceil(max(scale, 1.0))))
    out = np.empty((out_h, out_w, channels), np.float32) if out is None else out
    rows = np.empty((channels, 0, out_w), np.float32)  # horizontally resized rows start..done-1
    start = done = 0
    for o0 in range(0, out_h, out_step):
        o1 = min(out_h, o0 + out_step)
        top, bottom = o0 * scale, o1 * scale
        first, last = max(0, math.floor(top) - margin), min(height, math.ceil(bottom) + margin)
        if first >= done:
            rows, start, done = rows[:, :0], first, first
        else:
            rows, start = rows[:, first - start :], first
        pieces = [rows]
        while done < last:
            stop = min(height, done + in_step)
            band = np.asarray(read(done, stop)).reshape(stop - done, width, channels)
            pieces.append(
                np.stack(
                    [
                        _pil_resize(band[..., c], (stop - done, out_w), resample)
                        for c in range(channels)
                    ]
                )
            )
            done = stop
        rows = np.concatenate(pieces, axis=1) if len(pieces) > 1 else rows
        band = np.stack(
            [
                _pil_resize(
                    rows[c], (o1 - o0, out_w), resample, box=(0, top - start, out_w, bottom - start)
                )
                for c in range(channels)
            ],
            axis=-1,
        )
        np.clip(band, 0.0, 1.0, out=band)
        out[o0:o1] = band if len(out.shape) == 3 else band[..., 0]
    return out


def _pil_resize(plane: np.ndarray, shape, resample, box=None) -> np.ndarray:
    """One float plane resized with PIL ("F" mode: float32 pixels, double-precision sums)."""
    from PIL import Image

    plane = np.ascontiguousarray(plane, dtype=np.float32)
    if box is None and tuple(shape) == plane.shape:
        return plane
    image = Image.fromarray(plane)
    return np.asarray(image.resize((int(shape[1]), int(shape[0])), resample, box=box))


def resize_array(rgb: np.ndarray, shape) -> np.ndarray:
    """Antialiased bilinear resize of an (H, W, C) float image in [0, 1] (no torch needed by
    callers)."""
    return resample_rows(lambda r0, r1: rgb[r0:r1], rgb.shape[:2], shape, rgb.shape[2], "bilinear")
