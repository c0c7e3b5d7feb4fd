"""Content, Gram style and total-variation losses of Gatys et al. 2015, each measured in units of
its own target's energy.

Why this normalisation (it decides what the default weights mean):
  * Gram matrices are averaged over positions, G = F Fᵀ / (H·W), so they do not grow with the image.
  * Content and style terms are *relative squared errors*, Σ(x − t)² / Σt²: the share of the
    target's energy still missing. A term's value then means the same at every layer, at every
    image size and in every network, whatever the scale of its activations (in the distilled
    network a conv3_1 Gram entry is about 2,000 times a conv5_1 one, measured on a painting at
    256 px; ImageNet VGG-19's scales differ again, and plain squared errors would let such
    scales, not the weights, decide which layers count).
    Equal layer weights (the paper's 1/5) really are equal, and content_weight / style_weight is a
    balance between two dimensionless numbers, so the same defaults hold for both networks.
  * Both are squared errors, so the pull of each term grows with its distance from its target,
    like a spring. That is what makes the balance controls graded: under L-BFGS, which goes to the
    optimum, the result settles where the two springs balance, and moving a weight moves that
    point. (The previous Σd²/Σ|d| has a gradient of constant size at any distance: a constant
    force that lets the stronger term win almost everywhere, as measured on the distilled network.)
  * Total variation is measured the same way, relative to the content's own: TV(x) / TV(content),
    so its weight means the same at any size (neighbouring pixels differ less at higher
    resolution). Its default weight is 0: on the distilled network smoothing only cost content
    detail (SSIM) and the results showed no noise that asked for it.
What is size-free is the balance, not the look: VGG's receptive fields are fixed in pixels, so at
a larger working size the style's strokes are finer relative to the image and conv4_2 holds the
content on a finer grid (every 8 px), and more of the content's detail survives. Below 512 px that
grid is too coarse for the content to hold its own from a content or noise start; the default
predict start carries the layout in (see ``gatys``, and ``Settings.min_working_size``).
The paper's α/β values and 1/(4N²M²) factor do not carry over (they depend on the network's
activation scale); the defaults here were chosen on real, learned features (the distilled VGG-19)
with the quality benchmark, ``benchmarks/bench_quality.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ....validation import normalized_blend_weights, normalized_weights  # the one rule

EPS = 1e-12


def relative_squared_error(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ(input − target)² / Σtarget² (zero when they are equal)."""
    return (input - target).pow(2).sum() / (target.pow(2).sum() + EPS)


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


def style_gram_targets(
    features: nn.Module, styles: Sequence[torch.Tensor], style_layers: Sequence[str]
) -> list[list[torch.Tensor]]:
    """Each style image's Gram matrix at each style layer (float32, before blending): the style
    targets of a ``StyleTransferLoss``, which a stack computes once for all its planes."""
    with torch.no_grad():
        grams = []
        for style in styles:
            style_features = features(style)
            grams.append([gram_matrix(style_features[name]) for name in style_layers])
        return grams


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between vertically and horizontally neighbouring pixels."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()


class ContentLoss(nn.Module):
    """Relative squared error of one layer's features to the content's."""

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.register_buffer("target", target.detach().float())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return relative_squared_error(features, self.target)


class StyleLoss(nn.Module):
    """Relative squared error of one layer's Gram matrix to the style's (a blend of several)."""

    def __init__(self, target_gram: torch.Tensor):
        super().__init__()
        self.register_buffer("target", target_gram.detach().float())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return relative_squared_error(gram_matrix(features), self.target)


class TVLoss(nn.Module):
    """Total variation relative to the content's own (1 for the content itself)."""

    def __init__(self, content: torch.Tensor):
        super().__init__()
        self.scale = 1.0 / (float(total_variation(content)) + 1e-6)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return total_variation(image) * self.scale


