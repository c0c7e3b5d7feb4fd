"""One settings object for the API, the CLI and the widget, so the three cannot drift apart.

This module imports neither torch nor napari: the CLI builds its parser from these fields and
the widget its controls, both before any heavy import.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any

METHODS = ("optimize", "predict")
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "predict")
POOLINGS = ("avg", "max")
NETWORKS = ("vgg19", "vgg19-distilled")
PRECISIONS = ("auto", "float32", "bfloat16")
OUTPUT_RANGES = ("unit", "content")

#: VGG-19's layers in the order of torchvision's ``vgg19().features``: ``conv{block}_{n}`` then
#: ``relu{block}_{n}`` for 2, 2, 4, 4, 4 convolutions per block, each block ending in
#: ``pool{block}``. The one list of layer names: ``engine.vgg`` uses it too (the distilled
#: network's are a prefix of it), and settings check layer names here, without torch.
VGG19_LAYERS = tuple(
    name for block, convs in enumerate((2, 2, 4, 4, 4), start=1)
    for name in (*(f"{kind}{block}_{n}" for n in range(1, convs + 1) for kind in ("conv", "relu")),
                 f"pool{block}"))

#: Style layers of Gatys et al. 2015, each weighted 1/5 as in the paper.
DEFAULT_STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
DEFAULT_CONTENT_LAYERS = ("conv4_2",)


def _opt(default, help: str, *, choices=None, min=None, max=None, cli: bool = True):
    """A dataclass field whose metadata feeds the CLI parser and the widget controls."""
    meta = {"help": help, "choices": choices, "min": min, "max": max, "cli": cli}
    if isinstance(default, (list, dict, tuple)) or callable(default):
        factory = default if callable(default) else (lambda d=default: d)
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Settings:
    """Every parameter of a style-transfer run.

    Loss weights are relative: each content and style term is a squared error in units of its
    own target's energy (see ``engine.losses``), so the same weights give a similar balance at
    256 px and at 2048 px, and with either feature network.
    """

    method: str = _opt("optimize", "optimize (Gatys et al. 2015) or predict (Ghiasi et al. 2017)",
                       choices=METHODS)
    steps: int = _opt(300, "optimisation steps (one forward+backward pass each)", min=1, max=100000)
    size: int = _opt(512, "working resolution: the content's longer side in pixels", min=16, max=16384)
    style_scale: float = _opt(1.0, "style image size relative to the working size", min=0.05, max=8.0)
    device: str = _opt("auto", "auto, cpu, cuda, cuda:N or mps")
    seed: int = _opt(0, "random seed; the same seed gives the same result on the CPU", min=0,
                     max=2**31 - 1)
    content_weight: float = _opt(1.0, "weight of the content loss (relative squared error of the "
                                 "content features)", min=0.0, max=1e6)
    style_weight: float = _opt(30.0, "weight of the style loss (relative squared error of the "
                               "Gram matrices, averaged over the style layers)", min=0.0, max=1e6)
    tv_weight: float = _opt(0.0, "weight of the total-variation (smoothness) loss, relative to the "
                            "content's own (1: as smooth as the content)", min=0.0, max=1e6)
    content_layers: tuple = _opt(DEFAULT_CONTENT_LAYERS, "VGG-19 layers for the content loss", cli=False)
    style_layers: tuple = _opt(DEFAULT_STYLE_LAYERS, "VGG-19 layers for the style loss", cli=False)
    style_layer_weights: tuple | None = _opt(
        None, "per-style-layer weights (default: equal, normalised to sum 1)", cli=False)
    optimizer: str = _opt("lbfgs", "lbfgs or adam", choices=OPTIMIZERS)
    learning_rate: float = _opt(0.02, "Adam step size (pixels are in 0..1)", min=1e-5, max=1.0)
    init: Any = _opt("content", "starting image: content, noise, predict, or an array (API only)",
                     choices=INITS)
    pooling: str = _opt("avg", "VGG pooling: avg (the paper's choice) or max", choices=POOLINGS)
    keep_colors: bool = _opt(False, "keep the content's colours, transfer only the style's texture")
    precision: str = _opt("auto", "arithmetic of the VGG passes: bfloat16 is nearly 2x faster on "
                          "CPUs with native bf16 (AVX512-BF16, AMX); auto uses it there and "
                          "float32 elsewhere", choices=PRECISIONS)
    coarse_to_fine: bool = _opt(True, "optimise from small to the working size (much faster)")
    min_size: int = _opt(128, "smallest scale of coarse-to-fine optimisation", min=16, max=16384)
    emit_every: int = _opt(25, "emit an image every N steps (and always at the end)", min=1,
                           max=100000)
    output_range: str = _opt("unit", "result values: unit (float32 in 0..1) or content (the "
                             "content's own intensity range and dtype, e.g. uint16 in 300..3352)",
                             choices=OUTPUT_RANGES)
    content_window: tuple | None = _opt(
        None, "intensity window (low, high) mapped to 0..1 for the content", cli=False)
    style_window: tuple | None = _opt(
        None, "intensity window (low, high) mapped to 0..1 for the style", cli=False)
    network: str = _opt("vgg19", "optimize: feature network; vgg19 (ImageNet, 548 MB download) or "
                        "vgg19-distilled (3.9 MB, about 1/16 of the compute: for CPUs and quick "
                        "looks)", choices=NETWORKS)
    vgg_weights: Any = _opt(None, "weights of the feature network: a .pth file or a torch module "
                            "(default: $NAPARI_NST_WEIGHTS_DIR, then the cache, then a download)")
    weights_dir: str | None = _opt(None, "a folder searched first for weights files by their "
                                   "names (like $NAPARI_NST_WEIGHTS_DIR); empty: the default lookup")
    style_strength: float = _opt(1.0, "0 keeps the content as it is, 1 applies the style fully "
                                 "(optimize: moves the style targets from the content's own "
                                 "statistics to the style's; predict: the same with style "
                                 "embeddings)", min=0.0, max=1.0)
    style_blend: tuple | None = _opt(None, "predict: weights of several style images", cli=False)
    style_crops: int = _opt(1, "predict: average the style over this many crops", min=1, max=64)
    tile_size: int = _opt(1024, "predict: tile side for large images", min=64, max=16384)
    predictor_weights: Any = _opt(None, "predict: style predictor .tflite file", cli=False)
    transformer_weights: Any = _opt(None, "predict: transformer .tflite file", cli=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field and coerce the unambiguous (``"10"`` to 10, 2 to 2.0, a list of layer
        names to a tuple); raise ValueError naming the setting, what it got and what is allowed."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, _checked(f, getattr(self, f.name)))
        if self.style_layer_weights is not None and len(self.style_layer_weights) != len(self.style_layers):
            raise ValueError("style_layer_weights needs one weight per entry of style_layers "
                             f"({len(self.style_layers)}), got {len(self.style_layer_weights)}")
        if not self.style_layers and not self.content_layers:
            raise ValueError("at least one content or style layer is needed")

    def replace(self, **changes) -> Settings:
        """A copy with some fields changed; unknown names are a clear error."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}; "
                            f"see napari_nst.Settings for the names")
        return dataclasses.replace(self, **changes)

    def to_metadata(self) -> dict:
        """Plain-data view of the settings for layer metadata and logs."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or isinstance(value, (str, int, float, bool)):
                out[f.name] = value
            elif isinstance(value, (tuple, list)) and all(
                    isinstance(v, (str, int, float)) for v in value):
                out[f.name] = list(value)
            else:
                out[f.name] = f"<{type(value).__name__}>"
        return out


# --- validation: one check per kind of field ----------------------------------------------------

def _got(value) -> str:
    text = repr(value)
    return f"got {text if len(text) <= 60 else text[:57] + '...'} ({type(value).__name__})"


_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")


def _integer(name: str, value) -> int:
    """An int; an integral string ("10") is unambiguous, a float (2.5, 10.0) or a bool is not."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and _INTEGER.match(value):
        return int(value)
    raise ValueError(f"{name} must be an integer, {_got(value)}")


