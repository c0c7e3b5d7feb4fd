"""Layer data in, RGB in [0, 1] out: the engine's input contract.

Accepted: 2-D grayscale (H, W) or (H, W, 1), RGB (H, W, 3) and RGBA (H, W, 4), of any integer or
float dtype. Values are mapped to [0, 1] by an optional intensity window (low, high) -- napari's
contrast limits -- or, without one, the way napari reads RGB data: uint8 as 0..255, float RGB(A)
already inside [0, 1] as it is, anything else (uint16, other integers, other floats, grayscale) by
its own finite min..max. Grayscale is repeated into three channels and flagged, so the result can
be turned back into grayscale (see ``finish_image``). An RGBA input's alpha is kept aside, read as
the display does (integers over their dtype's full range, floats as 0..1), and given back to the
result by ``output_image``, which can also map the result back into the input's window and dtype.

Memory: the input is read a band of rows at a time (the window's min..max, the mapping, the
resizing), never as one float copy. Given the size it will be used at, an image is resized while
it is mapped, so a 16384^2 image for a 512 px result costs little beyond the input itself; kept
at full size, the pixels stay in a compact form (see ``PreparedImage``) and are converted where
they are read -- the tiled renderer does that tile by tile.

Nothing here modifies the caller's array. The mapping of values to [0, 1] is in ``image_values``,
the resizing in ``resample``, planes read only when asked (dask, zarr) in ``lazy_images``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np

from .image_values import alpha_scale, alpha_to_unit, bands, count_nan_pixels, mapped, to_unit
from .memory import FileArray
from .resample import resample_rows

MIN_SIDE = 16
_CHANNEL_AXIS_HINT = (1, 3, 4)


@dataclass(frozen=True)
class PreparedImage:
    """An input mapped to RGB in [0, 1], with what is needed to undo that: the window
    (low, high) mapped to (0, 1), the input's dtype and its alpha (float32 (H, W) in [0, 1]; None
    without one).

    ``values`` holds the pixels compactly, grayscale as one (H, W) plane: float32 already in
    [0, 1], or -- for an input narrower than float32 (uint8, uint16, int8, int16, float16) kept at
    full size -- the input's own values (a read-only view where they are contiguous), mapped on
    every read. A uint8 image thus costs nothing more here, not the 4x of float32 RGB. ``rgb``
    gives the whole image as float32 (H, W, 3), ``read`` a block of it.
    """

    values: np.ndarray
    grayscale: bool
    alpha: np.ndarray | None = None
    window: tuple = (0.0, 1.0)
    dtype: np.dtype = np.dtype(np.float32)
    #: The content's ``regions.Regions`` (a style per label) at this image's size, or None.
    regions: object = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of ``rgb``: (H, W, 3)."""
        return (*self.values.shape[:2], 3)

    @property
    def rgb(self) -> np.ndarray:
        """The whole image, float32 (H, W, 3) in [0, 1]; the stored array when it is one, else a
        new array (a compact image is converted on every call)."""
        if (
            isinstance(self.values, np.ndarray)
            and self.values.dtype == np.float32
            and not self.grayscale
        ):
            return self.values
        return self.read()

    def read(self, rows=slice(None), cols=slice(None)) -> np.ndarray:
        """float32 RGB in [0, 1] of the pixels ``[rows][:, cols]`` (slices or integer index
        arrays): what the tiled renderer reads, one tile at a time."""
        if isinstance(rows, slice) and isinstance(cols, slice):  # one block: zarr reads its chunks
            block = np.asarray(self.values[rows, cols])
        else:
            block = self.values[rows][:, cols]
        if block.dtype != np.float32:
            block = to_unit(block, *self.window)
        if self.grayscale:
            block = np.repeat(block[..., None], 3, axis=2)
        return block

    def crop(self, rows: slice, cols: slice) -> PreparedImage:
        """The block ``[rows, cols]`` of this image as a PreparedImage of its own (read now)."""
        values = np.asarray(self.values[rows, cols])
        alpha = None if self.alpha is None else self.alpha[rows, cols]
        regions = None if self.regions is None else self.regions.crop(rows, cols)
        return PreparedImage(values, self.grayscale, alpha, self.window, self.dtype, regions)

    def resized(self, shape) -> PreparedImage:
        """This image at ``shape`` (H, W): colour with the antialiased bicubic filter that the
        engine's torch resizes use, alpha bilinear, a band of rows at a time (no float32 copy at
        this image's own size)."""
        shape = (int(shape[0]), int(shape[1]))
        if shape == self.values.shape[:2]:
            return self
        values, window = self.values, self.window
        if values.dtype == np.float32:
            colour = lambda r0, r1: values[r0:r1]  # noqa: E731
        else:
            colour = lambda r0, r1: to_unit(values[r0:r1], *window)  # noqa: E731
        alpha = None if self.alpha is None else (lambda r0, r1: self.alpha[r0:r1])
        image = resampled_image(
            colour, alpha, values.shape[:2], shape, self.grayscale, window, self.dtype
        )
        if self.regions is None:
            return image
        return dataclasses.replace(image, regions=self.regions.resized(shape))


