"""The Magenta transformer's forward pass as predict runs it (``render``, ``render_into``): fused,
at any size, and tiled with exact global statistics in bounded memory.

Here are the source, the destination and the whole and tiled renders; the stages they run on
each piece are in ``stages``, the fused kernels in ``fused``, the tiles and the quarter-resolution
stream in ``tiles``. It differs from ``StyleTransformer.forward`` (the readable reference) only in
speed and memory, not in what it computes:

* Any size: the content is reflect-padded to a multiple of 4 (two stride-2 convolutions and two x2
  upsamplings) and the result cropped back.
* Fusion: a conditional instance norm followed by ReLU, ``relu(x * s + t)``, is written as
  ``s * clamp(x, lo, hi) + t`` (bounds per channel from the sign of ``s``); the clamp writes
  straight into the reflect-padded input buffer of the next convolution, and ``s``, ``t`` are
  folded into that convolution's weights and bias. The residual stream carries its pending
  offset the same way. "Nearest x2 upsampling, reflect pad 1, 3x3 convolution" is computed as four
  2x2 convolutions on the low-resolution input (sub-pixel form, 2.25x fewer multiply-adds, no
  upsampled copy), and the final 9x9 convolution as a 5x5 convolution on the space-to-depth
  rearranged input (12 output channels instead of 3 keep the CPU kernels busy).
* Tiling (images whose padded longer side exceeds ``tile_size``, see ``tile_grid``): instance norm
  needs per-channel statistics of the *whole* feature map, so tiles normalised with their own
  statistics would differ in tone and show seams. Here the statistics are global and exact,
  summed over all tiles in streaming passes:

  - the contraction runs tile by tile, each tile with an 8-pixel halo, into the quarter-resolution
    stream (32 channels at 1/16 of the pixels, held as one tensor per row of tiles);
  - each residual block makes three passes over the stream's tiles: the statistics of its first
    convolution; those of its second; the update, whose new rows replace the old ones a row of
    tiles behind, once no later tile reads them. Each pass takes the convolution outputs it needs
    from the previous pass where they were kept (up to ``keep_bytes``) and recomputes the others;
  - the upsampling part makes three passes over full-resolution tiles with the 8-pixel halo (the
    statistics of its first, second and third normalisation); the last one writes the
    pre-normalised output into the destination and frees the stream's rows behind it, and a final
    sweep normalises the destination in place, a band of rows at a time.

  Beyond the source and the destination, memory is the stream (2/3 of a float32 RGB image of the
  same size), which shrinks while the destination fills, the kept outputs and the working set
  of a band of a tile (``PIECE_ROWS``: the full-resolution passes run a band of rows at a time;
  freed buffers go back to the system between passes, ``memory.release_freed_memory``). With
  ``features_on_disk`` the stream lives in files instead, read and written a tile's window at a
  time (results bigger than memory: ``predict.predict_streamed``). The
  price is recomputation: the upsampling layers run 3, 2 and 1 times, and where the
  kept outputs do not suffice (by default, above about 30 megapixels), a residual block's first
  convolution runs up to three times and its second twice (about +25 % time in all). There are
  no seams to blend away: tiled and whole-image results differ only by float rounding (the
  statistics are the same sums, added in another order).

Source and destination: the content is an (H, W, 3) array-like of floats in [0, 1] that is read
with ``[r0:r1, c0:c1]`` (numpy, np.memmap, zarr) or a ``PreparedImage`` (converted tile by tile);
``render_into`` writes into any (H, W, 3) float32 array-like the caller gives: numpy arrays
(np.memmap included) in place, others (zarr) a block at a time with ``[r0:r1, c0:c1] = block``.
"""

from __future__ import annotations

import numpy as np
import torch

from ...images import PreparedImage
from ...memory import release_freed_memory
from .fused import (
    Moments,
    _fill_border,
    _full_window,
    _kernels,
    _padded,
    _window_moments,
    space_to_depth_kernel,
    subpixel_kernel,
)
from .magenta import StyleTransformer, norm_affine
from .stages import _contract, _expand, _write_output
from .tiles import (
    _padded_size,
    _pieces_of,
    _QuarterStream,
    _residual_streamed,
    _residual_whole,
    tile_grid,
)

HALO = 8  # full-resolution pixels of context around a tile (receptive-field slack: 7)
KEEP_BYTES = 256 << 20  # render_into's default keep_bytes
_FINISH_ROWS = 256  # rows per band of the final in-place normalisation


# --- source and destination -----------------------------------------------------------------------


def _reflect_indices(start: int, stop: int, length: int) -> np.ndarray:
    index = np.arange(start, stop)
    index = np.where(index >= length, 2 * (length - 1) - index, index)
    return np.abs(index)


