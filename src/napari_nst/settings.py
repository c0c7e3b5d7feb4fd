"""One settings object for the API, the CLI and the widget, so the three cannot drift apart.

Each field's metadata says what the front ends need to know of it: which methods it applies to,
the widget's panel that shows it, its limits, and the magicgui options its control needs beyond
what its type decides. Choices are ``Literal`` annotations. The CLI builds its options and the
widget its controls from these, and the step count of a run (``Settings.total_steps``) follows
from them too.

This module imports neither torch nor napari: the CLI builds its parser from these fields and
the widget its controls, both before any heavy import.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import re
import sys
import textwrap
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

from .engine.methods import NAMES as _METHOD_NAMES  # the registry's names (no torch import)

Method = Literal[_METHOD_NAMES]
Optimizer = Literal["lbfgs", "adam"]
Init = Literal["content", "noise", "predict", "universal"]
Pooling = Literal["avg", "max"]
Network = Literal["vgg19", "vgg19-distilled"]
Precision = Literal["auto", "float32", "bfloat16"]
OutputRange = Literal["unit", "content"]

METHODS = get_args(Method)
OPTIMIZERS = get_args(Optimizer)
INITS = get_args(Init)
DEFAULT_INIT = "predict"
POOLINGS = get_args(Pooling)
NETWORKS = get_args(Network)
PRECISIONS = get_args(Precision)
OUTPUT_RANGES = get_args(OutputRange)
#: The widget's panels, in order; a field with ``panel=None`` is not in the widget.
PANELS = ("basic", "advanced")

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

OPTIMIZE, PREDICT, UNIVERSAL = ("optimize",), ("predict",), ("universal",)
#: The levels of universal style transfer: relu5_1 (coarse) ... relu1_1 (fine).
UNIVERSAL_LEVELS = (5, 4, 3, 2, 1)


def _opt(default, help: str, *, methods: tuple = METHODS, panel: str | None = None,
         min=None, max=None, widget: dict | None = None, cli: bool | dict = True):
    """A dataclass field and what the front ends need to know of it.

    ``methods``: the methods whose runs read the setting (the widget hides it under the others;
    the CLI and ``help(Settings)`` say "optimize only"). ``panel``: "basic" or "advanced", the
    widget's panel that shows it; None: not in the widget. ``min``, ``max``: the allowed range,
    checked here and the limits of the widget's control. ``widget``: magicgui options the type
    does not decide (``widget_type``, ``step``, ``label``, ``mode``). ``cli``: False: no CLI
    option; a dict: argparse options the type does not decide (``metavar``).
    """
    if panel not in (None, *PANELS) or not set(methods) <= set(METHODS):
        raise ValueError(f"panel {panel!r} or methods {methods!r} unknown")  # a typo here
    meta = {"help": help, "methods": tuple(methods), "panel": panel, "min": min, "max": max,
            "widget": dict(widget or {}), "cli": {} if cli is True else (cli or None)}
    if isinstance(default, (list, dict, tuple)) or callable(default):
        factory = default if callable(default) else (lambda d=default: d)
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(kw_only=True)
class Settings:
    """Every parameter of a style-transfer run.

    Loss weights are relative: each content and style term is a squared error in units of its
    own target's energy (see ``engine.losses``), so the same weights give a similar balance at
    256 px and at 2048 px, and with either feature network.
    """

    # the widget's basic panel, in its order
    method: Method = _opt("optimize", "optimize (Gatys et al. 2015: the most control, seconds "
                          "to minutes), predict (Ghiasi et al. 2017: one pass, faithful to the "
                          "content) or universal (Li et al. 2017: one pass per level, the "
                          "strongest style)", panel="basic")
    network: Network = _opt("vgg19", "feature network: vgg19 (ImageNet, 548 MB download) or "
                            "vgg19-distilled (3.9 MB, about 1/16 of the compute: for CPUs and "
                            "quick looks)", methods=OPTIMIZE, panel="basic")
    device: str = _opt("auto", "auto, cpu, cuda, cuda:N or mps", panel="basic",
                       widget={"widget_type": "ComboBox"})  # the widget offers what is present
    steps: int = _opt(20, "optimisation steps (one forward+backward pass each)", methods=OPTIMIZE,
                      panel="basic", min=1, max=100000)
    size: int = _opt(512, "result resolution: the content's longer side in pixels", panel="basic",
                     min=16, max=16384)
    style_strength: float = _opt(1.0, "0 keeps the content as it is, 1 applies the style fully "
                                 "(optimize: moves the style targets from the content's own "
                                 "statistics to the style's; predict: the same with style "
                                 "embeddings; universal: the transform's alpha blend of the "
                                 "features)", panel="basic", min=0.0, max=1.0,
                                 widget={"widget_type": "FloatSlider", "step": 0.05})
    keep_colors: bool = _opt(False, "keep the content's colours, transfer only the style's "
                             "texture", panel="basic")
    seed: int = _opt(0, "random seed; the same seed gives the same result on the CPU",
                     methods=OPTIMIZE, panel="basic", min=0, max=2**31 - 1)
    # the advanced panel, in its order
    content_weight: float = _opt(1.0, "weight of the content loss (relative squared error of the "
                                 "content features)", methods=OPTIMIZE, panel="advanced", min=0.0,
                                 max=1e6, widget={"step": 0.1})
    style_weight: float = _opt(30.0, "weight of the style loss (relative squared error of the "
                               "Gram matrices, averaged over the style layers)", methods=OPTIMIZE,
                               panel="advanced", min=0.0, max=1e6, widget={"step": 0.1})
    tv_weight: float = _opt(0.0, "weight of the total-variation (smoothness) loss, relative to the "
                            "content's own (1: as smooth as the content)", methods=OPTIMIZE,
                            panel="advanced", min=0.0, max=1e6, widget={"step": 0.001})
    init: Init = _opt(DEFAULT_INIT, "starting image: predict or universal (that method's result, "
                      "mixed with the content by style_strength; predict, the default, lands "
                      "near the goal in one pass, so a few steps finish it), content or noise "
                      "(the paper's starts: give them more steps); an array: init_image (API "
                      "only)", methods=OPTIMIZE, panel="advanced")
    optimizer: Optimizer = _opt("lbfgs", "lbfgs or adam", methods=OPTIMIZE, panel="advanced")
    learning_rate: float = _opt(0.02, "Adam step size (pixels are in 0..1)", methods=OPTIMIZE,
                                panel="advanced", min=1e-5, max=1.0, widget={"step": 0.001})
    style_scale: float = _opt(1.0, "style image size relative to the working size",
                              methods=OPTIMIZE + UNIVERSAL, panel="advanced", min=0.05, max=8.0,
                              widget={"step": 0.1})
    coarse_to_fine: bool = _opt(False, "optimise from min_size up to the working size: for "
                                "long runs from the content or noise (much faster there); a "
                                "predict start is finished at full size",
                                methods=OPTIMIZE, panel="advanced")
    min_working_size: int = _opt(0, "optimize works at this longer side at least and shrinks "
                                 "smaller results to size (0: off). From the content or noise, "
                                 "below 512 px VGG's content layer holds too little of the "
                                 "image and the style overruns it: 512 keeps their look at "
                                 "small sizes, at 512 px's cost",
                                 methods=OPTIMIZE, panel="advanced", min=0, max=16384)
    precision: Precision = _opt("auto", "arithmetic of the VGG passes: bfloat16 is nearly 2x "
                                "faster on CPUs with native bf16 (AVX512-BF16, AMX); auto uses it "
                                "there and float32 elsewhere", methods=OPTIMIZE, panel="advanced")
    emit_every: int = _opt(5, "emit an image every N steps (and always at the end)",
                           methods=OPTIMIZE, panel="advanced", min=1, max=100000,
                           cli=False)  # the CLI's --save-every sets it
    style_crops: int = _opt(1, "average the style over this many crops", methods=PREDICT,
                            panel="advanced", min=1, max=64)
    weights_dir: str | None = _opt(None, "a folder searched first for weights files by their "
                                   "names (like $NAPARI_NST_WEIGHTS_DIR); empty: the default "
                                   "lookup", panel="advanced",
                                   widget={"widget_type": "FileEdit", "mode": "d",
                                           "label": "weights folder"})
    output_range: OutputRange = _opt("unit", "result values: unit (float32 in 0..1) or content "
                                     "(the content's own intensity range and dtype, e.g. uint16 "
                                     "in 300..3352)", panel="advanced")
    # not in the widget (``settings_overrides`` passes them)
    init_image: Any = _opt(None, "a start image (an array as for content), API only; replaces "
                           "the default start (init becomes content)", methods=OPTIMIZE, cli=False)
    regions: Any = _opt(None, "a label image (a napari Labels layer's data) of the content's "
                        "shape: a style per label (style={label: image}; a single style styles "
                        "every non-zero label); labels without a style keep the content; API "
                        "only (the CLI's --regions reads a file)", cli=False)
    region_edge: float = _opt(2.0, "soft edge between regions: the Gaussian width in pixels of "
                              "the result over which neighbouring regions blend (0: hard)",
                              panel="advanced", min=0.0, max=64.0)
    pooling: Pooling = _opt("avg", "VGG pooling: avg (the paper's choice) or max", methods=OPTIMIZE)
    min_size: int = _opt(128, "smallest scale of coarse-to-fine optimisation", methods=OPTIMIZE,
                         min=16, max=16384)
    tile_size: int = _opt(1024, "tile side for large images", methods=PREDICT, min=64, max=16384)
    levels: tuple = _opt(UNIVERSAL_LEVELS, "the encoder levels the transform runs at, coarse to "
                         "fine (5: relu5_1 ... 1: relu1_1), e.g. 5,4,3,2,1 or 3,2,1 (finer "
                         "textures, more of the content)", methods=UNIVERSAL, panel="advanced",
                         widget={"widget_type": "LineEdit"}, cli={"metavar": "5,4,3,2,1"})
    content_layers: tuple = _opt(DEFAULT_CONTENT_LAYERS, "VGG-19 layers for the content loss",
                                 methods=OPTIMIZE, cli={"metavar": "LAYER,..."})
    style_layers: tuple = _opt(DEFAULT_STYLE_LAYERS, "VGG-19 layers for the style loss",
                               methods=OPTIMIZE, cli={"metavar": "LAYER,..."})
    style_layer_weights: tuple | None = _opt(
        None, "relative weight of each style layer: not negative, a positive sum, one per entry "
        "of style_layers (default: equal; normalised to sum 1)", methods=OPTIMIZE,
        cli={"metavar": "W,..."})
    style_blend: tuple | None = _opt(
        None, "relative weight of each style image when several are given: not negative, a "
        "positive sum, one per style (default: equal; normalised to sum 1)",
        cli={"metavar": "W,..."})
    content_window: tuple | None = _opt(
        None, "intensity window (low, high) mapped to 0..1 for the content (default: 0..255 "
        "for uint8, else the data's min..max)", cli={"metavar": "LOW,HIGH"})
    style_window: tuple | None = _opt(
        None, "intensity window (low, high) mapped to 0..1 for the style (default: as for "
        "the content)", cli={"metavar": "LOW,HIGH"})
    vgg_weights: Any = _opt(None, "weights of the feature network: a .pth file or a torch module "
                            "(default: $NAPARI_NST_WEIGHTS_DIR, then the cache, then a download)",
                            methods=OPTIMIZE, cli={"metavar": "PATH"})
    predictor_weights: Any = _opt(None, "style predictor .tflite file", methods=PREDICT,
                                  cli={"metavar": "PATH"})
    transformer_weights: Any = _opt(None, "transformer .tflite file", methods=PREDICT,
                                    cli={"metavar": "PATH"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field and coerce the unambiguous (``"10"`` to 10, 2 to 2.0, a list of layer
        names to a tuple); raise ValueError naming the setting, what it got and what is allowed."""
        self._move_init_image()
        for f in dataclasses.fields(self):
            setattr(self, f.name, _checked(f, getattr(self, f.name)))
        if self.style_layer_weights is not None:
            _check_count("style_layer_weights", self.style_layer_weights, len(self.style_layers),
                         "entry of style_layers")
        if not self.style_layers and not self.content_layers:
            raise ValueError("at least one content or style layer is needed")
        if self.init_image is not None:
            if self.init not in ("content", DEFAULT_INIT):
                raise ValueError(f"init={self.init!r} and init_image both say where to start; "
                                 "give one: init_image for an image, init for predict, "
                                 "universal, content or noise")
            self.init = "content"  # the start image replaces the default start

    def _move_init_image(self) -> None:
        """``init=<array>`` (before init_image existed) still works, with a DeprecationWarning."""
        if isinstance(self.init, str) or not _is_image(self.init):
            return
        if self.init_image is not None:
            raise ValueError("init and init_image are both images; pass the start image as "
                             "init_image only")
        warnings.warn("init=<array> is deprecated; pass the start image as init_image=... (init "
                      f"takes one of {', '.join(INITS)})", DeprecationWarning,
                      stacklevel=_caller_stacklevel())
        self.init_image, self.init = self.init, "content"

    def total_steps(self) -> int:
        """The steps one run (one content with one style) counts: ``steps`` where the method
        reads it (optimize), else 1 (predict's one result)."""
        return self.steps if applies_to("steps", self.method) else 1

    def working_size(self) -> int:
        """The longer side a run works at: ``size``, or for optimize ``min_working_size`` when
        that is larger (the result is then resized down to ``size``)."""
        if applies_to("min_working_size", self.method):
            return max(self.size, self.min_working_size)
        return self.size

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


