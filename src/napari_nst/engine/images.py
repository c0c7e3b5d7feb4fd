"""Layer data in, RGB in [0, 1] out: the engine's input contract.

Accepted: 2-D grayscale (H, W) or (H, W, 1), RGB (H, W, 3) and RGBA (H, W, 4), of any integer or
float dtype. Values are mapped to [0, 1] by an optional intensity window (low, high) -- napari's
contrast limits -- or, without one, the way napari reads RGB data: uint8 as 0..255, float RGB(A)
already inside [0, 1] as it is, anything else (uint16, other integers, other floats, grayscale) by
its own finite min..max. Grayscale is repeated into three channels and flagged, so the result can
be turned back into grayscale (see ``finish_image``). An RGBA input's alpha is kept aside, read as
the display does (integers over their dtype's full range, floats as 0..1), and given back to the
result by ``output_image``, which can also map the result back into the input's window and dtype.

Nothing here modifies the caller's array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..settings import OUTPUT_RANGES

MIN_SIDE = 16


@dataclass(frozen=True)
class PreparedImage:
    """An input mapped to float32 RGB (H, W, 3) in [0, 1], with what is needed to undo that:
    the window (low, high) mapped to (0, 1), the input's dtype and its alpha (float32 (H, W) in
    [0, 1]; None without one)."""

    rgb: np.ndarray
    grayscale: bool
    alpha: np.ndarray | None = None
    window: tuple = (0.0, 1.0)
    dtype: np.dtype = np.dtype(np.float32)


def prepare_image(data, window=None, *, name: str = "image") -> PreparedImage:
    """Validate ``data`` and map it to RGB in [0, 1]; ValueError says what to do when it is unusable."""
    array = np.asarray(data)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"{name}: data of type {array.dtype} is not an image; pass a numeric "
                         "array (uint8, uint16, int or float)")
    if array.size == 0:
        raise ValueError(f"{name}: the image is empty (shape {array.shape}); pass an image with pixels")
    if array.ndim < 2:
        raise ValueError(f"{name}: shape {array.shape} has {array.ndim} dimension(s); pass a 2-D "
                         "grayscale (H, W) or a colour (H, W, 3|4) image")
    if array.ndim > 3:
        raise ValueError(f"{name}: shape {array.shape} has {array.ndim} dimensions; pass one 2-D "
                         "slice of a stack, e.g. data[z] (napari: the slice on screen)")
    if array.ndim == 3 and array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name}: shape {array.shape} has {array.shape[-1]} channels in the last "
                         "axis; pass grayscale (H, W), RGB (H, W, 3) or RGBA (H, W, 4) -- for a "
                         "z-stack or multichannel image pick one 2-D slice first")
    height, width = array.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"{name}: {height}x{width} pixels is too small; each side needs at least "
                         f"{MIN_SIDE} pixels")

    channels = array.shape[2] if array.ndim == 3 else 1
    alpha = None
    if channels == 4:
        alpha = _alpha(array[..., 3])
        array = array[..., :3]
    elif channels == 1 and array.ndim == 3:
        array = array[..., 0]
    grayscale = array.ndim == 2

    values = array.astype(np.float32)  # always a copy: the caller's data stays untouched
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError(f"{name}: the image has no finite values (all NaN or inf)")

    if window is not None:
        low, high = (float(v) for v in window)
        if not high > low:
            raise ValueError(f"{name}: intensity window {window!r} needs high > low")
    elif array.dtype == np.uint8:
        low, high = 0.0, 255.0
    elif not grayscale and np.issubdtype(array.dtype, np.floating) and \
            values[finite].min() >= 0.0 and values[finite].max() <= 1.0:
        low, high = 0.0, 1.0
    else:
        low, high = float(values[finite].min()), float(values[finite].max())
        if high <= low:  # a constant image: mid-grey rather than a division by zero
            low, high = low - 1.0, low + 1.0

    values = _to_unit(values, low, high)
    if grayscale:
        values = np.repeat(values[..., None], 3, axis=2)
    return PreparedImage(np.ascontiguousarray(values, dtype=np.float32), grayscale, alpha,
                         (low, high), array.dtype)


def _to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """float32 ``values`` mapped from (low, high) to [0, 1]; NaN and -inf go to 0, +inf to 1."""
    values = np.where(np.isfinite(values), values, np.where(np.isposinf(values), high, low))
    values -= low
    values /= (high - low)
    return np.clip(values, 0.0, 1.0, out=values)


def _alpha_scale(dtype: np.dtype) -> float:
    """The value of a fully opaque pixel: an integer dtype's maximum, 1 for floats (as napari's
    display and the image file formats read alpha)."""
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def _alpha(channel: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(_to_unit(channel.astype(np.float32), 0.0, _alpha_scale(channel.dtype)))


# ITU-R BT.601 luma and the YIQ chroma axes: the classic choice for luminance-only transfer.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.596, -0.274, -0.322],
                        [0.211, -0.523, 0.312]], dtype=np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an (H, W, 3) image."""
    return rgb @ _RGB_TO_YIQ[0]