def _content_piece(content, rows: tuple, cols: tuple, device) -> torch.Tensor:
    """Rows and columns of the content (see the module docstring), reflected beyond its edges
    (the padding to a multiple of 4 and the halo), as an (1, 3, h, w) channels-last float32
    tensor on ``device``. Only the block of the content that they cover is read."""
    height, width = content.shape[:2]
    r = _reflect_indices(*rows, height)
    c = _reflect_indices(*cols, width)
    top, left = int(r.min()), int(c.min())
    box = (slice(top, int(r.max()) + 1), slice(left, int(c.max()) + 1))
    piece = content.read(*box) if isinstance(content, PreparedImage) else np.asarray(content[box])
    if len(r) != piece.shape[0] or r[0] != top or len(c) != piece.shape[1] or c[0] != left:
        piece = piece[r - top][:, c - left]
    tensor = torch.from_numpy(np.ascontiguousarray(piece, dtype=np.float32))
    return tensor.permute(2, 0, 1)[None].to(device)  # HWC memory: channels-last already


def _in_destination(destination, rows: slice, cols: slice, change, *, read: bool) -> None:
    """Call ``change`` on ``destination[rows, cols]`` as a writable float32 numpy array: a view of
    a numpy destination (np.memmap included); for other array-likes (zarr) a block, read first
    when ``read``, written back afterwards."""
    if isinstance(destination, np.ndarray):
        change(destination[rows, cols])
        return
    if read:
        block = np.asarray(destination[rows, cols], dtype=np.float32)  # a new array already
    else:
        height, width = destination.shape[:2]
        block = np.empty((len(range(height)[rows]), len(range(width)[cols]), 3), np.float32)
    change(block)
    destination[rows, cols] = block


# --- rendering ------------------------------------------------------------------------------------


def render(
    transformer: StyleTransformer,
    content,
    embedding: torch.Tensor,
    tile_size: int | None = None,
    *,
    bottleneck=None,
) -> np.ndarray:
    """Stylise the (H, W, 3) content in [0, 1] of any size (an array or a ``PreparedImage``) with
    ``embedding`` (1, 100, 1, 1): a new float32 (H, W, 3) array in [0, 1] (``render_into``)."""
    output = np.empty((*content.shape[:2], 3), dtype=np.float32)
    render_into(transformer, content, embedding, output, tile_size, bottleneck=bottleneck)
    return output


@torch.inference_mode()
def render_into(
    transformer: StyleTransformer,
    content,
    embedding: torch.Tensor,
    destination,
    tile_size: int | None = None,
    *,
    keep_bytes: int = KEEP_BYTES,
    bottleneck=None,
    features_on_disk: bool = False,
) -> None:
    """Stylise ``content`` into ``destination``, an (H, W, 3) float32 array-like (see the module
    docstring for both).

    Images whose padded longer side exceeds ``tile_size`` are rendered tile by tile with global
    normalisation statistics (``tile_grid``; the result is the same up to float rounding).
    ``keep_bytes``: how much memory tiled rendering may spend on keeping convolution outputs
    between passes instead of recomputing them (0: least memory; the result is the same).
    ``bottleneck``: a function given the features after the residual blocks, (1, 32, rows/4,
    cols/4) of the content padded to a multiple of 4 (``bottleneck_shape``), that returns the
    features to upsample (a stack's plane is pulled towards the previous plane's there); with
    it, a tiled render holds the whole feature map twice for that moment.
    ``features_on_disk``: a tiled render keeps its quarter-resolution features
    (``_QuarterStream``) in unnamed temporary files instead of in memory, for results bigger
    than memory (the result is the same; ``bottleneck`` needs them in memory).
    """
    if features_on_disk and bottleneck is not None:
        raise ValueError(
            "render_into: bottleneck needs the features in memory; pass "
            "features_on_disk=False with it"
        )
    height, width = content.shape[:2]
    expected = (height, width, 3)
    if tuple(destination.shape) != expected or np.dtype(destination.dtype) != np.float32:
        raise ValueError(
            f"destination: shape {tuple(destination.shape)}, dtype "
            f"{destination.dtype}; the result needs float32 of shape {expected}, "
            f"e.g. np.empty({expected}, np.float32)"
        )
    device = next(transformer.parameters()).device
    embedding = embedding.to(device)
    kernels = _kernels(transformer)
    row_spans, col_spans = tile_grid(height, width, tile_size)
    if len(row_spans) == len(col_spans) == 1:
        _render_whole(kernels, content, embedding, destination, device, bottleneck)
    else:
        _render_tiled(
            kernels,
            content,
            embedding,
            destination,
            device,
            row_spans,
            col_spans,
            keep_bytes,
            bottleneck,
            features_on_disk,
        )


