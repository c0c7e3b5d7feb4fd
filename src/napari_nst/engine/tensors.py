"""Images between numpy and torch: (H, W, 3) float arrays in [0, 1] <-> (1, 3, H, W) tensors."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_tensor(rgb: np.ndarray, shape, device: torch.device) -> torch.Tensor:
    """(H, W, 3) float image -> (1, 3, h, w) tensor on ``device`` resized with antialiasing."""
    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].to(device)
    if tuple(tensor.shape[-2:]) != tuple(shape):
        tensor = F.interpolate(
            tensor, size=tuple(shape), mode="bicubic", antialias=True, align_corners=False
        ).clamp_(0.0, 1.0)
    return tensor


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) tensor -> (H, W, 3) float32 array in [0, 1] on the host."""
    return tensor.detach()[0].clamp(0.0, 1.0).permute(1, 2, 0).float().cpu().numpy()
