"""The Magenta transformer's forward pass as predict runs it (``render``, ``render_into``): fused,
at any size, and tiled with exact global statistics in bounded memory.

It differs from ``StyleTransformer.forward`` (the readable reference) only in speed and memory,
not in what it computes:

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

import math
import weakref

import numpy as np
import torch
import torch.nn.functional as F

from ...images import PreparedImage
from .magenta import SIZE_MULTIPLE, StyleTransformer, norm_affine
from ...memory import FileArray, release_freed_memory

_CL = torch.channels_last
_BAND_VALUES = 1 << 20  # values per float32 partial sum in the moments
HALO = 8  # full-resolution pixels of context around a tile (receptive-field slack: 7)
_BRANCH_REACH = 2  # stream rows/columns around a tile that a residual branch reads (two 3x3 convs)
KEEP_BYTES = 256 << 20  # render_into's default keep_bytes
#: Full-resolution rows per piece of a tile in the contraction and upsampling passes (see
#: ``_pieces_of``): a whole 1024 px tile held ~150 MB of convolution buffers at once, bands of
#: 256 rows a quarter of that, and were no slower (4096², tiles of 1024: 3.7 s, was 4.4 s).
PIECE_ROWS = 256
_FINISH_ROWS = 256  # rows per band of the final in-place normalisation


# --- fused kernels --------------------------------------------------------------------------------

class _Kernels:
    """Weights of one transformer rearranged for ``render`` (computed once per model)."""

    def __init__(self, model: StyleTransformer):
        t = model.transformer
        e = t.expand
        self.contract = [(c.weight.contiguous(memory_format=_CL), c.bias, c.stride[0])
                         for c in (t.contract.conv1, t.contract.conv2, t.contract.conv3)]
        self.blocks = [(getattr(t.residual, n).conv1, getattr(t.residual, n).conv2)
                       for n in t.residual.names]
        self.up1 = e.conv1.conv
        self.up2 = e.conv2.conv
        self.out = e.conv3.conv
        self.up1_weight = subpixel_kernel(self.up1.weight)
        self.up2_weight = subpixel_kernel(self.up2.weight)
        self.out_weight = space_to_depth_kernel(self.out.weight)
        # All 13 (gamma, beta) 1x1 convolutions of the embedding as one matrix product.
        self.norms = model.conditional_layers()
        rows = [(n.StyleNorm.Conv_1, n.StyleNorm.Conv) for n in self.norms]
        self.norm_weight = torch.cat([c.weight.flatten(1) for pair in rows for c in pair])
        self.norm_bias = torch.cat([c.bias for pair in rows for c in pair])

    def style_params(self, embedding: torch.Tensor) -> dict:
        """{conditional layer: (gamma, beta)}, each (1, C, 1, 1), for a (1, 100, 1, 1) embedding."""
        values = torch.addmv(self.norm_bias, self.norm_weight, embedding.flatten())
        params, start = {}, 0
        for layer in self.norms:
            c = layer.out_channels
            gamma, beta = values[start:start + c], values[start + c:start + 2 * c]
            params[layer] = (gamma.view(1, c, 1, 1), beta.view(1, c, 1, 1))
            start += 2 * c
        return params


_kernel_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _kernels(model: StyleTransformer) -> _Kernels:
    kernels = _kernel_cache.get(model)
    if kernels is None:
        with torch.inference_mode():
            kernels = _Kernels(model)
        _kernel_cache[model] = kernels
    return kernels


def subpixel_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(O, I, 3, 3) kernel of "nearest x2 upsampling, reflect pad 1, 3x3 conv" -> (4*O, I, 2, 2)
    kernels, one group of O channels per output phase (a, b) in order 2a + b, applied to the
    low-resolution input padded by one replicated pixel.

    Output row 2i of the upsampled-then-padded image reads low-res rows i-1, i, i (taps w0 and
    w1 + w2 on rows i-1, i); row 2i+1 reads i, i, i+1 (w0 + w1, w2 on rows i, i+1). Reflecting
    the upsampled image at its border is replicating the low-resolution one.
    """
    rows = weight.new_tensor([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]])  # [phase, tap, k]
    kernel = torch.einsum("auy,oiyx,bvx->aboiuv", rows, weight, rows)
    return kernel.reshape(4 * weight.shape[0], weight.shape[1], 2, 2).contiguous(memory_format=_CL)


