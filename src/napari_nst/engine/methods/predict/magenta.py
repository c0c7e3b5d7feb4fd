"""Ghiasi et al. 2017 ("arbitrary style transfer in real time") as readable torch modules, with
the weights of Google's int8 TFLite export of Magenta's ``arbitrary-image-stylization-v1-256``.

Two networks:

* ``StylePredictor``: a MobileNet-v2 trunk (1.0 width) on the 256x256 style image, global average
  pooling and a 1x1 convolution to the 100-d style embedding ("bottleneck").
* ``StyleTransformer``: three contracting convolutions (9x9, 3x3/2, 3x3/2; batch norm folded into
  their biases), five residual blocks and three upsampling convolutions (nearest x2, 3x3; x2, 3x3;
  x1, 9x9), each of the latter thirteen followed by a *conditional instance norm* whose per-channel
  scale gamma and offset beta are 1x1 convolutions of the embedding; a sigmoid at the end. Every
  convolution reflect-pads its input first (TensorFlow's ``MirrorPad`` + ``VALID``).

Module and parameter names follow the TFLite tensor names (``magenta_weights`` converts the files
and loads the networks with their weights).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EMBEDDING_SIZE = 100
STYLE_INPUT_SIZE = 256  # the predictor's training resolution
NORM_EPSILON = 1e-5  # Magenta's conditional instance norm epsilon (checked against the file)
SIZE_MULTIPLE = 4  # two stride-2 convolutions, undone by two x2 upsamplings


# --- the style predictor -------------------------------------------------------------------------


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's ``SAME`` padding (asymmetric for stride 2: the extra row and column
    go to the bottom and right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        if k == 1:
            return super().forward(x)
        if s == 1:
            return F.conv2d(x, self.weight, self.bias, 1, k // 2, 1, self.groups)
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, s, 0, 1, self.groups)


class InvertedResidual(nn.Module):
    """MobileNet-v2 block: 1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 linear projection,
    plus the input when the shape is unchanged."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        if expansion != 1:
            self.expand = SameConv2d(cin, hidden, 1)
        self.depthwise = SameConv2d(hidden, hidden, 3, stride=stride, groups=hidden)
        self.project = SameConv2d(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self.expand(x)) if hasattr(self, "expand") else x
        h = self.project(F.relu6(self.depthwise(h)))
        return x + h if self.residual else h


# (expansion, output channels, repeats, first stride): MobileNet-v2, width 1.0
_MOBILENET_V2 = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobilenetV2(nn.Module):
    """The trunk, with TF-slim's layer names: Conv, expanded_conv, expanded_conv_1 .. _16, Conv_1."""

    def __init__(self):
        super().__init__()
        self.Conv = SameConv2d(3, 32, 3, stride=2)
        cin, index = 32, 0
        self.block_names = []
        for expansion, cout, repeats, stride in _MOBILENET_V2:
            for r in range(repeats):
                name = "expanded_conv" if index == 0 else f"expanded_conv_{index}"
                self.add_module(
                    name, InvertedResidual(cin, cout, stride if r == 0 else 1, expansion)
                )
                self.block_names.append(name)
                cin, index = cout, index + 1
        self.Conv_1 = SameConv2d(cin, 1280, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self.Conv(x))
        for name in self.block_names:
            h = getattr(self, name)(h)
        return F.relu6(self.Conv_1(h))


class _Scope(nn.Module):
    """A named scope holding one 1x1 convolution called ``Conv`` (Magenta's layout)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.Conv = SameConv2d(cin, cout, 1)


class StylePredictor(nn.Module):
    """Style image (N, 3, 256, 256) in [0, 1] -> style embedding (N, 100, 1, 1).

    The export feeds [0, 1] straight into the first convolution (any rescaling to MobileNet's
    [-1, 1] was folded into its weights), so no normalisation happens here.
    """

    def __init__(self):
        super().__init__()
        self.MobilenetV2 = MobilenetV2()
        self.mobilenet_conv = _Scope(1280, EMBEDDING_SIZE)

    def forward(self, style: torch.Tensor) -> torch.Tensor:
        features = self.MobilenetV2(style)
        return self.mobilenet_conv.Conv(features.mean(dim=(2, 3), keepdim=True))  # "bottleneck"


# --- the transformer ------------------------------------------------------------------------------


class StyleNorm(nn.Module):
    """Conditional instance norm parameters: beta = Conv(embedding), gamma = Conv_1(embedding)."""

    def __init__(self, channels: int, embedding: int = EMBEDDING_SIZE):
        super().__init__()
        self.Conv = nn.Conv2d(embedding, channels, 1)
        self.Conv_1 = nn.Conv2d(embedding, channels, 1)

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.Conv_1(embedding), self.Conv(embedding)


def norm_affine(gamma: torch.Tensor, beta: torch.Tensor, mean: torch.Tensor, var: torch.Tensor):
    """Per-channel (scale, shift) with ``norm(x) = x * scale + shift``: one multiply-add per
    element instead of subtract, divide, multiply, add."""
    scale = gamma * torch.rsqrt(var + NORM_EPSILON)
    return scale, beta - mean * scale


class ReflectConv2d(nn.Conv2d):
    """Reflect padding by ``kernel // 2`` followed by a VALID convolution (TF's MirrorPad+Conv2D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.kernel_size[0] // 2
        return F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), self.weight, self.bias, self.stride)


