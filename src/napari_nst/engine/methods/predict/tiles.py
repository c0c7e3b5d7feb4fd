"""The renderer's tiles and its quarter-resolution stream: the tile grid, the stream of the
residual blocks (in memory or in files), the convolution outputs kept between passes, and the
residual blocks run over the stream, streamed or whole (``renderer`` says how)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...memory import FileArray
from .fused import _CL, Moments, _fill_border, _fold, _Kernels, _norm_params, _padded, _relu_clamp
from .magenta import SIZE_MULTIPLE

_BRANCH_REACH = 2  # stream rows/columns around a tile that a residual branch reads (two 3x3 convs)
#: Full-resolution rows per piece of a tile in the contraction and upsampling passes (see
#: ``_pieces_of``): a whole 1024 px tile held ~150 MB of convolution buffers at once, bands of
#: 256 rows a quarter of that, and were no slower (4096², tiles of 1024: 3.7 s, was 4.4 s).
PIECE_ROWS = 256


def _spans(length: int, tile: int, multiple: int = 1) -> list[tuple[int, int]]:
    """[start, stop) pieces of nearly equal size (multiples of ``multiple``) covering ``length``."""
    count = max(1, math.ceil(length / tile))
    edges = [min(length, round(i * length / count / multiple) * multiple) for i in range(count + 1)]
    edges[-1] = length
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _pieces_of(rows: tuple) -> list[tuple[int, int]]:
    """A tile's full-resolution rows [start, stop) in bands of at most ``PIECE_ROWS`` (multiples
    of 4): the contraction and the upsampling run a band of a tile at a time, each with its own
    halo, so that their working set is a band's, not a tile's."""
    return [
        (rows[0] + a, rows[0] + b) for a, b in _spans(rows[1] - rows[0], PIECE_ROWS, SIZE_MULTIPLE)
    ]


def _padded_size(n: int) -> int:
    return -(-n // SIZE_MULTIPLE) * SIZE_MULTIPLE


def tile_grid(height: int, width: int, tile_size: int | None) -> tuple[list, list]:
    """The tiles ``render`` uses for an image of ``height`` x ``width``: the [start, stop) row and
    column spans of the image padded to a multiple of 4, nearly equal, each at most
    ``tile_size`` (at least 64) and a multiple of 4. One span each means the whole-image path."""
    rows, cols = _padded_size(height), _padded_size(width)
    if tile_size is None or max(rows, cols) <= tile_size:
        return [(0, rows)], [(0, cols)]
    tile = max(SIZE_MULTIPLE * 16, tile_size // SIZE_MULTIPLE * SIZE_MULTIPLE)
    return _spans(rows, tile, SIZE_MULTIPLE), _spans(cols, tile, SIZE_MULTIPLE)


class _QuarterStream:
    """The quarter-resolution features (1, C, rows, cols) of a tiled render, one band per row of
    tiles (``spans``), so that a pass can replace them a band at a time and the last pass can
    free them behind it. Reads may reach one row or column beyond the features on each side: the
    border that the next convolution pads with, by reflection or replication.

    The bands are tensors in memory, or ``on_disk`` unnamed float32 ``FileArray``s (rows, cols,
    C; in ``TMPDIR``), read and written a tile's window at a time: the stream is the renderer's
    largest buffer (2/3 of a float32 RGB image of the same size), and on disk it costs the
    process only the windows in use.
    """

    def __init__(self, spans: list, cols: int, channels: int, device, on_disk: bool = False):
        self.spans, self.rows, self.cols = list(spans), spans[-1][1], cols
        self.channels, self.device, self.on_disk = channels, device, on_disk
        self.bands: list = [None] * len(spans)  # in memory: a tensor; on disk: a FileArray
        self._pending: dict = {}  # band index -> the new version being written

    # --- in memory or on disk ---

    def begin_band(self, index: int) -> None:
        """Start a new version of band ``index``; the old one stays readable until ``commit``."""
        q0, q1 = self.spans[index]
        if self.on_disk:
            self._pending[index] = FileArray((q1 - q0, self.cols, self.channels))
        else:
            self._pending[index] = torch.empty(
                (1, self.channels, q1 - q0, self.cols), device=self.device, memory_format=_CL
            )

    def write(
        self, index: int, cols: tuple, values: torch.Tensor, rows: tuple | None = None
    ) -> None:
        """Columns ``cols`` of the new version of band ``index`` (of its rows ``rows``, all by
        default): ``values`` (1, C, h, w)."""
        q0 = self.spans[index][0]
        (r0, r1) = self.spans[index] if rows is None else rows
        if not self.on_disk:
            self._pending[index][:, :, r0 - q0 : r1 - q0, cols[0] : cols[1]] = values
        else:
            self._pending[index][r0 - q0 : r1 - q0, cols[0] : cols[1]] = (
                values[0].permute(1, 2, 0).cpu().numpy()
            )

    def commit(self, index: int) -> None:
        """The new version of band ``index`` replaces the old one."""
        old, self.bands[index] = self.bands[index], self._pending.pop(index)
        if isinstance(old, FileArray):
            old.close()

    def band_columns(self, index: int, cols: tuple) -> torch.Tensor:
        """Columns ``cols`` of band ``index`` (its current version), (1, C, rows, w)."""
        return self._band_window(index, self.spans[index], cols)

    def _band_window(self, index: int, rows: tuple, cols: tuple) -> torch.Tensor:
        """Rows and columns of band ``index`` as a (1, C, h, w) tensor on the stream's device: a
        view in memory, a new tensor read from its file."""
        band, q0 = self.bands[index], self.spans[index][0]
        if not self.on_disk:
            return band[:, :, rows[0] - q0 : rows[1] - q0, cols[0] : cols[1]]
        window = band[rows[0] - q0 : rows[1] - q0, cols[0] : cols[1]]
        return torch.from_numpy(window).permute(2, 0, 1)[None].to(self.device)

    def in_memory(self) -> list:
        """The bands, as tensors (not for a stream on disk)."""
        if self.on_disk:
            raise ValueError("the features of a render on disk are not held in memory")
        return self.bands

    # --- reads and release ---

    def read(self, rows: tuple, cols: tuple, border: str) -> torch.Tensor:
        """Rows and columns [start, stop), from -1 to one past the end, as a new channels-last
        tensor; the row or column beyond an edge is filled by ``border`` ("reflect" or
        "replicate"), as the next convolution's padding would."""
        (r0, r1), (c0, c1) = rows, cols
        if r0 < -1 or c0 < -1 or r1 > self.rows + 1 or c1 > self.cols + 1:
            raise ValueError(
                f"read of rows {rows}, columns {cols}: at most one beyond the "
                f"{self.rows} x {self.cols} features"
            )
        piece = torch.empty(
            (1, self.channels, r1 - r0, c1 - c0), device=self.device, memory_format=_CL
        )
        b0, b1 = max(0, c0), min(self.cols, c1)
        for index, ((q0, q1), band) in enumerate(zip(self.spans, self.bands)):
            a0, a1 = max(r0, q0), min(r1, q1)
            if a0 >= a1:
                continue
            piece[:, :, a0 - r0 : a1 - r0, b0 - c0 : b1 - c0].copy_(
                self._band_window(index, (a0, a1), (b0, b1))
            )
        _fill_border(piece, border, (c0 < 0, c1 > self.cols, r0 < 0, r1 > self.rows))
        return piece

    def release_rows_before(self, row: int) -> None:
        """Free the rows above ``row`` (no later read reaches them): the bands wholly above it,
        and in memory the top of the band it falls in (its other rows are copied into a smaller
        tensor)."""
        for index, ((q0, q1), band) in enumerate(zip(self.spans, self.bands)):
            if band is None or q0 >= row:
                continue
            if self.on_disk:
                if q1 <= row:
                    band.close()
                    self.bands[index] = None
                continue
            self.bands[index] = None if q1 <= row else band[:, :, row - q0 :].clone()
            self.spans[index] = (min(row, q1), q1)


