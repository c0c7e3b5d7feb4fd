"""VGG-19 feature networks with named layers, cut after the deepest layer in use.

Layer names follow the paper: ``conv{block}_{n}`` is a convolution's output, ``relu{block}_{n}``
the ReLU after it, ``pool{block}`` the pooling. Every network is an ``nn.Sequential`` laid out as
torchvision's ``vgg19().features`` (so its ImageNet state dict loads by key) and takes
ImageNet-normalised RGB, ``(rgb - IMAGENET_MEAN) / IMAGENET_STD``: the extractor applies that one
normalisation in front of any network.

Two networks (``Settings.network``):

* ``vgg19`` -- torchvision's ImageNet VGG-19 (548 MB), zero-padded convolutions.
* ``vgg19-distilled`` -- the Collaborative Distillation encoder (Wang et al., CVPR 2020), VGG-19
  with a quarter of the channels up to ``conv5_1``, about 1/16 of the compute (3.9 MB). Its
  original forward pass takes RGB in [0, 1] and starts with ``conv0``, a 1x1 convolution holding
  Caffe's preprocessing (RGB -> BGR, x255, minus the mean); every 3x3 convolution reflect-pads.
  ``conv0`` and the inverse of the ImageNet normalisation are both affine per pixel, so they fold
  exactly into ``conv1_1``'s weights and bias (reflection padding commutes with a per-pixel map;
  zero padding would not, hence ``padding_mode="reflect"``); see ``_fold_input_convention``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..settings import VGG19_LAYERS
from .weights import (
    VGG19,
    VGG19_DISTILLED,
    WeightsError,
    WeightsFile,
    file_sha256,
    load_torch_state_dict,
    locate,
)

# ImageNet statistics the torchvision weights were trained with (RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Network:
    """A VGG-19-shaped feature network: channels per conv ("M" for pooling), padding, weights."""

    name: str
    config: tuple
    padding_mode: str
    weights: WeightsFile

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Its layers' names: a prefix of VGG-19's (each network here has VGG-19's layer order,
        only narrower or shorter), a conv and its ReLU per number in ``config``, a pool per "M"."""
        return VGG19_LAYERS[: sum(1 if item == "M" else 2 for item in self.config)]


VGG19_NET = Network(
    "vgg19",
    (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ),
    "zeros",
    VGG19,
)
VGG19_DISTILLED_NET = Network(
    "vgg19-distilled",
    (16, 16, "M", 32, 32, "M", 64, 64, 64, 64, "M", 128, 128, 128, 128, "M", 128),
    "reflect",
    VGG19_DISTILLED,
)
NETWORKS = {net.name: net for net in (VGG19_NET, VGG19_DISTILLED_NET)}
LAYER_NAMES = VGG19_LAYERS


def network(name: str) -> Network:
    try:
        return NETWORKS[name]
    except KeyError:
        raise ValueError(
            f"network={name!r} is not supported; choose one of {', '.join(NETWORKS)}"
        ) from None


