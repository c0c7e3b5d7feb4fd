"""Content, Gram style and total-variation losses of Gatys et al. 2015, with a size-free normalisation.

Normalisation (why the default weights behave the same at any image size):
  * Gram matrices are averaged over positions, G = F Fᵀ / (H·W), so they do not grow with the image.
  * Content and style terms use a *normalised squared error*, Σd² / Σ|d| (d = input - target).
    Its gradient with respect to the features has an L1 norm of about 2 whatever the number of
    elements, the layer's depth or the scale of its activations, so every layer and term pulls
    with a strength set only by its weight -- at 256 px, at 2048 px, and with random VGG weights.
  * Total variation is the mean squared difference of neighbouring pixels.
The paper's 1/(4N²M²) factor is a special case of a fixed per-layer scale; this one adapts, the
way crowsonkb/style-transfer-pytorch does, which is also why paper-style α/β values do not carry
over: the defaults here are content 0.015, style 1 (shared equally by the style layers), TV 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

EPS = 1e-8


def normalized_squared_error(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ(input - target)² / Σ|input - target| (zero when they are equal)."""
    diff = input - target
    return diff.pow(2).sum() / (diff.abs().sum() + EPS)


class _Gram(torch.autograd.Function):
    """F Fᵀ with a one-matmul backward, (g + gᵀ) F.

    Autograd's own backward of ``flat @ flat.transpose(1, 2)`` runs two matmuls and adds a
    transposed gradient into a contiguous one (about 8 % of a step at 512 px on a CPU).
    """

    @staticmethod
    def forward(ctx, flat: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(flat)
        return torch.bmm(flat, flat.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (flat,) = ctx.saved_tensors
        return torch.bmm(grad + grad.transpose(1, 2), flat)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrices averaged over the H·W positions."""
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return _Gram.apply(flat) / (height * width)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between vertically and horizontally neighbouring pixels."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()


class StyleTransferLoss(nn.Module):
    """α·content + β·Σ_l w_l·style_l + γ·TV, with targets computed once at construction.

    ``styles`` may hold several style images; their Gram matrices are averaged with
    ``style_blend`` weights (normalised to sum 1).
    """

    def __init__(self, features: nn.Module, content: torch.Tensor, styles: Sequence[torch.Tensor],
                 *, content_layers, style_layers, style_layer_weights=None, content_weight=0.015,
                 style_weight=1.0, tv_weight=2.0, style_blend=None, compute_dtype=torch.float32):
        super().__init__()
        self.compute_dtype = compute_dtype
        self.features = features
        self.content_layers = tuple(content_layers)
        self.style_layers = tuple(style_layers)
        layer_weights = torch.tensor(style_layer_weights if style_layer_weights is not None
                                     else [1.0] * len(self.style_layers), dtype=torch.float64)
        if len(self.style_layers) and layer_weights.sum() <= 0:
            raise ValueError("style_layer_weights must have a positive sum")
        layer_weights = layer_weights / layer_weights.sum() if len(self.style_layers) else layer_weights
        self.style_layer_weights = [float(w) for w in layer_weights]
        self.content_weight = float(content_weight)
        self.style_weight = float(style_weight)
        self.tv_weight = float(tv_weight)
        blend = normalized_blend_weights(style_blend, len(styles))

        with torch.no_grad():  # targets in float32, whatever the compute dtype
            content_features = features(content)
            self.content_targets = [content_features[name].detach() for name in self.content_layers]
            grams: list[torch.Tensor] = [0.0] * len(self.style_layers)
            for weight, style in zip(blend, styles):
                style_features = features(style)
                for i, name in enumerate(self.style_layers):
                    grams[i] = grams[i] + weight * gram_matrix(style_features[name])
            self.style_targets = [g.detach() for g in grams]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and the weighted terms ("content", "style", "tv") as 0-d tensors."""
        # only the VGG passes run in ``compute_dtype``; Grams and losses stay in float32
        with torch.autocast(image.device.type, dtype=self.compute_dtype,
                            enabled=self.compute_dtype != torch.float32):
            activations = self.features(image)
        activations = {name: value.float() for name, value in activations.items()}
        zero = image.new_zeros(())
        content = sum((normalized_squared_error(activations[name], target)
                       for name, target in zip(self.content_layers, self.content_targets)), zero)
        style = sum((w * normalized_squared_error(gram_matrix(activations[name]), target)
                     for name, w, target in zip(self.style_layers, self.style_layer_weights,
                                                self.style_targets)), zero)
        terms = {"content": self.content_weight * content,
                 "style": self.style_weight * style,
                 "tv": self.tv_weight * total_variation(image)}
        return terms["content"] + terms["style"] + terms["tv"], terms


def normalized_blend_weights(weights, count: int) -> list[float]:
    """Blend weights for ``count`` styles, normalised to sum 1 (None: equal weights).

    Weights that do not sum to 1 are rescaled; negative weights or a zero sum are rejected.
    """
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise ValueError(f"style_blend has {len(weights)} weight(s) for {count} style image(s); "
                         "give one weight per style image")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"style_blend weights {weights} must be >= 0 with a positive sum")
    total = sum(weights)
    return [w / total for w in weights]