class _KeptMaps:
    """Feature maps kept from one pass for the next while they fit in ``budget`` bytes; the
    passes recompute the others."""

    def __init__(self, budget: int):
        self.budget, self.used, self.maps = budget, 0, {}

    def put(self, key, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.used + size <= self.budget:
            self.maps[key] = tensor
            self.used += size

    def pop(self, key) -> torch.Tensor | None:
        tensor = self.maps.pop(key, None)
        if tensor is not None:
            self.used -= tensor.numel() * tensor.element_size()
        return tensor


def _residual_streamed(
    kernels: _Kernels, stream: _QuarterStream, params: dict, col_spans: list, keep_bytes: int
) -> torch.Tensor:
    """The five residual blocks on ``stream``, tile by tile (its row bands x ``col_spans``), three
    passes per block (see the module docstring); up to ``keep_bytes`` of each pass's
    convolution outputs are kept for the next pass instead of recomputed. Returns the
    per-channel offset the stream still owes (folded into the next convolution)."""
    tiles = [(rows, cols) for rows in stream.spans for cols in col_spans]
    kept = _KeptMaps(keep_bytes)
    offset = None
    for conv1, conv2 in kernels.blocks:
        w1, b1 = _fold(conv1.weight, conv1.bias, None, offset)

        def first_conv(rows, cols):
            """conv1's output on the tile and a ring of one inside the features (what conv2
            reads) and where the tile lies in it."""
            (y0, y1), (x0, x1) = rows, cols
            h0, h1 = max(0, y0 - 1), min(stream.rows, y1 + 1)
            g0, g1 = max(0, x0 - 1), min(stream.cols, x1 + 1)
            out = F.conv2d(stream.read((h0 - 1, h1 + 1), (g0 - 1, g1 + 1), "reflect"), w1, b1)
            return out, (y0 - h0, x0 - g0)

        first = Moments(stream.channels, stream.device)
        for rows, cols in tiles:
            out, (dy, dx) = first_conv(rows, cols)
            first.add(out[:, :, dy : dy + rows[1] - rows[0], dx : dx + cols[1] - cols[0]])
            kept.put(("first", rows, cols), out)
        lo, hi, scale, shift = _relu_clamp(*_norm_params(conv1, params, first))
        lo, hi = lo.view(1, -1, 1, 1), hi.view(1, -1, 1, 1)
        w2, b2 = _fold(conv2.weight, conv2.bias, scale, shift)

        def second_conv(rows, cols):
            """conv2's output (before its normalisation) on the tile."""
            (y0, y1), (x0, x1) = rows, cols
            out = kept.pop(("first", rows, cols))
            if out is None:
                out, (dy, dx) = first_conv(rows, cols)
            else:
                dy, dx = y0 - max(0, y0 - 1), x0 - max(0, x0 - 1)
            hidden = torch.empty(
                (1, stream.channels, y1 - y0 + 2, x1 - x0 + 2),
                device=stream.device,
                memory_format=_CL,
            )
            torch.clamp(
                out,
                lo,
                hi,
                out=hidden[:, :, 1 - dy : 1 - dy + out.shape[2], 1 - dx : 1 - dx + out.shape[3]],
            )
            _fill_border(
                hidden, "reflect", (x0 == 0, x1 == stream.cols, y0 == 0, y1 == stream.rows)
            )
            return F.conv2d(hidden, w2, b2)

        second = Moments(stream.channels, stream.device)
        for rows, cols in tiles:
            out = second_conv(rows, cols)
            second.add(out)
            kept.put(("second", rows, cols), out)
        scale, shift = _norm_params(conv2, params, second)
        _update_stream(stream, col_spans, kept, second_conv, scale.view(1, -1, 1, 1))
        offset = shift if offset is None else offset + shift
    return offset


def _update_stream(
    stream: _QuarterStream, col_spans: list, kept: _KeptMaps, second_conv, scale: torch.Tensor
) -> None:
    """A residual block's last pass: each tile's stream plus ``scale`` x its branch's output
    (``second_conv``'s, or the one ``kept``), a band's new version committed once no later tile
    reads its old rows (``_BRANCH_REACH``)."""
    staged = []  # bands whose new version waits: later tiles still read the old one
    for index, rows in enumerate(stream.spans):
        stream.begin_band(index)
        for cols in col_spans:
            out = kept.pop(("second", rows, cols))
            out = second_conv(rows, cols) if out is None else out
            stream.write(index, cols, torch.addcmul(stream.band_columns(index, cols), out, scale))
        staged.append(index)
        next_read = (
            stream.spans[index + 1][0] - _BRANCH_REACH
            if index + 1 < len(stream.spans)
            else math.inf
        )
        for done in [i for i in staged if stream.spans[i][1] <= next_read]:
            stream.commit(done)
            staged.remove(done)


def _residual_whole(kernels: _Kernels, stream: torch.Tensor, params: dict) -> torch.Tensor:
    """The five residual blocks on the whole reflect-bordered stream (N, 32, h+2, w+2), in place.
    Returns the per-channel offset the stream still owes (folded into the next convolution)."""
    n, channels, rows, cols = stream.shape
    hidden = _padded(stream, channels, rows, cols)
    interior = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    offset = None
    for conv1, conv2 in kernels.blocks:
        w, b = _fold(conv1.weight, conv1.bias, None, offset)
        out = F.conv2d(stream, w, b)
        scale, shift = _norm_params(conv1, params, Moments(channels, out.device).add(out))
        lo, hi, scale, shift = _relu_clamp(scale, shift)
        torch.clamp(out, lo.view(1, -1, 1, 1), hi.view(1, -1, 1, 1), out=hidden[interior])
        _fill_border(hidden, "reflect")
        w, b = _fold(conv2.weight, conv2.bias, scale, shift)
        out = F.conv2d(hidden, w, b)
        scale, shift = _norm_params(conv2, params, Moments(channels, out.device).add(out))
        inner = stream[interior]
        torch.addcmul(inner, out, scale.view(1, -1, 1, 1), out=inner)
        _fill_border(stream, "reflect")
        offset = shift if offset is None else offset + shift
    return offset
