"""The whitening-colouring transform (Li et al. 2017) as pure functions on feature statistics.

Features are (C, N) (channels by pixels). Every statistic is accumulated and decomposed in
float64. With the content's mean m_c and covariance C_c = E_c D_c E_cᵀ and the style's m_s,
C_s = E_s D_s E_sᵀ, the transform is

    y = E_s D_s^½ E_sᵀ · E_c D_c^-½ E_cᵀ (x − m_c) + m_s

and the strength α blends it with the features themselves, α·y + (1 − α)·x. Both are affine in
x, so one run reduces to ``x -> M x + b`` (``affine``), which a tiled run applies tile by tile
with the whole image's statistics (no seams), and several styles blend as a weighted sum of
their maps. A small ridge, relative to the covariance's mean eigenvalue, keeps flat images and
tiny regions finite (the authors drop eigenvalues below 1e-5; the distillation's code uses no
ridge, unstable on flat images).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: The ridge added to every covariance, relative to its mean eigenvalue (plus an absolute floor).
RIDGE = 1e-5
_FLOOR = 1e-12
_CHUNK = 1 << 16  # pixels per float64 block of the moments


class Moments:
    """Running sums of (C, N) feature blocks for their mean and covariance, in float64."""

    def __init__(self, channels: int):
        self.count = 0
        self.total = torch.zeros(channels, dtype=torch.float64)
        self.outer = torch.zeros(channels, channels, dtype=torch.float64)

    @classmethod
    def of(cls, features: torch.Tensor) -> Moments:
        """The moments of one (C, ...) block of features."""
        return cls(features.shape[0]).add(features)

    def add(self, features: torch.Tensor) -> Moments:
        flat = features.reshape(features.shape[0], -1)
        for start in range(0, flat.shape[1], _CHUNK):  # a float64 copy of a chunk at a time
            block = flat[:, start : start + _CHUNK].to("cpu", torch.float64)
            self.count += block.shape[1]
            self.total += block.sum(dim=1)
            self.outer += block @ block.T
        return self

    def mean_covariance(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.total / max(self.count, 1)
        covariance = self.outer / max(self.count, 1) - torch.outer(mean, mean)
        return mean, (covariance + covariance.T) / 2


def _eigen(covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    values, vectors = torch.linalg.eigh(covariance)
    ridge = RIDGE * max(float(values.clamp(min=0).mean()), 0.0) + _FLOOR
    return values.clamp(min=0) + ridge, vectors


def colouring(moments: Moments) -> tuple[torch.Tensor, torch.Tensor]:
    """A style's (mean m_s, colouring matrix E_s D_s^½ E_sᵀ)."""
    mean, covariance = moments.mean_covariance()
    values, vectors = _eigen(covariance)
    return mean, (vectors * values.sqrt()) @ vectors.T


def whitening(moments: Moments) -> tuple[torch.Tensor, torch.Tensor]:
    """A content's (mean m_c, whitening matrix E_c D_c^-½ E_cᵀ)."""
    mean, covariance = moments.mean_covariance()
    values, vectors = _eigen(covariance)
    return mean, (vectors * values.rsqrt()) @ vectors.T


@dataclass(frozen=True)
class StyleStatistics:
    """What the transform needs of one style at one level: its mean and colouring matrix
    (float64, on the CPU: small, and they travel to dask workers)."""

    mean: torch.Tensor
    colour: torch.Tensor

    @classmethod
    def from_moments(cls, moments: Moments) -> StyleStatistics:
        return cls(*colouring(moments))


def affine(
    content: Moments, styles: list[StyleStatistics], weights: list[float], strength: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, b) with ``M x + b`` the strength-blended transform of features x whose statistics are
    ``content``, towards the ``weights``-blended ``styles`` (float64)."""
    mean_c, white = whitening(content)
    channels = mean_c.shape[0]
    matrix = torch.zeros(channels, channels, dtype=torch.float64)
    bias = torch.zeros(channels, dtype=torch.float64)
    for style, weight in zip(styles, weights):
        transform = style.colour @ white
        matrix += weight * transform
        bias += weight * (style.mean - transform @ mean_c)
    identity = torch.eye(channels, dtype=torch.float64)
    return strength * matrix + (1.0 - strength) * identity, strength * bias


def apply_affine(features: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``M x + b`` on (1, C, h, w) features, in their own dtype and device: a 1x1 convolution
    (one output map, no permuted copies)."""
    weight = matrix.to(features.device, features.dtype)[:, :, None, None]
    return torch.nn.functional.conv2d(features, weight, bias.to(features.device, features.dtype))
