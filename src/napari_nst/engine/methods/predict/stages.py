"""The Magenta transformer's forward pass in stages, on one piece: the whole image, or a band of a
tile with its halo (``renderer`` runs them over the image): the contraction, the upsampling part
and the writing of the output. The kernels they fuse are in ``fused``."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .fused import (
    _fill_border,
    _fold,
    _full_window,
    _Kernels,
    _padded,
    _phase,
    _phases_into,
    _reflect_border_s2d,
    _relu_clamp,
    _window_moments,
)
from .magenta import norm_affine


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


def _expand(
    kernels: _Kernels, low: torch.Tensor, offset, style: dict, stats: list, until: int = 2
) -> torch.Tensor:
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
            mean, var = _window_moments(
                out, channels, "subpixel", *_full_window(out, "subpixel")
            ).result()
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
    _phases_into(
        out,
        16,
        lo,
        hi,
        lambda a, b: half[:, :, 1 + a : 1 + rows : 2, 1 + b : 1 + cols : 2],  # noqa: F821 (bound before the call; deleted after)
    )
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
    _phases_into(
        out,
        8,
        lo,
        hi,
        lambda a, b: full[:, (2 * a + b) * 8 : (2 * a + b + 1) * 8, 2 : 2 + rows, 2 : 2 + cols],
    )
    _reflect_border_s2d(full, 4)
    del out

    w, b = _fold(kernels.out_weight, kernels.out.bias.repeat(4), scale, shift, repeat=4)
    return F.conv2d(full, w, b)


def _write_output(
    out: torch.Tensor,
    rows: tuple,
    cols: tuple,
    target: np.ndarray,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
) -> None:
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