# --- what the front ends read from the field metadata ------------------------------------------

@functools.cache
def _annotations() -> dict:
    return get_type_hints(Settings)


def field_annotation(f: dataclasses.Field):
    """The field's type as an object (``Literal[...]``, ``int``, ``str | None``), not a string."""
    return _annotations()[f.name]


def field_default(f: dataclasses.Field):
    """The field's default value (a factory's made anew)."""
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def field_choices(f: dataclasses.Field) -> tuple | None:
    """The choices of a ``Literal`` field, in order; None for any other field."""
    annotation = field_annotation(f)
    return get_args(annotation) if get_origin(annotation) is Literal else None


def applies_to(name: str, method: str) -> bool:
    """Whether a run of ``method`` reads setting ``name``."""
    return method in _FIELDS[name].metadata["methods"]


def methods_note(f: dataclasses.Field) -> str:
    """The note "optimize only" for a field that one method reads, else ""."""
    methods = f.metadata["methods"]
    return f"{' and '.join(methods)} only" if set(methods) != set(METHODS) else ""


# --- relative weights: one rule, for the layer weights and the style blend ----------------------

def normalized_weights(name: str, weights, count: int, item: str) -> list[float]:
    """``weights`` for ``count`` items (each an ``item``) divided by their sum; None: equal.

    The one rule for relative weights: finite numbers, none negative, a positive sum, one per
    item. Settings check all but the count where it is not known yet (the number of style images
    is known when a run starts).
    """
    if weights is None:
        return [1.0 / count] * count if count else []
    weights = _weights(name, weights)
    _check_count(name, weights, count, item)
    total = sum(weights)
    return [w / total for w in weights]