class ConditionalConv(ReflectConv2d):
    """A ReflectConv2d followed by conditional instance norm (``StyleNorm``) and an activation."""

    def __init__(self, cin: int, cout: int, kernel: int, activation: str | None):
        super().__init__(cin, cout, kernel)
        self.StyleNorm = StyleNorm(cout)
        self.activation = activation

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation == "relu":
            return x.relu_()
        if self.activation == "sigmoid":
            return x.sigmoid_()
        return x

    def normalize(self, x: torch.Tensor, embedding: torch.Tensor, stats=None) -> torch.Tensor:
        """Conditional instance norm and activation of a convolution output, in place.

        ``stats`` (mean, var), each (N, C, 1, 1), replaces the statistics of ``x`` itself: tiles of
        a large image are normalised with the statistics of the whole image.
        """
        if stats is None:
            var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        else:
            mean, var = stats
        gamma, beta = self.StyleNorm(embedding)
        scale, shift = norm_affine(gamma, beta, mean.to(x.dtype), var.to(x.dtype))
        return self.activate(x.mul_(scale).add_(shift))

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.normalize(super().forward(x), embedding)


class Contract(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = ReflectConv2d(3, 8, 9)
        self.conv2 = ReflectConv2d(8, 16, 3, stride=2)
        self.conv3 = ReflectConv2d(16, 32, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).relu_()
        x = self.conv2(x).relu_()
        return self.conv3(x).relu_()


class ResidualBlock(nn.Module):
    def __init__(self, channels: int = 32):
        super().__init__()
        self.conv1 = ConditionalConv(channels, channels, 3, "relu")
        self.conv2 = ConditionalConv(channels, channels, 3, None)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x, embedding), embedding)


class Residual(nn.Module):
    def __init__(self, blocks: int = 5):
        super().__init__()
        self.names = [f"residual{i}" for i in range(1, blocks + 1)]
        for name in self.names:
            self.add_module(name, ResidualBlock())

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            x = getattr(self, name)(x, embedding)
        return x


class Upsampling(nn.Module):
    """Nearest-neighbour upsampling by ``factor`` and a ConditionalConv (Magenta's ``upsampling``)."""

    def __init__(self, cin: int, cout: int, kernel: int, factor: int, activation: str):
        super().__init__()
        self.factor = factor
        self.conv = ConditionalConv(cin, cout, kernel, activation)

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.factor == 1 else F.interpolate(x, scale_factor=self.factor, mode="nearest")

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.conv(self.upsample(x), embedding)


class Expand(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = Upsampling(32, 16, 3, 2, "relu")
        self.conv2 = Upsampling(16, 8, 3, 2, "relu")
        self.conv3 = Upsampling(8, 3, 9, 1, "sigmoid")
        self.layers = (self.conv1, self.conv2, self.conv3)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, embedding)
        return x


class _TransformerScope(nn.Module):
    def __init__(self):
        super().__init__()
        self.contract = Contract()
        self.residual = Residual()
        self.expand = Expand()


class StyleTransformer(nn.Module):
    """Content (N, 3, H, W) in [0, 1], H and W multiples of 4, and embedding (N, 100, 1, 1) ->
    stylised image (N, 3, H, W) in [0, 1]. ``renderer.render`` pads other sizes."""

    def __init__(self):
        super().__init__()
        self.transformer = _TransformerScope()

    def forward(self, content: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        t = self.transformer
        if content.shape[-2] % SIZE_MULTIPLE or content.shape[-1] % SIZE_MULTIPLE:
            raise ValueError(
                f"content of {tuple(content.shape[-2:])} pixels: both sides must be "
                f"multiples of {SIZE_MULTIPLE}"
            )
        return t.expand(t.residual(t.contract(content), embedding), embedding)

    def conditional_layers(self) -> list[ConditionalConv]:
        return [m for m in self.modules() if isinstance(m, ConditionalConv)]
