"""The plain reference of universal style transfer, written as the authors' and the
distillation's code write it (Li et al. 2017 ``WCT.py``; Collaborative Distillation
``model/model_cd.py``), for the speed ratio of ``bench_universal.py``.

What is plain on purpose: per level, the content and the style are encoded again, the style's
statistics are computed again for every content, the covariance decompositions use ``torch.svd``
on float64 copies of the flattened features, eigenvalues below 1e-5 are dropped, and nothing is
kept between calls. The networks are the project's (``networks.Encoder``/``Decoder`` built from
the same files, in torch's default NCHW layout): both implementations compute the same
transform.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F


def _wct(content: torch.Tensor, style: torch.Tensor, alpha: float) -> torch.Tensor:
    channels, height, width = content.shape
    c = content.reshape(channels, -1).double()
    s = style.reshape(style.shape[0], -1).double()
    c_mean = c.mean(1, keepdim=True)
    c = c - c_mean
    u, e, v = torch.svd(c @ c.T / (c.shape[1] - 1) + torch.eye(channels, dtype=torch.float64))
    k = int((e > 1e-5).sum())
    whitened = v[:, :k] @ torch.diag(e[:k].pow(-0.5)) @ v[:, :k].T @ c
    s_mean = s.mean(1, keepdim=True)
    s = s - s_mean
    u, e, v = torch.svd(s @ s.T / (s.shape[1] - 1))
    k = int((e > 1e-5).sum())
    coloured = v[:, :k] @ torch.diag(e[:k].pow(0.5)) @ v[:, :k].T @ whitened + s_mean
    out = alpha * coloured + (1 - alpha) * (c + c_mean)
    return out.float().reshape(channels, height, width)


_plain: dict = {}


def _networks(level: int):
    """The level's encoder and decoder as plain NCHW copies."""
    from napari_nst.engine.methods.universal.networks import load_level

    if level not in _plain:
        _plain[level] = tuple(
            copy.deepcopy(net).to(memory_format=torch.contiguous_format)
            for net in load_level(level)[:2]
        )
    return _plain[level]


def plain_universal(content: np.ndarray, style: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """(H, W, 3) float images in [0, 1] -> the result, levels 5 .. 1."""
    image = torch.from_numpy(np.ascontiguousarray(content, np.float32)).permute(2, 0, 1)[None]
    style_t = torch.from_numpy(np.ascontiguousarray(style, np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        for level in (5, 4, 3, 2, 1):
            encoder, decoder = _networks(level)
            grid = 1 << (level - 1)
            height, width = image.shape[-2:]
            pad = (0, -width % grid, 0, -height % grid)
            c = encoder(F.pad(image, pad, mode="reflect"))
            sh, sw = style_t.shape[-2:]
            s = encoder(F.pad(style_t, (0, -sw % grid, 0, -sh % grid), mode="reflect"))
            image = decoder(_wct(c[0], s[0], alpha)[None])[..., :height, :width].clamp(0, 1)
    return image[0].permute(1, 2, 0).numpy()
