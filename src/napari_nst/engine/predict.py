"""Arbitrary-style prediction (Ghiasi et al. 2017): one forward pass, any style image, no training.

Pipeline: the style image(s) -> 256x256 crops -> ``StylePredictor`` -> 100-d embeddings, averaged
over crops, blended over styles (``style_blend``) and interpolated with the content's own
embedding (``style_strength``) -> ``StyleTransformer`` on the content at its working size.

Rendering (``render``) differs from ``StyleTransformer.forward`` (the readable reference) only in
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
* Tiling (images larger than ``tile_size``): instance norm needs per-channel statistics of the
  *whole* feature map, so tiles normalised with their own statistics would differ in tone and
  show seams. Here the statistics are global and exact: the quarter-resolution part of the
  network (contraction and residual blocks, 32 channels at 1/16 of the pixels) runs tile by tile
  into whole-image buffers, each normalisation using statistics summed over all tiles; the
  upsampling part runs three passes over full-resolution tiles (statistics of its first, second
  and third normalisation), each tile with an 8-pixel halo that covers the receptive field, the
  last pass writing the pre-normalised output that is then normalised in place. Tiled and untiled
  results agree to float rounding (no seams to blend away, so no overlap blending is needed), and
  memory beyond the input and output images is three 32-channel quarter-resolution buffers (each
  2/3 of the float32 output's size; one after the residual blocks) plus one tile's working set.
  The price is recomputation: the upsampling layers run 3, 2 and 1 times, about +30 % time.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..settings import Settings, make_settings
from .images import PreparedImage, finish_image, output_image, working_shape
from .losses import normalized_blend_weights
from .magenta import (STYLE_INPUT_SIZE, SIZE_MULTIPLE, StylePredictor, StyleTransformer,
                      load_model, norm_affine)
from .result import Iterate

_CL = torch.channels_last
_BAND_VALUES = 1 << 20  # values per float32 partial sum in the moments
HALO = 8  # full-resolution pixels of context around a tile (receptive-field slack: 7)


# --- style embeddings ----------------------------------------------------------------------------

def style_crops(rgb: np.ndarray, crops: int = 1) -> list[tuple[int, int, int]]:
    """Square crops (top, left, side) of an (H, W, 3) image for the predictor.

    One crop: the central square (Magenta's preprocessing). Several: squares of side
    ``short / sqrt(crops)`` (at least 256 px, or the short side) on a grid over the whole image,
    so that a large style image contributes its texture at a finer scale than one 256 px thumbnail.
    """
    height, width = rgb.shape[:2]
    short = min(height, width)
    if crops <= 1:
        return [((height - short) // 2, (width - short) // 2, short)]
    side = min(short, max(min(short, STYLE_INPUT_SIZE), round(short / math.sqrt(crops))))
    rows = max(1, min(crops, round(math.sqrt(crops * height / width))))
    cols = max(1, math.ceil(crops / rows))
    tops = np.linspace(0, height - side, rows).round().astype(int)
    lefts = np.linspace(0, width - side, cols).round().astype(int)
    grid = [(int(t), int(l), side) for t in tops for l in lefts]
    pick = np.linspace(0, len(grid) - 1, crops).round().astype(int)
    return [grid[i] for i in pick]


def style_batch(rgb: np.ndarray, crops: int, device) -> torch.Tensor:
    """(crops, 3, 256, 256) predictor input: each crop resized with antialiasing."""
    image = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    batch = []
    for top, left, side in style_crops(rgb, crops):
        crop = image[:, :, top:top + side, left:left + side].to(device)
        if side != STYLE_INPUT_SIZE:
            crop = F.interpolate(crop, size=(STYLE_INPUT_SIZE, STYLE_INPUT_SIZE), mode="bilinear",
                                 antialias=side > STYLE_INPUT_SIZE, align_corners=False)
        batch.append(crop.clamp(0.0, 1.0))
    return torch.cat(batch)


@torch.inference_mode()
def embed(predictor: StylePredictor, rgb: np.ndarray, crops: int = 1) -> torch.Tensor:
    """Style embedding (1, 100, 1, 1) of an (H, W, 3) image in [0, 1], averaged over its crops."""
    device = next(predictor.parameters()).device
    batch = style_batch(rgb, crops, device)
    if device.type != "mps":
        batch = batch.contiguous(memory_format=_CL)
    return predictor(batch).mean(dim=0, keepdim=True)


@torch.inference_mode()
def blend_embeddings(style_embeddings: Sequence[torch.Tensor], weights=None,
                     content_embedding: torch.Tensor | None = None,
                     strength: float = 1.0) -> torch.Tensor:
    """Weighted mean of the style embeddings (weights normalised to sum 1), then interpolated
    from the content's own embedding (strength 0) to the blend (strength 1)."""
    weights = normalized_blend_weights(weights, len(style_embeddings))
    mixed = sum(w * e for w, e in zip(weights, style_embeddings))
    if strength >= 1.0 or content_embedding is None:
        return mixed
    return (1.0 - strength) * content_embedding + strength * mixed


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


def _reflect_border(buffer: torch.Tensor, pad: int) -> None:
    """Fill the outer ``pad`` rows and columns of ``buffer`` by reflecting its interior."""
    rows, cols = buffer.shape[-2:]
    for k in range(1, pad + 1):
        buffer[..., pad - k] = buffer[..., pad + k]
        buffer[..., cols - 1 - pad + k] = buffer[..., cols - 1 - pad - k]
    for k in range(1, pad + 1):
        buffer[..., pad - k, :] = buffer[..., pad + k, :]
        buffer[..., rows - 1 - pad + k, :] = buffer[..., rows - 1 - pad - k, :]


def _replicate_border(buffer: torch.Tensor) -> None:
    buffer[..., 0] = buffer[..., 1]
    buffer[..., -1] = buffer[..., -2]
    buffer[..., 0, :] = buffer[..., 1, :]
    buffer[..., -1, :] = buffer[..., -2, :]


def _reflect_border_s2d(buffer: torch.Tensor, pad: int) -> None:
    """``_reflect_border`` of the full-resolution image that a space-to-depth buffer holds."""
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
        _reflect_border(padded, 1)
        x = F.conv2d(padded, weight, bias, stride=stride)
    return x.relu_()


def _spans(length: int, tile: int, multiple: int = 1) -> list[tuple[int, int]]:
    """[start, stop) pieces of nearly equal size (multiples of ``multiple``) covering ``length``."""
    count = max(1, math.ceil(length / tile))
    edges = [min(length, round(i * length / count / multiple) * multiple) for i in range(count + 1)]
    edges[-1] = length
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _residual(kernels: _Kernels, stream: torch.Tensor, params: dict, tile: int) -> torch.Tensor:
    """The five residual blocks on the reflect-bordered stream (N, 32, h+2, w+2), in place.

    Returns the per-channel offset the stream still owes (folded into the next convolution).
    Convolutions run over ``tile``-sized pieces of whole-image buffers; each normalisation uses
    the statistics of the whole buffer.
    """
    n, channels, rows, cols = stream.shape
    hidden = _padded(stream, channels, rows, cols)
    interior = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    row_spans, col_spans = _spans(rows - 2, tile), _spans(cols - 2, tile)
    whole = len(row_spans) == 1 and len(col_spans) == 1
    pre = None if whole else _padded(stream, channels, rows - 2, cols - 2)

    def convolve(source, weight, bias):
        if whole:
            return F.conv2d(source, weight, bias)
        for r0, r1 in row_spans:
            for c0, c1 in col_spans:
                piece = source[:, :, r0:r1 + 2, c0:c1 + 2].contiguous(memory_format=_CL)
                pre[:, :, r0:r1, c0:c1] = F.conv2d(piece, weight, bias)
        return pre

    offset = None
    for conv1, conv2 in kernels.blocks:
        w, b = _fold(conv1.weight, conv1.bias, None, offset)
        out = convolve(stream, w, b)
        scale, shift = _norm_params(conv1, params, Moments(channels, out.device).add(out))
        lo, hi, scale, shift = _relu_clamp(scale, shift)
        torch.clamp(out, lo.view(1, -1, 1, 1), hi.view(1, -1, 1, 1), out=hidden[interior])
        _reflect_border(hidden, 1)
        w, b = _fold(conv2.weight, conv2.bias, scale, shift)
        out = convolve(hidden, w, b)
        scale, shift = _norm_params(conv2, params, Moments(channels, out.device).add(out))
        inner = stream[interior]
        torch.addcmul(inner, out, scale.view(1, -1, 1, 1), out=inner)
        _reflect_border(stream, 1)
        offset = shift if offset is None else offset + shift
    return offset


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
    _replicate_border(half)
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


# --- rendering ------------------------------------------------------------------------------------

def _padded_size(n: int) -> int:
    return -(-n // SIZE_MULTIPLE) * SIZE_MULTIPLE


def _reflect_indices(start: int, stop: int, length: int) -> np.ndarray:
    index = np.arange(start, stop)
    index = np.where(index >= length, 2 * (length - 1) - index, index)
    return np.abs(index)


def _content_piece(rgb, rows: tuple, cols: tuple, device) -> torch.Tensor:
    """Rows and columns of the content (an (H, W, 3) float array or a ``PreparedImage``, read
    only here) padded by reflection to a multiple of 4, as an (1, 3, h, w) channels-last tensor
    on ``device``."""
    height, width = rgb.shape[:2]
    r = _reflect_indices(*rows, height)
    c = _reflect_indices(*cols, width)
    if r[0] == rows[0] and r[-1] == rows[1] - 1 and c[0] == cols[0] and c[-1] == cols[1] - 1:
        r, c = slice(*rows), slice(*cols)
    piece = rgb.read(r, c) if isinstance(rgb, PreparedImage) else rgb[r][:, c]
    tensor = torch.from_numpy(np.ascontiguousarray(piece, dtype=np.float32))
    return tensor.permute(2, 0, 1)[None].to(device)  # HWC memory: channels-last already


@torch.inference_mode()
def render(transformer: StyleTransformer, rgb: np.ndarray, embedding: torch.Tensor,
           tile_size: int | None = None) -> np.ndarray:
    """Stylise an (H, W, 3) float image in [0, 1] of any size with ``embedding`` (1, 100, 1, 1);
    ``rgb`` may also be a ``PreparedImage``, converted to float a tile at a time.

    Images whose padded longer side exceeds ``tile_size`` are rendered in tiles with global
    normalisation statistics (see the module docstring); the result is the same.
    """
    device = next(transformer.parameters()).device
    embedding = embedding.to(device)
    height, width = rgb.shape[:2]
    rows, cols = _padded_size(height), _padded_size(width)
    kernels = _kernels(transformer)
    output = np.empty((height, width, 3), dtype=np.float32)
    if tile_size is None or max(rows, cols) <= tile_size:
        _render_whole(kernels, rgb, embedding, output, device)
    else:
        _render_tiled(kernels, rgb, embedding, output, device, max(64, tile_size))
    return output


def _render_whole(kernels, rgb, embedding, output, device) -> None:
    height, width = rgb.shape[:2]
    rows, cols = _padded_size(height), _padded_size(width)
    image = _content_piece(rgb, (0, rows), (0, cols), device)
    low = _contract(kernels, image)
    del image
    stream = _padded(low, low.shape[1], low.shape[2] + 2, low.shape[3] + 2)
    stream[:, :, 1:-1, 1:-1] = low
    del low
    _reflect_border(stream, 1)
    style = kernels.style_params(embedding)
    offset = _residual(kernels, stream, style, tile=1 << 30)
    _replicate_border(stream)
    out = _expand(kernels, stream, offset, style, [])
    del stream
    window = _full_window(out, "s2d")
    mean, var = _window_moments(out, 3, "s2d", *window).result()
    gamma, beta = style[kernels.out]
    scale, shift = norm_affine(gamma, beta, mean, var)
    _write_output(out, *window, output, scale.flatten().to(out.device),
                  shift.flatten().to(out.device))


def _render_tiled(kernels, rgb, embedding, output, device, tile: int) -> None:
    height, width = rgb.shape[:2]
    rows, cols = _padded_size(height), _padded_size(width)
    q_rows, q_cols = rows // 4, cols // 4
    tile = max(SIZE_MULTIPLE * 16, tile // SIZE_MULTIPLE * SIZE_MULTIPLE)
    row_spans = _spans(rows, tile, SIZE_MULTIPLE)
    col_spans = _spans(cols, tile, SIZE_MULTIPLE)

    # Quarter resolution: contraction tile by tile (local, halo), residual blocks on buffers.
    stream = torch.empty((1, 32, q_rows + 2, q_cols + 2), device=device, memory_format=_CL)
    for r0, r1 in row_spans:
        for c0, c1 in col_spans:
            a0, a1 = max(0, r0 - HALO), min(rows, r1 + HALO)
            b0, b1 = max(0, c0 - HALO), min(cols, c1 + HALO)
            piece = _contract(kernels, _content_piece(rgb, (a0, a1), (b0, b1), device))
            stream[:, :, 1 + r0 // 4:1 + r1 // 4, 1 + c0 // 4:1 + c1 // 4] = piece[
                :, :, (r0 - a0) // 4:(r1 - a0) // 4, (c0 - b0) // 4:(c1 - b0) // 4]
    _reflect_border(stream, 1)
    style = kernels.style_params(embedding)
    offset = _residual(kernels, stream, style, tile=tile // 4)
    _replicate_border(stream)

    # Full resolution: three passes for the three statistics, the last one keeping its output.
    def pieces():
        for r0, r1 in row_spans:
            for c0, c1 in col_spans:
                a0, a1 = max(0, r0 // 4 - HALO // 4), min(q_rows, r1 // 4 + HALO // 4)
                b0, b1 = max(0, c0 // 4 - HALO // 4), min(q_cols, c1 // 4 + HALO // 4)
                low = stream[:, :, a0:a1 + 2, b0:b1 + 2].contiguous(memory_format=_CL)
                yield low, (r0 - 4 * a0, r1 - 4 * a0), (c0 - 4 * b0, c1 - 4 * b0), (r0, c0)

    stats = []
    for layer, channels, factor in ((0, 16, 2), (1, 8, 1)):
        moments = Moments(channels, device)
        for low, (y0, y1), (x0, x1), _ in pieces():
            out = _expand(kernels, low, offset, style, stats, until=layer)
            _window_moments(out, channels, "subpixel", (y0 // factor, y1 // factor),
                            (x0 // factor, x1 // factor), moments)
        stats.append(moments.result())

    moments = Moments(3, device)
    for low, (y0, y1), (x0, x1), (r0, c0) in pieces():
        out = _expand(kernels, low, offset, style, stats, until=2)
        _window_moments(out, 3, "s2d", (y0, y1), (x0, x1), moments)
        if r0 < height and c0 < width:  # the pre-normalised output, cropped to the image
            _write_output(out, (y0, y1), (x0, x1), output[r0:r0 + (y1 - y0), c0:c0 + (x1 - x0)])
    mean, var = moments.result()
    gamma, beta = style[kernels.out]
    scale, shift = norm_affine(gamma, beta, mean, var)
    result = torch.from_numpy(output)
    scale, shift = scale.flatten().cpu(), shift.flatten().cpu()
    for r0 in range(0, height, 256):  # in place, a band at a time: no full-size temporaries
        result[r0:r0 + 256].mul_(scale).add_(shift).sigmoid_()


# --- engine entry points --------------------------------------------------------------------------

def _models(settings: Settings, device):
    predictor = load_model("predictor", settings.predictor_weights, device,
                           directory=settings.weights_dir)
    transformer = load_model("transformer", settings.transformer_weights, device,
                             directory=settings.weights_dir)
    return predictor, transformer


def _working_content(content: PreparedImage, settings: Settings) -> PreparedImage:
    """The content at its working size; as it is when it has that size already, so that the
    renderer reads it tile by tile (a compact uint8 image is never converted whole)."""
    return content.resized(working_shape(*content.shape[:2], settings.size))


def _working_rgb(content: PreparedImage, settings: Settings) -> np.ndarray:
    """The working image as one float32 array (what the network sees; for tests and tools)."""
    return _working_content(content, settings).rgb


def _style_embeddings(predictor, styles: Sequence[PreparedImage], settings: Settings) -> list:
    return [embed(predictor, s.rgb, settings.style_crops) for s in styles]


def _stylize_one(content: PreparedImage, style_embeddings: list, predictor, transformer,
                 settings: Settings) -> np.ndarray:
    working = _working_content(content, settings)
    own = embed(predictor, working.rgb) if settings.style_strength < 1.0 else None
    embedding = blend_embeddings(style_embeddings, settings.style_blend, own,
                                 settings.style_strength)
    result = render(transformer, working, embedding, settings.tile_size)
    return finish_image(result, content, settings.keep_colors)


def predict_image(content: PreparedImage, styles: list[PreparedImage], settings: Settings,
                  device: torch.device) -> np.ndarray:
    """The stylised content (H, W, 3) float32 in [0, 1] at the working size (also the start image
    of ``init="predict"``; ``output_image`` makes it a result)."""
    predictor, transformer = _models(settings, device)
    embeddings = _style_embeddings(predictor, styles, settings)
    return _stylize_one(content, embeddings, predictor, transformer, settings)


def predict_iterates(content: PreparedImage, styles: list[PreparedImage], settings: Settings,
                     device: torch.device) -> Iterator[Iterate]:
    """One ``Iterate`` (step 1 of 1) with the prediction; the engine's ``method="predict"``."""
    start = time.perf_counter()
    predictor, transformer = _models(settings, device)
    embeddings = _style_embeddings(predictor, styles, settings)
    image = output_image(_stylize_one(content, embeddings, predictor, transformer, settings),
                         content, settings.output_range)
    info = {"weights": f"{predictor.weights_identity} + {transformer.weights_identity}",
            "precision": "float32"}
    yield Iterate(step=1, total_steps=1, image=image, losses={},
                  elapsed=time.perf_counter() - start, scale=tuple(image.shape[:2]), info=info)


def predict_many(contents: Sequence[PreparedImage], styles: list[PreparedImage], settings: Settings,
                 device: torch.device) -> list[np.ndarray]:
    """Results for several contents with the networks loaded and the styles embedded once (the
    engine side of ``run.predict_batch``)."""
    with torch.inference_mode():
        predictor, transformer = _models(settings, device)
        embeddings = _style_embeddings(predictor, styles, settings)
        return [output_image(_stylize_one(c, embeddings, predictor, transformer, settings), c,
                             settings.output_range) for c in contents]


__all__ = ["blend_embeddings", "embed", "predict_image", "predict_iterates", "predict_many",
           "render", "style_crops"]