def prepare_image(
    data, window=None, *, name: str = "image", size=None, in_file_above: int | None = None
) -> PreparedImage:
    """Validate ``data`` and map it to RGB in [0, 1]; ValueError says what to do when it is unusable.

    ``size`` says where the image will be used: an int is the longer side (as ``Settings.size``,
    see ``working_shape``), a pair the shape (H, W). An image larger than that is resized now,
    while it is mapped, instead of at its own size first; a smaller one is left to the engine.
    ``in_file_above``: a resized image of more pixels than this keeps them in temporary files
    (``memory.FileArray``), not as float32 in memory (renders through files read it by tiles).
    """
    array = _image_array(data, name)
    height, width = array.shape[:2]
    colour, alpha_plane = array, None  # views
    if array.ndim == 3 and array.shape[2] == 4:
        colour, alpha_plane = array[..., :3], array[..., 3]
    elif array.ndim == 3 and array.shape[2] == 1:
        colour = array[..., 0]
    grayscale = colour.ndim == 2
    finite, nan_pixels = _float_scan(colour) if colour.dtype.kind == "f" else (None, 0)
    low, high = _window(colour, window, grayscale, name, finite)
    warn_nan(name, nan_pixels, height * width)

    target = target_shape(height, width, size)
    if shrinks((height, width), target):
        alpha = None if alpha_plane is None else (lambda r0, r1: alpha_to_unit(alpha_plane[r0:r1]))
        in_file = in_file_above is not None and target[0] * target[1] > in_file_above
        return resampled_image(
            lambda r0, r1: to_unit(colour[r0:r1], low, high),
            alpha,
            (height, width),
            target,
            grayscale,
            (low, high),
            array.dtype,
            in_file,
        )
    if colour.dtype.itemsize < 4:  # compact: the input's own values, mapped when read
        values = _read_only_values(colour)
    else:
        values = mapped(colour, low, high)
    alpha = None if alpha_plane is None else mapped(alpha_plane, 0.0, alpha_scale(array.dtype))
    return PreparedImage(values, grayscale, alpha, (low, high), array.dtype)


def _read_only_values(colour: np.ndarray) -> np.ndarray:
    """``colour`` as C-contiguous values the engine cannot write to: a read-only view of a
    contiguous input (no copy: the input's own size is all a full-size compact image costs),
    else a contiguous copy."""
    values = np.ascontiguousarray(colour)
    if np.shares_memory(values, colour):
        values = values.view()
    values.flags.writeable = False
    return values


def _image_array(data, name: str) -> np.ndarray:
    """``data`` as an array of a usable shape and dtype, or a ValueError saying what to pass."""
    array = np.asarray(os.fsdecode(data) if isinstance(data, (bytes, os.PathLike)) else data)
    if array.ndim == 0 and array.dtype.kind in "US":  # a path: "data of type <U24" said nothing
        raise ValueError(
            f"{name}: {str(array)!r} is a file name, not image data; load it "
            "first, e.g. napari_nst.io.read_image(path), or stylize files with the "
            "CLI: napari-nst stylize CONTENT STYLE -o OUT"
        )
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(
            f"{name}: data of type {array.dtype} is not an image; pass a numeric "
            "array (uint8, uint16, int or float)"
        )
    if array.size == 0:
        raise ValueError(
            f"{name}: the image is empty (shape {array.shape}); pass an image with pixels"
        )
    if array.ndim < 2:
        raise ValueError(
            f"{name}: shape {array.shape} has {array.ndim} dimension(s); pass a 2-D "
            "grayscale (H, W) or a colour (H, W, 3|4) image"
        )
    if array.ndim > 3:
        raise ValueError(
            f"{name}: shape {array.shape} has {array.ndim} dimensions; pass one 2-D "
            "slice of a stack, e.g. data[z] (napari: the slice on screen)"
        )
    if array.ndim == 3 and array.shape[-1] not in (1, 3, 4):
        if array.shape[0] in _CHANNEL_AXIS_HINT and min(array.shape[1:]) >= MIN_SIDE:
            raise ValueError(
                f"{name}: shape {array.shape} looks channel-first ({array.shape[0]} "
                "channel(s) in the first axis); put the channels last with "
                "np.moveaxis(data, 0, -1) -- or, for a stack of slices, pass one: "
                "data[0]"
            )
        raise ValueError(
            f"{name}: shape {array.shape} has {array.shape[-1]} channels in the last "
            "axis; pass grayscale (H, W), RGB (H, W, 3) or RGBA (H, W, 4) -- for a "
            "z-stack or multichannel image pick one 2-D slice first"
        )
    height, width = array.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ValueError(
            f"{name}: {height}x{width} pixels is too small; each side needs at least "
            f"{MIN_SIDE} pixels"
        )
    return array