def normalized_blend_weights(weights, count: int) -> list[float]:
    """Blend weights (``style_blend``) for ``count`` style images, normalised to sum 1."""
    return normalized_weights("style_blend", weights, count, "style image")


def _weights(name: str, value) -> tuple | None:
    """Relative weights: finite, not negative, with a positive sum when there are any."""
    weights = _numbers(name, value)
    if weights is None:
        return None
    if any(w < 0 for w in weights):
        raise ValueError(f"{name} must not hold negative weights, got {weights}; the weights are "
                         "relative (0 leaves an entry out)")
    if weights and sum(weights) <= 0:
        raise ValueError(f"{name} must have a positive sum, got {weights}; give at least one "
                         "weight above 0")
    return weights


def _check_count(name: str, weights, count: int, item: str) -> None:
    if len(weights) != count:
        raise ValueError(f"{name} needs one weight per {item} ({count}), got {len(weights)}")


def _caller_stacklevel() -> int:
    """The stack level, for ``warnings.warn`` called by the caller of this function, of the first
    frame outside this package and ``dataclasses``: a warning then names the user's line (and
    Python's default filters show a DeprecationWarning there when it is ``__main__``)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in (
            "napari_nst", "dataclasses"):
        frame, level = frame.f_back, level + 1
    return level


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


def _is_image(value) -> bool:
    return isinstance(value, list) or hasattr(value, "__array__") or hasattr(value, "shape")


def _image(name: str, value):
    """An image array or None, kept as given: checked with the inputs (engine.images)."""
    if value is None or _is_image(value):
        return value
    raise ValueError(f"{name} must be an image array such as the content's, or None, "
                     f"{_got(value)}")


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
def _regions(name: str, value):
    """None, or an integer (or bool) label array; its values and shape are checked where the
    content is known (``engine.regions``)."""
    if value is None:
        return None
    from .engine.regions import check_label_array

    return check_label_array(value, name)


def _levels(name: str, value) -> tuple:
    """Universal style transfer's levels: integers 1..5 (a sequence, or text such as "5,4,3"
    from the CLI and the widget), each once; kept coarse to fine."""
    items = value.replace(" ", "").split(",") if isinstance(value, str) else value
    try:
        levels = [_integer(name, item) for item in items]
    except (TypeError, ValueError):
        levels = None
    if not levels or any(level not in UNIVERSAL_LEVELS for level in levels) \
            or len(set(levels)) != len(levels):
        raise ValueError(f"{name} must be distinct levels from 1 to 5, such as (5, 4, 3, 2, 1) "
                         f"or \"3,2,1\", {_got(value)}")
    return tuple(sorted(levels, reverse=True))




_FIELD_CHECKS = {
    "levels": _levels,
    "init_image": _image,
    "regions": _regions,
    "device": _device,
    "content_layers": _layers,
    "style_layers": _layers,
    "style_layer_weights": _weights,
    "style_blend": _weights,
    "content_window": _window,
    "style_window": _window,
    "weights_dir": _folder,
    "vgg_weights": _weights_file(".pth", module=True),
    "predictor_weights": _weights_file(".tflite"),
    "transformer_weights": _weights_file(".tflite"),
}


def _checked(f: dataclasses.Field, value):
    """``value`` checked (and coerced) for field ``f``: by name, else by its choices (a
    ``Literal``), else by its default's type."""
    meta = f.metadata
    if f.name in _FIELD_CHECKS:
        return _FIELD_CHECKS[f.name](f.name, value)
    choices = field_choices(f)
    if choices:
        return _choice(f.name, value, choices)
    kind = type(f.default)
    if kind is bool:
        return _boolean(f.name, value)
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
        if methods_note(f):
            text += f"; {methods_note(f)}"
        if f.metadata.get("min") is not None:
            text += f"; from {f.metadata['min']} to {f.metadata['max']}"
        lines += textwrap.wrap(text, 100, initial_indent="    ", subsequent_indent="        ",
                               break_on_hyphens=False)
    return "\n".join(lines) + "\n"


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}

if Settings.__doc__ is not None:  # None under python -OO
    Settings.__doc__ = Settings.__doc__.rstrip() + "\n" + _describe_fields(Settings)


def make_settings(settings: Settings | None = None, **overrides) -> Settings:
    """Settings from an optional base object plus keyword overrides."""
    base = settings if settings is not None else Settings()
    return base.replace(**overrides) if overrides else base