def space_to_depth_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(O, I, 9, 9) kernel -> (4*O, 4*I, 5, 5) kernel of the same convolution on the
    space-to-depth input, whose output is the space-to-depth output. Channels are phase-major:
    input (p, q, i) at (2p + q) * I + i, output (a, b, o) at (2a + b) * O + o.

    Output pixel (2i + a, 2j + b) reads input (2i + a + dy, 2j + b + dx); writing
    2i + a + dy = 2(i + u) + p gives the tap dy = 2u + p - a of input phase p at offset u.
    """
    out_c, in_c, k, _ = weight.shape
    taps = (k + 1) // 2
    kernel = weight.new_zeros(2, 2, out_c, 2, 2, in_c, taps, taps)
    for a in range(2):
        for p in range(2):
            for u in range(taps):
                dy = 2 * u + p - a
                if not 0 <= dy < k:
                    continue
                for b in range(2):
                    for q in range(2):
                        for v in range(taps):
                            dx = 2 * v + q - b
                            if 0 <= dx < k:
                                kernel[a, b, :, p, q, :, u, v] = weight[:, :, dy, dx]
    return kernel.reshape(4 * out_c, 4 * in_c, taps, taps).contiguous(memory_format=_CL)


def _fold(weight: torch.Tensor, bias: torch.Tensor, scale, shift, repeat: int = 1):
    """Weights and bias of ``conv(x * scale + shift)`` as a convolution of ``x`` (a per input
    channel affine; valid because reflect and replicate padding commute with it). ``repeat``:
    the input holds ``repeat`` phase groups of the channels (space-to-depth)."""
    if shift is not None:
        bias = bias + weight.sum(dim=(2, 3)) @ shift.repeat(repeat)
    if scale is not None:
        weight = weight * scale.repeat(repeat).view(1, -1, 1, 1)
    return weight, bias


def _relu_clamp(scale: torch.Tensor, shift: torch.Tensor):
    """Bounds (lo, hi) and (scale, shift) with relu(x * s + t) == clamp(x, lo, hi) * s' + t'."""
    inf = torch.full_like(scale, math.inf)
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    edge = -shift / safe
    lo = torch.where(scale > 0, edge, -inf)
    hi = torch.where(scale < 0, edge, inf)
    zero = scale == 0  # constant channel: clamp to 0 and carry relu(t) as the offset
    lo, hi = torch.where(zero, torch.zeros_like(lo), lo), torch.where(zero, torch.zeros_like(hi), hi)
    return lo, hi, scale, torch.where(zero, shift.clamp(min=0), shift)


class Moments:
    """Per-channel count, sum and sum of squares, accumulated in float64 over any number of
    pieces (the tiles or phases of one feature map)."""

    def __init__(self, channels: int, device):
        self.count = 0
        self.sum = torch.zeros(channels, dtype=torch.float64, device=device)
        self.squares = torch.zeros(channels, dtype=torch.float64, device=device)

    def add(self, x: torch.Tensor) -> Moments:
        """Add an (N, C, H, W) piece (any strides), a band of rows at a time: small float32
        temporaries that the allocator reuses, float32 sums over at most ~1M values."""
        n, c, h, w = x.shape
        band = max(1, _BAND_VALUES // max(1, n * c * w))
        for r in range(0, h, band):
            rows = x[:, :, r:r + band].permute(0, 2, 3, 1).reshape(-1, c)
            self.sum += rows.sum(0).double()
            self.squares += (rows * rows).sum(0).double()
            self.count += rows.shape[0]
        return self

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, biased variance), each float32 (1, C, 1, 1)."""
        mean = self.sum / self.count
        var = (self.squares / self.count - mean * mean).clamp(min=0.0)
        return mean.float().view(1, -1, 1, 1), var.float().view(1, -1, 1, 1)