def _window(
    colour: np.ndarray, window, grayscale: bool, name: str, finite: tuple[float, float] | None
) -> tuple[float, float]:
    """The (low, high) mapped to (0, 1); ``finite``: float data's finite min..max
    (``_float_scan``), None for integers or float data without any."""
    if colour.dtype.kind == "f" and finite is None:
        raise ValueError(f"{name}: the image has no finite values (all NaN or inf)")
    if window is not None:
        low, high = (float(v) for v in window)
        if not (math.isfinite(low) and math.isfinite(high) and high > low):
            raise ValueError(
                f"{name}: intensity window {window!r} needs finite values with high > low"
            )
        return low, high
    if colour.dtype == np.uint8:
        return 0.0, 255.0
    low, high = finite if finite is not None else (float(colour.min()), float(colour.max()))
    if not grayscale and colour.dtype.kind == "f" and low >= 0.0 and high <= 1.0:
        return 0.0, 1.0
    if high <= low:  # a constant image: mid-grey rather than a division by zero
        spread = max(1.0, abs(low) * 1e-6)  # 1 unless low + 1 == low in float64
        top = float(np.finfo(np.float64).max)
        return max(low - spread, -top), min(low + spread, top)
    return low, high


def _float_scan(values: np.ndarray) -> tuple[tuple[float, float] | None, int]:
    """((min, max) of the finite values of float data, None without any; the number of pixels
    holding a NaN), in one pass a band at a time (no float copy of the whole input)."""
    low, high, nan_pixels = math.inf, -math.inf, 0
    for r0, r1 in bands(values):
        block = values[r0:r1]
        finite = np.isfinite(block)
        low = min(low, float(block.min(where=finite, initial=np.inf)))
        high = max(high, float(block.max(where=finite, initial=-np.inf)))
        nan_pixels += count_nan_pixels(block)
    return ((low, high) if low <= high else None), nan_pixels


def warn_nan(name: str, nan_pixels: int, pixels: int) -> None:
    """A UserWarning, when an input has NaN pixels, of how many and what they become: NaN maps to
    0, the window's low end (``to_unit``), so they would otherwise turn black silently."""
    if not nan_pixels:
        return
    warnings.warn(
        f"{name}: {nan_pixels} of {pixels} pixels ({100.0 * nan_pixels / pixels:.3g}%) "
        "are NaN; they are treated as the low end of the intensity window (black) and "
        "styled as such. To give them another value, replace them first, e.g. "
        "np.nan_to_num(image, nan=value)",
        UserWarning,
        stacklevel=3,
    )


def target_shape(height: int, width: int, size) -> tuple[int, int]:
    """The (H, W) an image of ``height`` x ``width`` is used at, for ``size`` as
    ``prepare_image`` takes it (None: its own shape)."""
    if size is None:
        return height, width
    if isinstance(size, (int, np.integer)):
        return working_shape(height, width, int(size))
    return int(size[0]), int(size[1])


def shrinks(shape: tuple, target: tuple) -> bool:
    """Whether resizing ``shape`` (H, W) to ``target`` makes it smaller (and not larger on either
    side): the resizes done while an image is read."""
    return target[0] <= shape[0] and target[1] <= shape[1] and tuple(target) != tuple(shape)


def resampled_image(
    colour, alpha, size, shape, grayscale: bool, window, dtype, in_file: bool = False
) -> PreparedImage:
    """A PreparedImage of ``shape`` from row readers (see ``resample_rows``) of colour and alpha
    (None without) in [0, 1], for an image of ``size``; ``in_file``: its pixels in temporary
    files (``FileArray``), not in memory."""

    def plane(read, channels: int, method: str):  # (H, W) for one channel, else (H, W, C)
        if in_file:
            target = FileArray(shape if channels == 1 else (*shape, channels))
            return resample_rows(read, size, shape, channels, method, target)
        values = resample_rows(read, size, shape, channels, method)
        return values[..., 0] if channels == 1 else values

    values = plane(colour, 1 if grayscale else 3, "bicubic")
    alpha = None if alpha is None else plane(alpha, 1, "bilinear")
    return PreparedImage(values, grayscale, alpha, window, dtype)


def working_shape(height: int, width: int, size: int, min_side: int = MIN_SIDE) -> tuple[int, int]:
    """(H, W) scaled so that the longer side is ``size`` pixels, keeping the aspect ratio, but
    never below ``min_side`` (VGG-19's deepest layers need 16 px)."""
    scale = max(size / max(height, width), min_side / min(height, width))
    return max(min_side, round(height * scale)), max(min_side, round(width * scale))