def transfer_luminance(result: np.ndarray, colors_from: np.ndarray) -> np.ndarray:
    """The luma of ``result`` with the chroma (YIQ I and Q) of ``colors_from``.

    This is the luminance-only transfer of Gatys et al. 2016 ("Preserving color in neural artistic
    style transfer"), applied to the output: the texture comes from the stylised image, the
    colours from the content.
    """
    yiq = colors_from @ _RGB_TO_YIQ.T
    yiq[..., 0] = luminance(result)
    return np.clip(yiq @ _YIQ_TO_RGB.T, 0.0, 1.0).astype(np.float32)


def finish_image(result: np.ndarray, content: PreparedImage, keep_colors: bool) -> np.ndarray:
    """Final (H, W, 3) float32 image: grayscale content gives a grey result (luma in all three
    channels, so no invented colour noise); ``keep_colors`` restores the content's chroma."""
    if content.grayscale:
        return np.repeat(luminance(result)[..., None], 3, axis=2).astype(np.float32)
    if keep_colors:
        colors = content.rgb
        if colors.shape[:2] != result.shape[:2]:
            colors = resize_array(colors, result.shape[:2])
        return transfer_luminance(result, colors)
    return result


def output_image(image: np.ndarray, content: PreparedImage, output_range: str = "unit") -> np.ndarray:
    """A result as runs hand it out: ``image`` (from ``finish_image``) plus the content's alpha
    resized to it, (H, W, 4), when the content had one.

    ``output_range`` "unit" keeps float32 in [0, 1]; "content" undoes ``prepare_image``'s mapping:
    colour through the content's window, alpha over its dtype's range, then integers are rounded and
    clipped into the content's dtype (floats stay float32), so a uint16 image comes back as uint16
    in its own intensity range. This is the one place that maps results back to the input.
    """
    if output_range not in OUTPUT_RANGES:
        raise ValueError(f"output_range={output_range!r} is not supported; choose one of "
                         f"{', '.join(OUTPUT_RANGES)}")
    if content.alpha is not None:
        alpha = content.alpha
        if alpha.shape != image.shape[:2]:
            alpha = np.clip(resize_array(alpha[..., None], image.shape[:2])[..., 0], 0.0, 1.0)
        image = np.concatenate([image, alpha[..., None]], axis=2)
    if output_range == "unit":
        return image.astype(np.float32, copy=False)
    low, high = content.window
    values = image.astype(np.float64)  # a copy; float64 keeps integer levels exact before rounding
    values[..., :3] = low + values[..., :3] * (high - low)
    if content.alpha is not None:
        values[..., 3] *= _alpha_scale(content.dtype)
    if not np.issubdtype(content.dtype, np.integer):
        return values.astype(np.float32)
    info = np.iinfo(content.dtype)
    return np.clip(np.rint(values), info.min, info.max).astype(content.dtype)


def resize_array(rgb: np.ndarray, shape) -> np.ndarray:
    """Antialiased bilinear resize of an (H, W, C) float image (no torch needed by callers)."""
    from PIL import Image

    height, width = int(shape[0]), int(shape[1])
    channels = [Image.fromarray(np.ascontiguousarray(rgb[..., c], dtype=np.float32)).resize(
        (width, height), Image.Resampling.BILINEAR) for c in range(rgb.shape[2])]
    return np.stack([np.asarray(c, dtype=np.float32) for c in channels], axis=2)


def working_shape(height: int, width: int, size: int, min_side: int = MIN_SIDE) -> tuple[int, int]:
    """(H, W) scaled so that the longer side is ``size`` pixels, keeping the aspect ratio, but
    never below ``min_side`` (VGG-19's deepest layers need 16 px)."""
    scale = max(size / max(height, width), min_side / min(height, width))
    return max(min_side, round(height * scale)), max(min_side, round(width * scale))
