"""Results back out: grayscale content gives a grey result, ``keep_colors`` restores the content's
chroma, and ``output_image`` gives back the content's alpha and, on request, its intensity range
and dtype -- the one place that maps results back to the input (``images`` maps them in).
"""

from __future__ import annotations

import math

import numpy as np

from ..settings import OUTPUT_RANGES
from .image_values import alpha_scale, bands
from .images import PreparedImage
from .resample import resize_array

#: Side of the blocks in which a result rendered into a file is finished (``finish_into``).
FINISH_BLOCK = 512


# ITU-R BT.601 luma and the YIQ chroma axes: the classic choice for luminance-only transfer.
_RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=np.float32
)
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
    channels, so no invented colour noise); ``keep_colors`` restores the content's chroma; the
    pixels its ``regions`` keep are the content's own (``Regions.keep_content``)."""
    if content.regions is not None:
        result = content.regions.keep_content(result, lambda shape: _content_at(content, shape))
    if content.grayscale:
        return np.repeat(luminance(result)[..., None], 3, axis=2).astype(np.float32)
    if keep_colors:
        return transfer_luminance(result, _content_at(content, result.shape[:2]))
    return result


def _content_at(content: PreparedImage, shape) -> np.ndarray:
    colors = content.rgb
    return colors if colors.shape[:2] == tuple(shape) else resize_array(colors, shape)


def output_image(
    image: np.ndarray, content: PreparedImage, output_range: str = "unit"
) -> np.ndarray:
    """A result as runs hand it out: ``image`` (from ``finish_image``) plus the content's alpha
    resized to it, (H, W, 4), when the content had one.

    ``output_range`` "unit" keeps float32 in [0, 1]; "content" undoes ``prepare_image``'s mapping:
    colour through the content's window, alpha over its dtype's range, then integers are rounded and
    clipped into the content's dtype (floats stay float32), so a uint16 image comes back as uint16
    in its own intensity range. This is the one place that maps results back to the input.
    """
    if output_range not in OUTPUT_RANGES:
        raise ValueError(
            f"output_range={output_range!r} is not supported; choose one of "
            f"{', '.join(OUTPUT_RANGES)}"
        )
    if content.alpha is not None:
        alpha = content.alpha
        if alpha.shape != image.shape[:2]:
            alpha = resize_array(alpha[..., None], image.shape[:2])[..., 0]
        image = np.concatenate([image, alpha[..., None]], axis=2)
    if output_range == "unit":
        return image.astype(np.float32, copy=False)
    out = np.empty(image.shape, output_dtype(content.dtype, output_range))
    for r0, r1 in bands(image):  # a band at a time: no float64 copy of a large result
        out[r0:r1] = _from_unit(image[r0:r1], content)
    return out


def output_dtype(content_dtype, output_range: str) -> np.dtype:
    """The dtype of ``output_image``'s result for content of ``content_dtype``: float32, or with
    ``output_range="content"`` the content's dtype where it is an integer."""
    dtype = np.dtype(content_dtype)
    if output_range == "content" and np.issubdtype(dtype, np.integer):
        return dtype
    return np.dtype(np.float32)


def _from_unit(block: np.ndarray, content: PreparedImage) -> np.ndarray:
    """``output_image``'s "content" mapping of one block of rows."""
    low, high = content.window
    values = block.astype(np.float64)  # a copy; float64 keeps integer levels exact before rounding
    colour = values[..., :3]
    if math.isfinite(high - low):
        colour *= high - low
        colour += low
    else:  # float64 data near +-1e308: the same line without the overflowing high - low
        colour[:] = (1.0 - colour) * low + colour * high
    if content.alpha is not None:
        values[..., 3] *= alpha_scale(content.dtype)
    if not np.issubdtype(content.dtype, np.integer):
        return values
    info = np.iinfo(content.dtype)
    return np.clip(np.rint(values, out=values), info.min, info.max, out=values)


def finish_into(
    raw,
    content: PreparedImage,
    destination,
    keep_colors: bool,
    output_range: str,
    index: tuple = (),
    block: tuple[int, int] = (FINISH_BLOCK, FINISH_BLOCK),
) -> None:
    """``output_image(finish_image(raw, ...))`` of a raw (H, W, 3) result too big for memory (an
    array or a ``memory.FileArray``) into ``destination[(*index, rows, cols)]``, a block of
    ``block`` pixels at a time."""
    height, width = content.shape[:2]
    rows, cols = block
    for r0 in range(0, height, rows):
        for c0 in range(0, width, cols):
            box = (slice(r0, r0 + rows), slice(c0, c0 + cols))
            part = content.crop(*box)
            destination[(*index, *box)] = output_image(
                finish_image(np.asarray(raw[box]), part, keep_colors), part, output_range
            )