def _phase(out: torch.Tensor, channels: int, phase: int, layout: str, rows, cols) -> torch.Tensor:
    """Phase (a, b) = divmod(phase, 2) of the rows ``rows`` and columns ``cols`` (even bounds, at
    the output's full resolution) of a phase-split output, as an (N, C, h, w) view.

    Layouts: "subpixel" (a sub-pixel convolution: full-resolution pixel (2i + a, 2j + b) at
    ``out[:, (2a + b) C + c, i + a, j + b]``) and "s2d" (space-to-depth: at ``[..., i, j]``).
    """
    a, b = divmod(phase, 2)
    da, db = (a, b) if layout == "subpixel" else (0, 0)
    return out[:, phase * channels:(phase + 1) * channels,
               rows[0] // 2 + da:rows[1] // 2 + da, cols[0] // 2 + db:cols[1] // 2 + db]


def _window_moments(out: torch.Tensor, channels: int, layout: str, rows, cols,
                    moments: Moments | None = None) -> Moments:
    moments = moments if moments is not None else Moments(channels, out.device)
    for phase in range(4):
        moments.add(_phase(out, channels, phase, layout, rows, cols))
    return moments


def _full_window(out: torch.Tensor, layout: str) -> tuple[tuple, tuple]:
    rows, cols = out.shape[2], out.shape[3]
    if layout == "subpixel":
        rows, cols = rows - 1, cols - 1
    return (0, 2 * rows), (0, 2 * cols)


def _s2d_view(buffer: torch.Tensor) -> torch.Tensor:
    """A space-to-depth buffer (N, 4C, H, W), channel (p, q, c) at (2p + q) * C + c, as the
    (N, C, H, 2, W, 2) full-resolution image."""
    n, c4, rows, cols = buffer.shape
    c = c4 // 4
    sn, sc, sh, sw = buffer.stride()
    return buffer.as_strided((n, c, rows, 2, cols, 2), (sn, sc, sh, 2 * c * sc, sw, c * sc),
                             buffer.storage_offset())


def _phases_into(out: torch.Tensor, channels: int, lo, hi, target) -> None:
    """Clamp the four phases of a sub-pixel output into ``target``: phase (a, b) lands at
    ``target(a, b)``, a (N, C, h, w) view. Four channel-contiguous copies are far faster than one
    six-dimensional interleaving copy."""
    rows, cols = out.shape[2] - 1, out.shape[3] - 1
    lo, hi = lo.view(1, -1, 1, 1), hi.view(1, -1, 1, 1)
    for phase in range(4):
        a, b = divmod(phase, 2)
        source = out[:, phase * channels:(phase + 1) * channels, a:a + rows, b:b + cols]
        torch.clamp(source, lo, hi, out=target(a, b))


def _fill_border(buffer: torch.Tensor, mode: str, sides=(True, True, True, True)) -> None:
    """Fill the outer column or row of ``buffer`` on each of ``sides`` (left, right, top, bottom)
    from its interior, as padding by one would: "reflect" or "replicate". Columns first, so that
    the rows carry the corners."""
    source = 2 if mode == "reflect" else 1
    left, right, top, bottom = sides
    if left:
        buffer[..., 0] = buffer[..., source]
    if right:
        buffer[..., -1] = buffer[..., -1 - source]
    if top:
        buffer[..., 0, :] = buffer[..., source, :]
    if bottom:
        buffer[..., -1, :] = buffer[..., -1 - source, :]


def _reflect_border_s2d(buffer: torch.Tensor, pad: int) -> None:
    """Fill the outer ``pad`` rows and columns of the full-resolution image that a space-to-depth
    buffer holds by reflecting its interior."""
    view = _s2d_view(buffer)  # (N, C, rows, 2, cols, 2)
    rows, cols = 2 * buffer.shape[-2], 2 * buffer.shape[-1]

    def col(x):
        return view[..., x // 2, x % 2]

    def row(y):
        return view[:, :, y // 2, y % 2]

    for k in range(1, pad + 1):
        col(pad - k).copy_(col(pad + k))
        col(cols - 1 - pad + k).copy_(col(cols - 1 - pad - k))
    for k in range(1, pad + 1):
        row(pad - k).copy_(row(pad + k))
        row(rows - 1 - pad + k).copy_(row(rows - 1 - pad - k))


def _padded(like: torch.Tensor, channels: int, rows: int, cols: int) -> torch.Tensor:
    return torch.empty((like.shape[0], channels, rows, cols), dtype=like.dtype, device=like.device,
                       memory_format=_CL)


def _norm_params(layer, params: dict, moments: Moments):
    gamma, beta = params[layer]
    mean, var = moments.result()
    scale, shift = norm_affine(gamma, beta, mean, var)
    return scale.flatten(), shift.flatten()


# --- the network in stages ------------------------------------------------------------------------

def _contract(kernels: _Kernels, image: torch.Tensor) -> torch.Tensor:
    """Contraction of an (N, 3, H, W) image (H, W multiples of 4) -> (N, 32, H/4, W/4)."""
    (w1, b1, _), (w2, b2, s2), (w3, b3, s3) = kernels.contract
    x = F.conv2d(F.pad(image, (4, 4, 4, 4), mode="reflect"), w1, b1)
    for weight, bias, stride in ((w2, b2, s2), (w3, b3, s3)):
        padded = _padded(x, x.shape[1], x.shape[2] + 2, x.shape[3] + 2)
        torch.clamp_min(x, 0.0, out=padded[:, :, 1:-1, 1:-1])
        _fill_border(padded, "reflect")
        x = F.conv2d(padded, weight, bias, stride=stride)
    return x.relu_()

def _expand(kernels: _Kernels, low: torch.Tensor, offset, style: dict, stats: list,
            until: int = 2) -> torch.Tensor:
    """Upsampling part on a low-resolution piece ``low`` (N, 32, h+2, w+2) whose border row and
    column are either replicated (image edge) or real neighbours (inside a tiled image).

    Returns the pre-normalisation output of layer ``until`` (0, 1: "subpixel" layout; 2: "s2d"
    layout, see ``_phase``). ``stats`` holds the (mean, var) of the first len(stats)
    normalisations; the others up to ``until`` - 1 are computed from this piece.
    """
    layers = (kernels.up1, kernels.up2, kernels.out)

    def relu_bounds(index, out, channels):
        if index < len(stats):
            mean, var = stats[index]
        else:
            mean, var = _window_moments(out, channels, "subpixel",
                                        *_full_window(out, "subpixel")).result()
        gamma, beta = style[layers[index]]
        scale, shift = norm_affine(gamma, beta, mean, var)
        return _relu_clamp(scale.flatten(), shift.flatten())

    w, b = _fold(kernels.up1_weight, kernels.up1.bias.repeat(4), None, offset)
    out = F.conv2d(low, w, b)
    if until == 0:
        return out
    lo, hi, scale, shift = relu_bounds(0, out, 16)
    rows, cols = 2 * (low.shape[2] - 2), 2 * (low.shape[3] - 2)
    half = _padded(out, 16, rows + 2, cols + 2)
    _phases_into(out, 16, lo, hi, lambda a, b: half[:, :, 1 + a:1 + rows:2, 1 + b:1 + cols:2])
    _fill_border(half, "replicate")
    del out

    w, b = _fold(kernels.up2_weight, kernels.up2.bias.repeat(4), scale, shift)
    out = F.conv2d(half, w, b)
    del half
    if until == 1:
        return out
    lo, hi, scale, shift = relu_bounds(1, out, 8)
    # rows x cols is also the space-to-depth grid of the (2 rows) x (2 cols) output
    full = _padded(out, 32, rows + 4, cols + 4)  # padded by 2 cells = 4 pixels
    _phases_into(out, 8, lo, hi, lambda a, b: full[:, (2 * a + b) * 8:(2 * a + b + 1) * 8,
                                                   2:2 + rows, 2:2 + cols])
    _reflect_border_s2d(full, 4)
    del out

    w, b = _fold(kernels.out_weight, kernels.out.bias.repeat(4), scale, shift, repeat=4)
    return F.conv2d(full, w, b)


def _write_output(out: torch.Tensor, rows: tuple, cols: tuple, target: np.ndarray,
                  scale: torch.Tensor | None = None, shift: torch.Tensor | None = None) -> None:
    """Write rows/cols (even bounds) of the final layer's "s2d" output into the (H', W', 3)
    ``target`` (cropped to it), phase by phase; with ``scale``/``shift`` also normalise and apply
    the sigmoid, in place in ``target`` on the CPU."""
    destination = torch.from_numpy(target)
    for phase in range(4):
        a, b = divmod(phase, 2)
        dest = destination[a::2, b::2]
        count_r, count_c = dest.shape[:2]
        source = _phase(out, 3, phase, "s2d", rows, cols)[0, :, :count_r, :count_c].permute(1, 2, 0)
        if scale is None:
            dest.copy_(source)
        elif source.device.type == "cpu":
            torch.addcmul(shift, source, scale, out=dest)
            dest.sigmoid_()
        else:
            dest.copy_(torch.addcmul(shift, source, scale).sigmoid_())


# --- tiles and the quarter-resolution stream ------------------------------------------------------

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
    return [(rows[0] + a, rows[0] + b)
            for a, b in _spans(rows[1] - rows[0], PIECE_ROWS, SIZE_MULTIPLE)]


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
            self._pending[index] = torch.empty((1, self.channels, q1 - q0, self.cols),
                                               device=self.device, memory_format=_CL)

    def write(self, index: int, cols: tuple, values: torch.Tensor,
              rows: tuple | None = None) -> None:
        """Columns ``cols`` of the new version of band ``index`` (of its rows ``rows``, all by
        default): ``values`` (1, C, h, w)."""
        q0 = self.spans[index][0]
        (r0, r1) = self.spans[index] if rows is None else rows
        if not self.on_disk:
            self._pending[index][:, :, r0 - q0:r1 - q0, cols[0]:cols[1]] = values
        else:
            self._pending[index][r0 - q0:r1 - q0, cols[0]:cols[1]] = \
                values[0].permute(1, 2, 0).cpu().numpy()

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
            return band[:, :, rows[0] - q0:rows[1] - q0, cols[0]:cols[1]]
        window = band[rows[0] - q0:rows[1] - q0, cols[0]:cols[1]]
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
            raise ValueError(f"read of rows {rows}, columns {cols}: at most one beyond the "
                             f"{self.rows} x {self.cols} features")
        piece = torch.empty((1, self.channels, r1 - r0, c1 - c0), device=self.device,
                            memory_format=_CL)
        b0, b1 = max(0, c0), min(self.cols, c1)
        for index, ((q0, q1), band) in enumerate(zip(self.spans, self.bands)):
            a0, a1 = max(r0, q0), min(r1, q1)
            if a0 >= a1:
                continue
            piece[:, :, a0 - r0:a1 - r0, b0 - c0:b1 - c0].copy_(
                self._band_window(index, (a0, a1), (b0, b1)))
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
            self.bands[index] = None if q1 <= row else band[:, :, row - q0:].clone()
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


def _residual_streamed(kernels: _Kernels, stream: _QuarterStream, params: dict,
                       col_spans: list, keep_bytes: int) -> torch.Tensor:
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
            first.add(out[:, :, dy:dy + rows[1] - rows[0], dx:dx + cols[1] - cols[0]])
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
            hidden = torch.empty((1, stream.channels, y1 - y0 + 2, x1 - x0 + 2),
                                 device=stream.device, memory_format=_CL)
            torch.clamp(out, lo, hi, out=hidden[:, :, 1 - dy:1 - dy + out.shape[2],
                                                1 - dx:1 - dx + out.shape[3]])
            _fill_border(hidden, "reflect", (x0 == 0, x1 == stream.cols, y0 == 0,
                                             y1 == stream.rows))
            return F.conv2d(hidden, w2, b2)

        second = Moments(stream.channels, stream.device)
        for rows, cols in tiles:
            out = second_conv(rows, cols)
            second.add(out)
            kept.put(("second", rows, cols), out)
        scale, shift = _norm_params(conv2, params, second)
        scale = scale.view(1, -1, 1, 1)
        staged = []  # bands whose new version waits: later tiles still read the old one
        for index, rows in enumerate(stream.spans):
            stream.begin_band(index)
            for cols in col_spans:
                out = kept.pop(("second", rows, cols))
                out = second_conv(rows, cols) if out is None else out
                stream.write(index, cols,
                             torch.addcmul(stream.band_columns(index, cols), out, scale))
            staged.append(index)
            next_read = (stream.spans[index + 1][0] - _BRANCH_REACH
                         if index + 1 < len(stream.spans) else math.inf)
            for done in [i for i in staged if stream.spans[i][1] <= next_read]:
                stream.commit(done)
                staged.remove(done)
        offset = shift if offset is None else offset + shift
    return offset


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

def render(transformer: StyleTransformer, content, embedding: torch.Tensor,
           tile_size: int | None = None, *, bottleneck=None) -> np.ndarray:
    """Stylise the (H, W, 3) content in [0, 1] of any size (an array or a ``PreparedImage``) with
    ``embedding`` (1, 100, 1, 1): a new float32 (H, W, 3) array in [0, 1] (``render_into``)."""
    output = np.empty((*content.shape[:2], 3), dtype=np.float32)
    render_into(transformer, content, embedding, output, tile_size, bottleneck=bottleneck)
    return output


@torch.inference_mode()
def render_into(transformer: StyleTransformer, content, embedding: torch.Tensor, destination,
                tile_size: int | None = None, *, keep_bytes: int = KEEP_BYTES,
                bottleneck=None, features_on_disk: bool = False) -> None:
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
        raise ValueError("render_into: bottleneck needs the features in memory; pass "
                         "features_on_disk=False with it")
    height, width = content.shape[:2]
    expected = (height, width, 3)
    if tuple(destination.shape) != expected or np.dtype(destination.dtype) != np.float32:
        raise ValueError(f"destination: shape {tuple(destination.shape)}, dtype "
                         f"{destination.dtype}; the result needs float32 of shape {expected}, "
                         f"e.g. np.empty({expected}, np.float32)")
    device = next(transformer.parameters()).device
    embedding = embedding.to(device)
    kernels = _kernels(transformer)
    row_spans, col_spans = tile_grid(height, width, tile_size)
    if len(row_spans) == len(col_spans) == 1:
        _render_whole(kernels, content, embedding, destination, device, bottleneck)
    else:
        _render_tiled(kernels, content, embedding, destination, device, row_spans, col_spans,
                      keep_bytes, bottleneck, features_on_disk)


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
        raise ValueError(f"bottleneck returned {tuple(replaced.shape)}, expected "
                         f"{tuple(features.shape)}")
    del features
    row = 0
    for piece in pieces:
        piece.copy_(replaced[:, :, row:row + piece.shape[2]] - owed)
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
    _in_destination(destination, slice(None), slice(None),
                    lambda block: _write_output(out, *window, block, scale, shift), read=False)


def _render_tiled(kernels, content, embedding, destination, device, row_spans: list,
                  col_spans: list, keep_bytes: int, bottleneck=None,
                  features_on_disk: bool = False) -> None:
    height, width = content.shape[:2]
    rows, cols = row_spans[-1][1], col_spans[-1][1]
    q_rows, q_cols = rows // 4, cols // 4
    stream = _QuarterStream([(r0 // 4, r1 // 4) for r0, r1 in row_spans], q_cols,
                            kernels.contract[-1][0].shape[0], device, features_on_disk)

    # Quarter resolution: the contraction tile by tile (local, with a halo), the residual blocks
    # in passes over the stream's tiles.
    for index, band_rows in enumerate(row_spans):
        stream.begin_band(index)
        for r0, r1 in _pieces_of(band_rows):
            for c0, c1 in col_spans:
                a0, a1 = max(0, r0 - HALO), min(rows, r1 + HALO)
                b0, b1 = max(0, c0 - HALO), min(cols, c1 + HALO)
                piece = _contract(kernels, _content_piece(content, (a0, a1), (b0, b1), device))
                stream.write(index, (c0 // 4, c1 // 4), piece[
                    :, :, (r0 - a0) // 4:(r1 - a0) // 4, (c0 - b0) // 4:(c1 - b0) // 4],
                    rows=(r0 // 4, r1 // 4))
        stream.commit(index)
    release_freed_memory()  # each pass's tile buffers, freed but kept by the allocator
    style = kernels.style_params(embedding)
    quarter_cols = [(c0 // 4, c1 // 4) for c0, c1 in col_spans]
    offset = _residual_streamed(kernels, stream, style, quarter_cols, keep_bytes)
    release_freed_memory()
    if bottleneck is not None:
        _replace_bottleneck(bottleneck, stream.in_memory(), offset)

    # Full resolution: three passes for the three statistics, the last one writing its output.
    def low_rows(r0, r1):  # the stream rows under full-resolution rows r0..r1 and their halo
        return max(0, r0 // 4 - HALO // 4), min(q_rows, r1 // 4 + HALO // 4)

    def pieces(band_rows):
        """The low-resolution pieces (with a replicated border) of the tiles in ``band_rows``, a
        band of a tile at a time (``_pieces_of``), and where each lies in its piece and in the
        image."""
        for r0, r1 in (piece for span in band_rows for piece in _pieces_of(span)):
            for c0, c1 in col_spans:
                a0, a1 = low_rows(r0, r1)
                b0, b1 = max(0, c0 // 4 - HALO // 4), min(q_cols, c1 // 4 + HALO // 4)
                low = stream.read((a0 - 1, a1 + 1), (b0 - 1, b1 + 1), "replicate")
                yield low, (r0 - 4 * a0, r1 - 4 * a0), (c0 - 4 * b0, c1 - 4 * b0), (r0, c0)

    stats = []
    for layer, channels, factor in ((0, 16, 2), (1, 8, 1)):
        moments = Moments(channels, device)
        for low, (y0, y1), (x0, x1), _ in pieces(row_spans):
            out = _expand(kernels, low, offset, style, stats, until=layer)
            _window_moments(out, channels, "subpixel", (y0 // factor, y1 // factor),
                            (x0 // factor, x1 // factor), moments)
        stats.append(moments.result())

    moments = Moments(3, device)
    for index, band_rows in enumerate(row_spans):
        for low, (y0, y1), (x0, x1), (r0, c0) in pieces([band_rows]):
            out = _expand(kernels, low, offset, style, stats, until=2)
            _window_moments(out, 3, "s2d", (y0, y1), (x0, x1), moments)
            if r0 < height and c0 < width:  # the pre-normalised output, cropped to the image
                _in_destination(destination, slice(r0, min(height, r0 + y1 - y0)),
                                slice(c0, min(width, c0 + x1 - x0)),
                                lambda block: _write_output(out, (y0, y1), (x0, x1), block),
                                read=False)
        if index + 1 < len(row_spans):
            stream.release_rows_before(low_rows(*row_spans[index + 1])[0] - 1)
    stream.release_rows_before(q_rows)
    release_freed_memory()
    mean, var = moments.result()
    gamma, beta = style[kernels.out]
    scale, shift = norm_affine(gamma, beta, mean, var)
    scale, shift = scale.flatten().cpu(), shift.flatten().cpu()
    for r0 in range(0, height, _FINISH_ROWS):  # a band at a time: no full-size temporaries
        _in_destination(destination, slice(r0, r0 + _FINISH_ROWS), slice(None),
                        lambda block: torch.from_numpy(block).mul_(scale).add_(shift).sigmoid_(),
                        read=True)


__all__ = ["HALO", "KEEP_BYTES", "Moments", "bottleneck_shape", "render", "render_into", "space_to_depth_kernel",
           "subpixel_kernel", "tile_grid"]