def _number(name: str, value) -> float:
    """A finite float from an int, a float or a numeric string; NaN and infinity are rejected
    (NaN passes every range check and would silently give an all-NaN image)."""
    number = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        raise ValueError(f"{name} must be a number, {_got(value)}")
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number}")
    return number


def _boolean(name: str, value) -> bool:
    if not isinstance(value, bool):  # "no" and 1 are not taken as True
        raise ValueError(f"{name} must be True or False, {_got(value)}")
    return value


def _choice(name: str, value, choices) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be one of {', '.join(choices)}, {_got(value)}")
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(choices)}")
    return value


def _init(name: str, value):
    if isinstance(value, str):
        return _choice(name, value, INITS)
    if isinstance(value, list) or hasattr(value, "__array__") or hasattr(value, "shape"):
        return value  # an image: checked with the inputs (engine.images)
    raise ValueError(f"{name} must be one of {', '.join(INITS)} or an image array, {_got(value)}")


def _device(name: str, value) -> str:
    """A device name; its syntax and availability are checked where torch is (engine.devices)."""
    torch = sys.modules.get("torch")  # a torch.device can only exist once torch is imported
    if torch is not None and isinstance(value, torch.device):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string (auto, cpu, cuda, cuda:N or mps), {_got(value)}")
    return value