def build_features(net: Network = VGG19_NET, pooling: str = "avg") -> nn.Sequential:
    """An uninitialised feature network in torchvision's ``features`` layout (no classifier,
    which alone would allocate 480 MB for VGG-19)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in net.config:
        if item == "M":
            layers.append(nn.AvgPool2d(2, 2) if pooling == "avg" else nn.MaxPool2d(2, 2))
        else:
            layers += [
                nn.Conv2d(channels, item, 3, padding=1, padding_mode=net.padding_mode),
                nn.ReLU(inplace=False),
            ]
            channels = item
    return nn.Sequential(*layers)


def random_vgg19(seed: int = 0) -> nn.Sequential:
    """VGG-19 features with seeded random (Kaiming) weights: for tests and benchmarks on machines
    without the ImageNet file. Every code path runs; only the pretrained numbers differ."""
    generator = torch.Generator().manual_seed(seed)
    features = build_features(VGG19_NET)
    for module in features:
        if isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * 9
            with torch.no_grad():
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
                )
                module.bias.zero_()
    return features


class VGGFeatures(nn.Module):
    """Returns the activations of the requested layers as a dict, for RGB input in [0, 1]."""

    def __init__(
        self, features: nn.Sequential, layers, pooling: str = "avg", network_name: str = "VGG-19"
    ):
        super().__init__()
        unknown = [name for name in layers if name not in LAYER_NAMES]
        if unknown:
            raise ValueError(
                f"unknown VGG-19 layer(s) {unknown}; valid names are {', '.join(LAYER_NAMES)}"
            )
        missing = [name for name in layers if LAYER_NAMES.index(name) >= len(features)]
        if missing:
            raise ValueError(
                f"layer(s) {', '.join(missing)} do not exist in {network_name}: it ends at "
                f"{LAYER_NAMES[len(features) - 1]}; choose layers up to that one (e.g. the default "
                "content conv4_2 and style conv1_1 ... conv5_1)"
            )
        self.layers = tuple(dict.fromkeys(layers))
        depth = max(LAYER_NAMES.index(name) for name in self.layers) + 1
        modules = []
        for index in range(depth):
            module = features[index]
            if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
                module = nn.AvgPool2d(2, 2) if pooling == "avg" else nn.MaxPool2d(2, 2)
            elif isinstance(module, nn.ReLU):
                module = nn.ReLU(inplace=False)  # pre-activation outputs may be requested too
            modules.append(module)
        self.body = nn.Sequential(*modules)
        self.network_name = network_name
        # reflection padding needs 2 pixels in every map: the input must be 2 * 2^pools wide
        pools = [isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in modules]
        reflecting = [
            i
            for i, m in enumerate(modules)
            if isinstance(m, nn.Conv2d) and m.padding_mode == "reflect"
        ]
        self.min_side = 2 * 2 ** sum(pools[: reflecting[-1]]) if reflecting else 1
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        if min(image.shape[-2:]) < self.min_side:
            raise ValueError(
                f"an image of {tuple(image.shape[-2:])} px is too small for {self.network_name}'s "
                f"layers {', '.join(self.layers)}: it needs at least {self.min_side} px on each "
                "side; raise size (and min_size) or use larger images"
            )
        wanted = set(self.layers)
        out = {}
        x = (image - self.mean) / self.std
        for name, module in zip(LAYER_NAMES, self.body):
            x = module(x)
            if name in wanted:
                out[name] = x
        return out


def _fold_input_convention(
    conv0_weight: torch.Tensor,
    conv0_bias: torch.Tensor,
    conv11_weight: torch.Tensor,
    conv11_bias: torch.Tensor,
):
    """conv1_1 weights that take ImageNet-normalised input, from the distilled network's conv0
    (a 1x1 convolution on RGB in [0, 1]) followed by its conv1_1.

    With x = std·n + mean (n: the normalised input) conv0 gives y = A n + c, A = W0·diag(std),
    c = W0 mean + b0; then conv1_1(y) = (W1 ∘ A) n + (b1 + Σ W1 c). Computed in float64.
    """
    w0 = conv0_weight.double()[:, :, 0, 0]  # (3 out, 3 in)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    a = w0 * std  # scales input channel k by std_k
    c = w0 @ mean + conv0_bias.double()
    w1 = conv11_weight.double()
    weight = torch.einsum("ocuv,ck->okuv", w1, a)
    bias = conv11_bias.double() + torch.einsum("ocuv,c->o", w1, c)
    return weight.to(conv11_weight.dtype), bias.to(conv11_bias.dtype)


def _distilled_features(state: dict, source) -> nn.Sequential:
    """The distilled encoder's state dict (``conv0``, ``conv11`` ... ``conv51``; the ``*_aux``
    distillation heads are dropped) as a torchvision-layout ``Sequential``."""
    state = state.get("model", state)
    features = build_features(VGG19_DISTILLED_NET)
    convs = [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]
    names = [name for name in VGG19_DISTILLED_NET.layer_names if name.startswith("conv")]
    mapped = {}
    try:
        for index, name in zip(convs, names):
            key = "conv" + name[4:].replace("_", "")  # conv1_1 -> conv11
            mapped[f"{index}.weight"] = state[f"{key}.weight"]
            mapped[f"{index}.bias"] = state[f"{key}.bias"]
        mapped["0.weight"], mapped["0.bias"] = _fold_input_convention(
            state["conv0.weight"], state["conv0.bias"], mapped["0.weight"], mapped["0.bias"]
        )
        features.load_state_dict(mapped)
    except (KeyError, RuntimeError) as exc:
        raise WeightsError(
            f"{source} is not the distilled VGG-19 state dict (keys conv0, conv11 "
            f"... conv51 with widths 16 ... 128): {exc}"
        ) from exc
    return features


def _vgg19_features(state: dict, source) -> nn.Sequential:
    features = build_features(VGG19_NET)
    if any(key.startswith("features.") for key in state):
        state = {
            key[len("features.") :]: value
            for key, value in state.items()
            if key.startswith("features.")
        }
    try:
        features.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(
            f"{source} is not a VGG-19 state dict (torchvision layout 'features.N.weight'): {exc}"
        ) from exc
    return features


_READERS = {"vgg19": _vgg19_features, "vgg19-distilled": _distilled_features}


def _check_layout(features: nn.Module, net: Network) -> None:
    """A module passed as weights must follow the network's layer order (conv, ReLU, pool)."""
    expected = [
        nn.Conv2d
        if n.startswith("conv")
        else nn.ReLU
        if n.startswith("relu")
        else (nn.MaxPool2d, nn.AvgPool2d)
        for n in net.layer_names
    ]
    if (
        not isinstance(features, nn.Sequential)
        or len(features) < len(expected)
        or not all(isinstance(m, kind) for m, kind in zip(features, expected))
    ):
        raise WeightsError(
            f"vgg_weights module for network={net.name!r} must be a Sequential in torchvision's "
            f"vgg19().features layout ({len(expected)} layers: conv, ReLU, pooling, ...), "
            "or a torchvision VGG-19 for network='vgg19'"
        )


def load_features(
    network_name: str = "vgg19", weights=None, *, directory=None, progress: bool = True
) -> tuple[nn.Sequential, str]:
    """The named network's ``features`` and a short identity of where the weights came from.

    ``weights`` may be a torch module (a torchvision VGG or its ``.features``; any module in that
    layout for the distilled network), a weights file, or None for the lookup order of
    ``engine.weights`` (``directory`` searched first).
    """
    net = network(network_name)
    if isinstance(weights, nn.Module):
        features = getattr(weights, "features", weights)
        _check_layout(features, net)
        return features, f"module:{type(weights).__name__}"
    path = locate(net.weights, weights, directory=directory, progress=progress)
    features = _READERS[net.name](load_torch_state_dict(path), path)
    features.weights_sha256 = {path.name: file_sha256(path)}  # for the results' provenance
    return features, f"file:{path.name}"
