"""The renderer's fused kernels and buffer helpers: the norms and ReLUs folded into the next
convolution's weights, the sub-pixel and space-to-depth forms of the upsampling and final
convolutions, per-channel moments, and reflect borders written in place (``renderer`` says why)."""

from __future__ import annotations

import math
import weakref

import torch

from .magenta import StyleTransformer, norm_affine

_CL = torch.channels_last
_BAND_VALUES = 1 << 20  # values per float32 partial sum in the moments


class _Kernels:
    """Weights of one transformer rearranged for ``render`` (computed once per model)."""

    def __init__(self, model: StyleTransformer):
        t = model.transformer
        e = t.expand
        self.contract = [
            (c.weight.contiguous(memory_format=_CL), c.bias, c.stride[0])
            for c in (t.contract.conv1, t.contract.conv2, t.contract.conv3)
        ]
        self.blocks = [
            (getattr(t.residual, n).conv1, getattr(t.residual, n).conv2) for n in t.residual.names
        ]
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
            gamma, beta = values[start : start + c], values[start + c : start + 2 * c]
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
    lo, hi = (
        torch.where(zero, torch.zeros_like(lo), lo),
        torch.where(zero, torch.zeros_like(hi), hi),
    )
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
            rows = x[:, :, r : r + band].permute(0, 2, 3, 1).reshape(-1, c)
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
    return out[
        :,
        phase * channels : (phase + 1) * channels,
        rows[0] // 2 + da : rows[1] // 2 + da,
        cols[0] // 2 + db : cols[1] // 2 + db,
    ]


def _window_moments(
    out: torch.Tensor, channels: int, layout: str, rows, cols, moments: Moments | None = None
) -> Moments:
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
    return buffer.as_strided(
        (n, c, rows, 2, cols, 2), (sn, sc, sh, 2 * c * sc, sw, c * sc), buffer.storage_offset()
    )


def _phases_into(out: torch.Tensor, channels: int, lo, hi, target) -> None:
    """Clamp the four phases of a sub-pixel output into ``target``: phase (a, b) lands at
    ``target(a, b)``, a (N, C, h, w) view. Four channel-contiguous copies are far faster than one
    six-dimensional interleaving copy."""
    rows, cols = out.shape[2] - 1, out.shape[3] - 1
    lo, hi = lo.view(1, -1, 1, 1), hi.view(1, -1, 1, 1)
    for phase in range(4):
        a, b = divmod(phase, 2)
        source = out[:, phase * channels : (phase + 1) * channels, a : a + rows, b : b + cols]
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
    return torch.empty(
        (like.shape[0], channels, rows, cols),
        dtype=like.dtype,
        device=like.device,
        memory_format=_CL,
    )


def _norm_params(layer, params: dict, moments: Moments):
    gamma, beta = params[layer]
    mean, var = moments.result()
    scale, shift = norm_affine(gamma, beta, mean, var)
    return scale.flatten(), shift.flatten()