def _layers(name: str, value) -> tuple:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(layer, str) for layer in value):
        raise ValueError(f"{name} must be a tuple of layer names such as ('conv1_1', 'conv2_1'), "
                         f"{_got(value)}")
    unknown = [layer for layer in value if layer not in VGG19_LAYERS]
    if unknown:
        raise ValueError(f"{name}: unknown VGG-19 layer(s) {', '.join(map(repr, unknown))}; "
                         f"valid names are {', '.join(VGG19_LAYERS)}")
    return tuple(value)


def _numbers(name: str, value) -> tuple | None:
    if value is None:
        return None
    iterable = hasattr(value, "__iter__") and not isinstance(value, (str, bytes))
    items = list(value) if iterable else []
    if not iterable or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                               for v in items):
        raise ValueError(f"{name} must be a sequence of numbers or None, {_got(value)}")
    floats = tuple(float(v) for v in items)
    if not all(math.isfinite(v) for v in floats):
        raise ValueError(f"{name} must hold finite numbers, got {floats}")
    return floats


def _window(name: str, value):
    """(low, high) with high > low, both finite; kept as given (arrays too)."""
    if value is None:
        return None
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise ValueError(f"{name} must be (low, high) with high > low, both finite, got {value!r}")
    return value


def _folder(name: str, value) -> str | None:
    """A folder path as a string; empty means none (the default lookup). Whether it exists is
    checked when weights are looked up (engine.weights)."""
    if value is None or isinstance(value, (str, os.PathLike)):
        value = None if value is None else os.fspath(value)
        return value if value and value.strip() else None
    raise ValueError(f"{name} must be a folder path or None, {_got(value)}")


def _weights_file(kind: str, module: bool = False):
    """Check for a weights argument: a file path (not a folder), None, or -- with ``module`` -- a
    torch module, recognised by its ``state_dict`` without importing torch."""
    accepts = f"a {kind} file, a torch module or None" if module else f"a {kind} file or None"

    def check(name: str, value):
        if value is None or (module and hasattr(value, "state_dict")):
            return value
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"{name} must be {accepts}, {_got(value)}")
        if os.path.isdir(os.path.expanduser(value)):
            raise ValueError(
                f"{name}={os.fspath(value)!r} is a folder; pass {accepts} (to use the weights in "
                "a folder under their published file names, set weights_dir to it instead)")
        return value

    return check


#: Checks of the fields that are not a plain int, float, bool or string with choices.
_FIELD_CHECKS = {
    "init": _init,
    "device": _device,
    "content_layers": _layers,
    "style_layers": _layers,
    "style_layer_weights": _numbers,
    "style_blend": _numbers,
    "content_window": _window,
    "style_window": _window,
    "weights_dir": _folder,
    "vgg_weights": _weights_file(".pth", module=True),
    "predictor_weights": _weights_file(".tflite"),
    "transformer_weights": _weights_file(".tflite"),
}


def _checked(f: dataclasses.Field, value):
    """``value`` checked (and coerced) for field ``f``: by name, else by its default's type."""
    meta = f.metadata
    if f.name in _FIELD_CHECKS:
        return _FIELD_CHECKS[f.name](f.name, value)
    kind = type(f.default)
    if kind is bool:
        return _boolean(f.name, value)
    if kind is str and meta.get("choices"):
        return _choice(f.name, value, meta["choices"])
    if kind is int:
        value = _integer(f.name, value)
    elif kind is float:
        value = _number(f.name, value)
    else:
        raise TypeError(f"Settings.{f.name} has no check; add one to _FIELD_CHECKS")
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{f.name}={value} is out of range; use {lo} .. {hi}")
    return value


def _describe_fields(cls) -> str:
    """Every field with its default and help, for ``help(Settings)``: built from the field
    metadata, so it cannot drift from what the CLI and the widget show."""
    lines = ["", "    Fields, as ``name (default): meaning``:", ""]
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        text = f"{f.name} ({default!r}): {f.metadata['help']}"
        if f.metadata.get("min") is not None:
            text += f"; from {f.metadata['min']} to {f.metadata['max']}"
        lines += textwrap.wrap(text, 100, initial_indent="    ", subsequent_indent="        ",
                               break_on_hyphens=False)
    return "\n".join(lines) + "\n"


if Settings.__doc__ is not None:  # None under python -OO
    Settings.__doc__ = Settings.__doc__.rstrip() + "\n" + _describe_fields(Settings)


def make_settings(settings: Settings | None = None, **overrides) -> Settings:
    """Settings from an optional base object plus keyword overrides."""
    base = settings if settings is not None else Settings()
    return base.replace(**overrides) if overrides else base