def bottleneck_shape(height: int, width: int) -> tuple[int, int]:
    """Rows and columns of the features that ``render_into``'s ``bottleneck`` is given for an
    image of ``height`` x ``width``."""
    return _padded_size(height) // 4, _padded_size(width) // 4


def _replace_bottleneck(bottleneck, pieces: list, offset: torch.Tensor) -> None:
    """Hand the features held in ``pieces`` (row bands of one map, each still owing the
    per-channel ``offset``) to ``bottleneck`` and write what it returns back into them (unless
    it is the very tensor it was given: then the render is the one without ``bottleneck``)."""
    owed = offset.view(1, -1, 1, 1)
    features = torch.cat([piece for piece in pieces], dim=2) + owed
    replaced = bottleneck(features)
    if replaced is features:
        return
    if tuple(replaced.shape) != tuple(features.shape):
        raise ValueError(
            f"bottleneck returned {tuple(replaced.shape)}, expected {tuple(features.shape)}"
        )
    del features
    row = 0
    for piece in pieces:
        piece.copy_(replaced[:, :, row : row + piece.shape[2]] - owed)
        row += piece.shape[2]


def _render_whole(kernels, content, embedding, destination, device, bottleneck=None) -> None:
    height, width = content.shape[:2]
    rows, cols = _padded_size(height), _padded_size(width)
    image = _content_piece(content, (0, rows), (0, cols), device)
    low = _contract(kernels, image)
    del image
    stream = _padded(low, low.shape[1], low.shape[2] + 2, low.shape[3] + 2)
    stream[:, :, 1:-1, 1:-1] = low
    del low
    _fill_border(stream, "reflect")
    style = kernels.style_params(embedding)
    offset = _residual_whole(kernels, stream, style)
    if bottleneck is not None:
        _replace_bottleneck(bottleneck, [stream[:, :, 1:-1, 1:-1]], offset)
    _fill_border(stream, "replicate")
    out = _expand(kernels, stream, offset, style, [])
    del stream
    window = _full_window(out, "s2d")
    mean, var = _window_moments(out, 3, "s2d", *window).result()
    gamma, beta = style[kernels.out]
    scale, shift = norm_affine(gamma, beta, mean, var)
    scale, shift = scale.flatten().to(out.device), shift.flatten().to(out.device)
    _in_destination(
        destination,
        slice(None),
        slice(None),
        lambda block: _write_output(out, *window, block, scale, shift),
        read=False,
    )


