"""VGG-19 feature extractor with named layers, cut after the deepest layer in use.

Layer names follow the paper: ``conv{block}_{n}`` is a convolution's output, ``relu{block}_{n}``
the ReLU after it, ``pool{block}`` the pooling. Parameters are laid out as in torchvision's
``vgg19().features`` so its ImageNet state dict loads by key.
"""

from __future__ import annotations

import torch
from torch import nn

from .weights import VGG19, WeightsError, load_torch_state_dict, locate

# torchvision's configuration "E": channels per conv, "M" for pooling.
_VGG19_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# ImageNet statistics the torchvision weights were trained with (RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> list[str]:
    names, block, conv = [], 1, 1
    for item in _VGG19_CONFIG:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


LAYER_NAMES = tuple(_layer_names())


def build_vgg19_features(pooling: str = "avg") -> nn.Sequential:
    """An uninitialised ``torchvision.models.vgg19().features`` equivalent (no classifier, which
    alone would allocate 480 MB)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG19_CONFIG:
        if item == "M":
            layers.append(nn.AvgPool2d(2, 2) if pooling == "avg" else nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=False)]
            channels = item
    return nn.Sequential(*layers)


def random_vgg19(seed: int = 0) -> nn.Sequential:
    """VGG-19 features with seeded random (Kaiming) weights: for tests and benchmarks on machines
    without the ImageNet file. Every code path runs; only the pretrained numbers differ."""
    generator = torch.Generator().manual_seed(seed)
    features = build_vgg19_features()
    for module in features:
        if isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * 9
            with torch.no_grad():
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator)
                                    * (2.0 / fan_in) ** 0.5)
                module.bias.zero_()
    return features


class VGGFeatures(nn.Module):
    """Returns the activations of the requested layers as a dict, for RGB input in [0, 1]."""

    def __init__(self, features: nn.Sequential, layers, pooling: str = "avg"):
        super().__init__()
        unknown = [name for name in layers if name not in LAYER_NAMES]
        if unknown:
            raise ValueError(f"unknown VGG-19 layer(s) {unknown}; valid names are "
                             f"{', '.join(LAYER_NAMES)}")
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
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        wanted = set(self.layers)
        out = {}
        x = (image - self.mean) / self.std
        for name, module in zip(LAYER_NAMES, self.body):
            x = module(x)
            if name in wanted:
                out[name] = x
        return out


def _features_from_state_dict(state: dict, source) -> nn.Sequential:
    features = build_vgg19_features()
    if any(key.startswith("features.") for key in state):
        state = {key[len("features."):]: value for key, value in state.items()
                 if key.startswith("features.")}
    try:
        features.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"{source} is not a VGG-19 state dict (torchvision layout "
                           f"'features.N.weight'): {exc}") from exc
    return features


def load_vgg19_features(vgg_weights=None, *, progress: bool = True) -> tuple[nn.Sequential, str]:
    """VGG-19 ``features`` and a short identity of where the weights came from.

    ``vgg_weights`` may be a torch module (a torchvision VGG or its ``.features``), a state-dict
    file, or None for the lookup order of ``engine.weights``.
    """
    if isinstance(vgg_weights, nn.Module):
        features = getattr(vgg_weights, "features", vgg_weights)
        if not isinstance(features, nn.Sequential) or len(features) < len(LAYER_NAMES):
            raise WeightsError("vgg_weights module must be a torchvision VGG-19 or its .features "
                               f"(a Sequential of {len(LAYER_NAMES)} layers)")
        return features, f"module:{type(vgg_weights).__name__}"
    path = locate(VGG19, vgg_weights, progress=progress)
    return _features_from_state_dict(load_torch_state_dict(path), path), f"file:{path.name}"
