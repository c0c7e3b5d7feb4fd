"""Style embeddings for prediction: the style image(s) -> 256x256 crops -> ``StylePredictor`` ->
100-d embeddings, averaged over crops, blended over styles (``style_blend``) and interpolated with
the content's own embedding (``style_strength``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ....validation import normalized_blend_weights
from .magenta import STYLE_INPUT_SIZE, StylePredictor


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
    grid = [(int(top), int(left), side) for top in tops for left in lefts]
    pick = np.linspace(0, len(grid) - 1, crops).round().astype(int)
    return [grid[i] for i in pick]


def style_batch(rgb: np.ndarray, crops: int, device) -> torch.Tensor:
    """(crops, 3, 256, 256) predictor input: each crop resized with antialiasing."""
    image = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    batch = []
    for top, left, side in style_crops(rgb, crops):
        crop = image[:, :, top : top + side, left : left + side].to(device)
        if side != STYLE_INPUT_SIZE:
            crop = F.interpolate(
                crop,
                size=(STYLE_INPUT_SIZE, STYLE_INPUT_SIZE),
                mode="bilinear",
                antialias=side > STYLE_INPUT_SIZE,
                align_corners=False,
            )
        batch.append(crop.clamp(0.0, 1.0))
    return torch.cat(batch)


@torch.inference_mode()
def embed(predictor: StylePredictor, rgb: np.ndarray, crops: int = 1) -> torch.Tensor:
    """Style embedding (1, 100, 1, 1) of an (H, W, 3) image in [0, 1], averaged over its crops."""
    device = next(predictor.parameters()).device
    batch = style_batch(rgb, crops, device)
    if device.type != "mps":
        batch = batch.contiguous(memory_format=torch.channels_last)
    return predictor(batch).mean(dim=0, keepdim=True)


@torch.inference_mode()
def blend_embeddings(
    style_embeddings: Sequence[torch.Tensor],
    weights=None,
    content_embedding: torch.Tensor | None = None,
    strength: float = 1.0,
) -> torch.Tensor:
    """Weighted mean of the style embeddings (weights normalised to sum 1), then interpolated
    from the content's own embedding (strength 0) to the blend (strength 1)."""
    weights = normalized_blend_weights(weights, len(style_embeddings))
    mixed = sum(w * e for w, e in zip(weights, style_embeddings))
    if strength >= 1.0 or content_embedding is None:
        return mixed
    return (1.0 - strength) * content_embedding + strength * mixed


__all__ = ["blend_embeddings", "embed", "style_batch", "style_crops"]