def _render_tiled(
    kernels,
    content,
    embedding,
    destination,
    device,
    row_spans: list,
    col_spans: list,
    keep_bytes: int,
    bottleneck=None,
    features_on_disk: bool = False,
) -> None:
    """Render tile by tile with the whole image's statistics, in the passes that the module
    docstring lists."""
    stream = _QuarterStream(
        [(r0 // 4, r1 // 4) for r0, r1 in row_spans],
        col_spans[-1][1] // 4,
        kernels.contract[-1][0].shape[0],
        device,
        features_on_disk,
    )

    # Quarter resolution: the contraction tile by tile (local, with a halo), the residual blocks
    # in passes over the stream's tiles.
    _contract_into_stream(kernels, content, stream, row_spans, col_spans, device)
    release_freed_memory()  # each pass's tile buffers, freed but kept by the allocator
    style = kernels.style_params(embedding)
    quarter_cols = [(c0 // 4, c1 // 4) for c0, c1 in col_spans]
    offset = _residual_streamed(kernels, stream, style, quarter_cols, keep_bytes)
    release_freed_memory()
    if bottleneck is not None:
        _replace_bottleneck(bottleneck, stream.in_memory(), offset)

    # Full resolution: three passes for the three statistics, the last one writing its output.
    stats = _upsampling_stats(kernels, stream, row_spans, col_spans, offset, style)
    moments = _write_upsampled(
        kernels, stream, row_spans, col_spans, offset, style, stats, destination, content.shape[:2]
    )
    release_freed_memory()
    mean, var = moments.result()
    gamma, beta = style[kernels.out]
    scale, shift = norm_affine(gamma, beta, mean, var)
    _normalise_in_place(destination, content.shape[0], scale.flatten().cpu(), shift.flatten().cpu())


def _contract_into_stream(kernels, content, stream, row_spans, col_spans, device) -> None:
    """The contraction, a band of a tile at a time (``_pieces_of``) with a ``HALO``, written into
    the stream's bands (one per row of tiles)."""
    rows, cols = row_spans[-1][1], col_spans[-1][1]
    for index, band_rows in enumerate(row_spans):
        stream.begin_band(index)
        for r0, r1 in _pieces_of(band_rows):
            for c0, c1 in col_spans:
                a0, a1 = max(0, r0 - HALO), min(rows, r1 + HALO)
                b0, b1 = max(0, c0 - HALO), min(cols, c1 + HALO)
                piece = _contract(kernels, _content_piece(content, (a0, a1), (b0, b1), device))
                stream.write(
                    index,
                    (c0 // 4, c1 // 4),
                    piece[:, :, (r0 - a0) // 4 : (r1 - a0) // 4, (c0 - b0) // 4 : (c1 - b0) // 4],
                    rows=(r0 // 4, r1 // 4),
                )
        stream.commit(index)


def _low_rows(stream, r0: int, r1: int) -> tuple[int, int]:
    """The stream rows under full-resolution rows r0..r1 and their halo."""
    return max(0, r0 // 4 - HALO // 4), min(stream.rows, r1 // 4 + HALO // 4)


def _low_pieces(stream, band_rows: list, col_spans: list):
    """The low-resolution pieces (with a replicated border) of the tiles in ``band_rows``, a
    band of a tile at a time (``_pieces_of``), and where each lies in its piece and in the
    image."""
    for r0, r1 in (piece for span in band_rows for piece in _pieces_of(span)):
        for c0, c1 in col_spans:
            a0, a1 = _low_rows(stream, r0, r1)
            b0, b1 = max(0, c0 // 4 - HALO // 4), min(stream.cols, c1 // 4 + HALO // 4)
            low = stream.read((a0 - 1, a1 + 1), (b0 - 1, b1 + 1), "replicate")
            yield low, (r0 - 4 * a0, r1 - 4 * a0), (c0 - 4 * b0, c1 - 4 * b0), (r0, c0)


def _upsampling_stats(kernels, stream, row_spans, col_spans, offset, style) -> list:
    """The (mean, var) of the upsampling's first two normalisations: a pass over the tiles each,
    the second using the first's."""
    stats = []
    for layer, channels, factor in ((0, 16, 2), (1, 8, 1)):
        moments = Moments(channels, stream.device)
        for low, (y0, y1), (x0, x1), _ in _low_pieces(stream, row_spans, col_spans):
            out = _expand(kernels, low, offset, style, stats, until=layer)
            _window_moments(
                out,
                channels,
                "subpixel",
                (y0 // factor, y1 // factor),
                (x0 // factor, x1 // factor),
                moments,
            )
        stats.append(moments.result())
    return stats


def _write_upsampled(
    kernels, stream, row_spans, col_spans, offset, style, stats, destination, shape
) -> Moments:
    """The last pass: the pre-normalised output into ``destination`` (cropped to the image's
    ``shape``), a row of tiles at a time, freeing the stream's rows behind it. Returns the
    moments of the output, for its normalisation."""
    height, width = shape
    moments = Moments(3, stream.device)
    for index, band_rows in enumerate(row_spans):
        for low, (y0, y1), (x0, x1), (r0, c0) in _low_pieces(stream, [band_rows], col_spans):
            out = _expand(kernels, low, offset, style, stats, until=2)
            _window_moments(out, 3, "s2d", (y0, y1), (x0, x1), moments)
            if r0 < height and c0 < width:  # the pre-normalised output, cropped to the image
                _in_destination(
                    destination,
                    slice(r0, min(height, r0 + y1 - y0)),
                    slice(c0, min(width, c0 + x1 - x0)),
                    lambda block: _write_output(out, (y0, y1), (x0, x1), block),
                    read=False,
                )
        if index + 1 < len(row_spans):
            stream.release_rows_before(_low_rows(stream, *row_spans[index + 1])[0] - 1)
    stream.release_rows_before(stream.rows)
    return moments


def _normalise_in_place(destination, height: int, scale, shift) -> None:
    """The final sweep: normalise the pre-normalised output in ``destination`` and apply the
    sigmoid, a band of rows at a time (no full-size temporaries)."""
    for r0 in range(0, height, _FINISH_ROWS):
        _in_destination(
            destination,
            slice(r0, r0 + _FINISH_ROWS),
            slice(None),
            lambda block: torch.from_numpy(block).mul_(scale).add_(shift).sigmoid_(),
            read=True,
        )


__all__ = [
    "HALO",
    "KEEP_BYTES",
    "Moments",
    "bottleneck_shape",
    "render",
    "render_into",
    "space_to_depth_kernel",
    "subpixel_kernel",
    "tile_grid",
]
