"""Pixel values mapped to float32 [0, 1], a band of rows at a time: the arithmetic that the input
contract (``images``), the planes read on demand (``lazy_images``), the resizing (``resample``)
and the output (``output``) share. Nothing here modifies the caller's array."""

from __future__ import annotations

import numpy as np

#: Values per block when reading, mapping or resizing (4 MB as float32). ``resample`` reads it
#: at call time, so patching it here changes the bands everywhere.
BLOCK_VALUES = 1 << 20


def bands(values: np.ndarray):
    """(start, stop) row ranges of about ``BLOCK_VALUES`` values each."""
    height = values.shape[0]
    step = max(1, BLOCK_VALUES // max(1, values[:1].size))
    return [(r, min(height, r + step)) for r in range(0, height, step)]


def mapped(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``to_unit`` of the whole of ``values``, a band at a time into one float32 array."""
    out = np.empty(values.shape, np.float32)
    for r0, r1 in bands(values):
        out[r0:r1] = to_unit(values[r0:r1], low, high)
    return out


def to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` (a block of any numeric dtype) mapped from (low, high) to float32 [0, 1]; NaN and
    -inf go to 0, +inf to 1.

    float64 data is mapped in float64: its finite values can lie beyond float32's range (1e308).
    The arithmetic runs on halves, so that neither ``v - low`` nor ``high - low`` can overflow
    (halving is exact: the results are those of ``(v - low) / (high - low)``).
    """
    wide = values.dtype.kind == "f" and values.dtype.itemsize > 4
    work = values.astype(np.float64 if wide else np.float32)  # a copy: the input stays untouched
    work *= 0.5
    work -= 0.5 * low
    work /= 0.5 * high - 0.5 * low
    np.fmax(work, 0.0, out=work)  # NaN and -inf -> 0
    np.fmin(work, 1.0, out=work)  # +inf -> 1
    return work.astype(np.float32, copy=False)


def alpha_scale(dtype: np.dtype) -> float:
    """The value of a fully opaque pixel: an integer dtype's maximum, 1 for floats (as napari's
    display and the image file formats read alpha)."""
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def alpha_to_unit(channel: np.ndarray) -> np.ndarray:
    """An alpha channel as opacity in [0, 1] (``alpha_scale``: fully opaque)."""
    return to_unit(channel, 0.0, alpha_scale(channel.dtype))


def count_nan_pixels(block: np.ndarray) -> int:
    """Pixels of a float block (rows, cols[, channels]) with a NaN in any channel."""
    nan = np.isnan(block)
    return int((nan.any(axis=2) if nan.ndim == 3 else nan).sum())
