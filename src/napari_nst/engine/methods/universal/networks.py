"""The universal method's networks: for each level k = 1..5 an encoder up to relu k_1 and the
decoder trained to invert it (Collaborative Distillation 16x, Wang et al. CVPR 2020, MIT; derived
from Oxford VGG's VGG-19, CC BY 4.0). Encoder 5 is the distilled VGG-19 of ``network=
"vgg19-distilled"``; the other eight files are the repository's ``kSE.pth`` / ``kSD.pth``.

Forward passes as in the original ``model/model_cd.py``: the encoder starts with ``conv0`` (a 1x1
convolution holding Caffe's preprocessing; input RGB in [0, 1]), then a reflection pad, 3x3
convolution and ReLU per convolution, 2x2 max pooling after conv1_2, conv2_2, conv3_4 and conv4_4,
stopping after conv k_1. The decoder mirrors it: a reflection pad, 3x3 convolution and ReLU per
convolution (the last one, to RGB, included) and 2x nearest upsampling after each conv j_1 with
j >= 2. Both are built from the files' state dicts by name (the ``*_aux`` 1x1 convolutions only
served the distillation and are ignored).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...weights import (
    UNIVERSAL_DECODERS,
    UNIVERSAL_ENCODERS,
    WeightsError,
    load_torch_state_dict,
    locate,
)

LEVELS = (1, 2, 3, 4, 5)
#: VGG-19's convolutions up to conv5_1, in forward order.
CONVS = (
    "conv11",
    "conv12",
    "conv21",
    "conv22",
    "conv31",
    "conv32",
    "conv33",
    "conv34",
    "conv41",
    "conv42",
    "conv43",
    "conv44",
    "conv51",
)
_POOL_AFTER = ("conv12", "conv22", "conv34", "conv44")


def _encoder_convs(level: int) -> tuple[str, ...]:
    return CONVS[: CONVS.index(f"conv{level}1") + 1]


def scale(level: int) -> int:
    """The encoder of ``level`` sees the image every ``scale`` pixels (2^(level-1))."""
    return 1 << (level - 1)


def reach(level: int) -> int:
    """Pixels of context an output pixel of encoder + decoder ``level`` depends on, per side:
    a tile with this much halo decodes its inside as the whole image does."""
    pixels, step = 0, 1
    for name in _encoder_convs(level):
        pixels += step  # a 3x3 convolution at this scale
        if name in _POOL_AFTER and name != _encoder_convs(level)[-1]:
            pixels += step  # the 2x2 pooling window
            step *= 2
    return 2 * pixels  # the decoder mirrors the encoder


class _Stack(nn.Module):
    """Reflection-padded 3x3 convolutions with ReLU, taken from a state dict by name."""

    def __init__(self, state: dict, names: tuple[str, ...], path):
        super().__init__()
        self.convs = nn.ModuleDict()
        for name in names:
            weight, bias = state.get(f"{name}.weight"), state.get(f"{name}.bias")
            if weight is None or bias is None or weight.shape[-2:] != (3, 3):
                raise WeightsError(
                    f"{path} has no 3x3 convolution {name}: it is not the "
                    "expected universal style transfer network; replace it"
                )
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], 3)
            conv.weight.data.copy_(weight)
            conv.bias.data.copy_(bias)
            self.convs[name] = conv

    def _conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu_(self.convs[name](x))


class Encoder(_Stack):
    """RGB in [0, 1] (1, 3, H, W), sides multiples of ``scale(level)`` -> relu level_1."""

    def __init__(self, state: dict, level: int, path=None):
        super().__init__(state, _encoder_convs(level), path)
        weight, bias = state.get("conv0.weight"), state.get("conv0.bias")
        if weight is None or bias is None:
            raise WeightsError(
                f"{path} has no conv0 (the input convention): it is not the "
                "expected universal style transfer encoder; replace it"
            )
        self.conv0 = nn.Conv2d(3, 3, 1)
        self.conv0.weight.data.copy_(weight)
        self.conv0.bias.data.copy_(bias)
        self.level = level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv0(x)
        names = tuple(self.convs)
        for name in names:
            # each map is dropped as soon as the next is made (the padded copy, the output; the
            # ReLU in place): two maps alive at a time, which bounds a tile's memory
            x = F.pad(x, (1, 1, 1, 1), mode="reflect")
            x = self._conv(name, x)
            if name in _POOL_AFTER and name != names[-1]:
                x = F.max_pool2d(x, 2)
        return x


class Decoder(_Stack):
    """relu level_1 features -> RGB (unclamped; the caller clamps to [0, 1])."""

    def __init__(self, state: dict, level: int, path=None):
        super().__init__(state, tuple(reversed(_encoder_convs(level))), path)
        self.level = level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.convs:
            x = F.pad(x, (1, 1, 1, 1), mode="reflect")
            x = self._conv(name, x)
            if name.endswith("1") and name != "conv11":
                x = F.interpolate(x, scale_factor=2, mode="nearest")
        return x


_loaded: dict = {}


def load_level(level: int, directory=None, device=None) -> tuple[Encoder, Decoder, dict]:
    """The encoder and decoder of ``level`` (looked up, verified and loaded once per process)
    on ``device``, and {file name: sha256} of the two files."""
    key = (level, str(directory))
    if key not in _loaded:
        networks, identity = [], {}
        for kind, entry in (
            (Encoder, UNIVERSAL_ENCODERS[level]),
            (Decoder, UNIVERSAL_DECODERS[level]),
        ):
            path = locate(entry, directory=directory)
            state = load_torch_state_dict(path)
            model = state.get("model", state)
            # channels-last: about 30 % faster on CPUs (oneDNN's own layout), the same numbers
            networks.append(
                kind(model, level, path)
                .eval()
                .requires_grad_(False)
                .to(memory_format=torch.channels_last)
            )
            identity[entry.filename] = entry.sha256
        _loaded[key] = (*networks, identity)
    encoder, decoder, identity = _loaded[key]
    if device is not None:
        encoder, decoder = encoder.to(device), decoder.to(device)
    return encoder, decoder, identity
