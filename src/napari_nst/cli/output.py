"""Where and how ``stylize`` writes: the output's range and bit depth, a grayscale result as one
channel, a temp-folder copy where OUT cannot be written, intermediate files, a stack as TIFF."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def output_plan(dtype, output: Path, bit_depth: int | None, output_range: str | None):
    """(output_range, bit_depth) for writing a result of content of ``dtype`` to ``output``.

    By default the result keeps the content's own intensity range and dtype when the file holds
    that dtype as it is: uint8 content (any format), uint16 content in a TIFF -- so a 16-bit TIFF
    with values 300..3352 comes back as one with values in about 300..3352. Otherwise, or with
    ``output_range="unit"``, the result's 0..1 is stretched over the bit depth, which defaults to 16
    for a TIFF of 16-bit content and 8 otherwise. An explicit "content" that the file cannot hold
    is a ValueError naming the alternatives.
    """
    import numpy as np

    from ..io import TIFF_SUFFIXES

    is_tiff = output.suffix.lower() in TIFF_SUFFIXES
    native = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(np.dtype(dtype))
    if native == 16 and not is_tiff:
        native = None  # PNG and JPEG are written at 8 bits
    if output_range != "unit" and native is not None and bit_depth in (None, native):
        return "content", native
    if output_range == "content":
        if native is None:
            where = (
                "a .tif output"
                if np.dtype(dtype) == np.uint16
                else f"uint8 or uint16 content (this content is {np.dtype(dtype).name})"
            )
            raise ValueError(
                f"--output-range content needs {where}; use --output-range unit "
                "to stretch the result over the output's bit depth"
            )
        raise ValueError(
            f"--output-range content writes {np.dtype(dtype).name} content at "
            f"{native} bits, not --bit-depth {bit_depth}; drop one of the two"
        )
    if bit_depth is None:
        bit_depth = 16 if is_tiff and np.dtype(dtype) == np.uint16 else 8
    return "unit", bit_depth


def output_pixels(image, content):
    """Grayscale content is written as a one-channel image."""
    return (
        image[..., 0]
        if content.ndim == 2 or (content.ndim == 3 and content.shape[2] == 1)
        else image
    )


def intermediate_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}_step{step:04d}{output.suffix}")


def write_somewhere(output: Path, pixels, bit_depth: int) -> tuple[Path | None, str | None]:
    """Write ``pixels`` to ``output``; if that fails, to a new file in the system's temp folder.
    Returns (where it went, or None; why ``output`` failed, or None)."""
    from ..io import write_image

    try:
        return write_image(output, pixels, bit_depth), None
    except Exception as exc:  # a full disk, a folder removed or locked during the run
        problem = f"cannot write {output} ({exc.__class__.__name__}: {exc})"
    try:
        handle, name = tempfile.mkstemp(prefix=f"napari-nst-{output.stem}-", suffix=output.suffix)
        os.close(handle)
        return write_image(name, pixels, bit_depth), problem
    except Exception as exc:
        return None, f"{problem}, nor a copy in {tempfile.gettempdir()} ({exc})"


def write_tiff_stack(path: Path, result, grayscale: bool) -> None:
    """The result planes as pages of one TIFF, plane by plane (never the whole stack in memory),
    its leading axes kept in the file's shape."""
    import numpy as np
    import tifffile

    leading = result.shape[:-3]
    with tifffile.TiffWriter(path) as tiff:
        for index in np.ndindex(*leading):
            plane = np.asarray(result[index])
            plane = plane[..., 0] if grayscale else plane
            first = not any(index)
            tiff.write(
                plane,
                contiguous=True,
                photometric="minisblack" if grayscale else "rgb",
                metadata={"shape": (*leading, *plane.shape)} if first else None,
            )