class TemporalLoss(nn.Module):
    """Ruder et al. 2016's short-term consistency: the mean squared difference to the previous
    plane's result moved onto this one, over the pixels where that motion is trusted (a trust map
    in [0, 1] weighs each pixel). Pixels are in [0, 1] already, so the term is dimensionless like
    the others; it is not divided by the previous result's energy (as the content and style terms
    are by their targets'), which would make a dark stack -- fluorescence -- pull several times
    harder than a bright one."""

    def __init__(self, previous: torch.Tensor, trust: torch.Tensor):
        super().__init__()
        self.register_buffer("previous", previous.detach().float())
        self.register_buffer("trust", trust.detach().float())
        self.scale = 1.0 / (float(trust.sum()) * previous.shape[1] + EPS)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (self.trust * (image - self.previous).pow(2)).sum() * self.scale


def guided_gram(features: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Gatys et al. 2017's guided Gram matrix: the Gram matrix of the features weighted by a
    region's guide (1, 1, h, w), averaged over the region's own area (Σ guide²), so that a
    region's texture statistics do not shrink with its share of the image."""
    flat = (features * guide).reshape(features.shape[0], features.shape[1], -1)
    return _Gram.apply(flat) / (guide.pow(2).sum() + EPS)


def layer_guide(guide: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """A region's guide (1, 1, H, W) at a layer's resolution: averaged over each feature
    pixel's footprint (VGG's poolings halve the grid; its convolutions keep it)."""
    if guide.shape[-2:] == features.shape[-2:]:
        return guide
    return nn.functional.adaptive_avg_pool2d(guide, features.shape[-2:])


#: A region holds a layer when its guide sums to at least this many feature pixels there; a
#: smaller one (a few pixels at conv5_1's 1/16 grid) is matched at the other layers only.
MIN_GUIDE_PIXELS = 4.0


class GuidedStyleLoss(nn.Module):
    """The style term of one layer with regions: each region's guided Gram matrix against its
    own target, the regions weighed by their share of the styled area."""

    def __init__(
        self,
        guides: Sequence[torch.Tensor],
        targets: Sequence[torch.Tensor],
        shares: Sequence[float],
    ):
        super().__init__()
        self.guides = [g.detach().float() for g in guides]
        self.targets = [t.detach().float() for t in targets]
        total = sum(shares)
        self.shares = [share / total for share in shares]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return sum(
            share * relative_squared_error(guided_gram(features, guide), target)
            for guide, target, share in zip(self.guides, self.targets, self.shares)
        )


class StyleTransferLoss(nn.Module):
    """α·Σ content + β·Σ_l w_l·style_l + γ·TV, with targets computed once at construction.

    ``styles`` may hold several style images; their Gram matrices are averaged with
    ``style_blend`` weights (normalised to sum 1). ``style_strength`` s moves each style target
    from the content's own Gram matrix (s = 0: the content is the optimum) to the style's
    (s = 1), (1 - s)·G_content + s·G_style, so the result's colours and textures shift
    gradually, as predict's embedding interpolation does; scaling the style weight instead
    jumps: a small weight already transfers the style's colours completely.

    ``styles`` are style images, or None with ``style_grams`` given instead: their Gram matrices
    from ``style_gram_targets`` (the same layers), computed once for several contents.
    ``temporal`` (a stack's plane): (previous plane's moved result, trust), both (1, C|1, H, W),
    for a ``TemporalLoss`` of weight ``temporal_weight``. ``regions``: [(guide (1, 1, H, W),
    blend over the styles)] per group of labels: each group matched to its own blend where its
    guide says (``GuidedStyleLoss``), instead of one blend everywhere.
    """

    def __init__(
        self,
        features: nn.Module,
        content: torch.Tensor,
        styles: Sequence[torch.Tensor] | None,
        *,
        content_layers,
        style_layers,
        style_layer_weights=None,
        content_weight=1.0,
        style_weight=1.0,
        tv_weight=0.0,
        style_blend=None,
        style_strength=1.0,
        compute_dtype=torch.float32,
        style_grams: Sequence[Sequence[torch.Tensor]] | None = None,
        temporal: tuple[torch.Tensor, torch.Tensor] | None = None,
        temporal_weight: float = 0.0,
        regions: Sequence[tuple[torch.Tensor, Sequence[float]]] | None = None,
    ):
        super().__init__()
        self.compute_dtype = compute_dtype
        self.features = features
        self.content_layers = tuple(content_layers)
        self.style_layers = tuple(style_layers)
        self.style_layer_weights = normalized_weights(
            "style_layer_weights",
            style_layer_weights,
            len(self.style_layers),
            "entry of style_layers",
        )
        self.content_weight = float(content_weight)
        self.style_weight = float(style_weight)
        self.tv_weight = float(tv_weight)
        if (styles is None) == (style_grams is None):
            raise ValueError("give either styles or style_grams")
        if style_grams is None:
            style_grams = style_gram_targets(features, styles, self.style_layers)
        blend = normalized_blend_weights(style_blend, len(style_grams))

        with torch.no_grad():  # targets in float32, whatever the compute dtype
            content_features = features(content)
            self.content_losses = nn.ModuleList(
                ContentLoss(content_features[name]) for name in self.content_layers
            )
            if regions is None:
                grams = _targets(
                    content_features, None, style_grams, blend, style_strength, self.style_layers
                )
                self.style_losses = nn.ModuleList(StyleLoss(g) for g in grams)
            else:
                self.style_losses = nn.ModuleList(
                    _guided_losses(
                        content_features, regions, style_grams, style_strength, self.style_layers
                    )
                )
            self.tv_loss = TVLoss(content)
        self.temporal_weight = float(temporal_weight)
        self.temporal_loss = TemporalLoss(*temporal) if temporal is not None else None

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and the weighted terms ("content", "style", "tv", and "temporal" where there
        is one) as 0-d tensors."""
        # only the VGG passes run in ``compute_dtype``; Grams and losses stay in float32
        with torch.autocast(
            image.device.type, dtype=self.compute_dtype, enabled=self.compute_dtype != torch.float32
        ):
            activations = self.features(image)
        activations = {name: value.float() for name, value in activations.items()}
        zero = image.new_zeros(())
        content = sum(
            (
                loss(activations[name])
                for name, loss in zip(self.content_layers, self.content_losses)
            ),
            zero,
        )
        style = sum(
            (
                w * loss(activations[name])
                for name, w, loss in zip(
                    self.style_layers, self.style_layer_weights, self.style_losses
                )
            ),
            zero,
        )
        terms = {
            "content": self.content_weight * content,
            "style": self.style_weight * style,
            "tv": self.tv_weight * self.tv_loss(image),
        }
        if self.temporal_loss is not None:
            terms["temporal"] = self.temporal_weight * self.temporal_loss(image)
        return sum(terms.values(), zero), terms


def _targets(
    content_features: dict, guide: torch.Tensor | None, style_grams, blend, strength: float, layers
) -> list[torch.Tensor]:
    """Each layer's target Gram matrix: the styles' blend, moved towards the content's own
    (guided by ``guide`` where given) by ``1 - strength``."""
    grams = []
    for i, name in enumerate(layers):
        features = content_features[name]
        own = (
            gram_matrix(features)
            if guide is None
            else guided_gram(features, layer_guide(guide, features))
        )
        target = (1.0 - strength) * own
        for weight, layer_grams in zip(blend, style_grams):
            target = target + (weight * strength) * layer_grams[i].to(target.device)
        grams.append(target)
    return grams


def _guided_losses(
    content_features: dict, regions, style_grams, strength: float, layers
) -> list[nn.Module]:
    """One ``GuidedStyleLoss`` per layer over the regions that hold it (a layer no region holds
    has no style term)."""
    targets = [
        _targets(content_features, guide, style_grams, blend, strength, layers)
        for guide, blend in regions
    ]
    losses = []
    for i, name in enumerate(layers):
        features = content_features[name]
        guides, region_targets, shares = [], [], []
        for (guide, _), per_layer in zip(regions, targets):
            at_layer = layer_guide(guide, features)
            if float(at_layer.sum()) >= MIN_GUIDE_PIXELS:
                guides.append(at_layer)
                region_targets.append(per_layer[i])
                shares.append(float(guide.mean()))
        losses.append(GuidedStyleLoss(guides, region_targets, shares) if guides else _NoStyle())
    return losses


class _NoStyle(nn.Module):
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.new_zeros(())
