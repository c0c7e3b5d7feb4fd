"""One settings object for the API, the CLI and the widget, and the one registry of what the
package knows about each setting.

Each field's metadata says everything the package needs to know of it: which methods read it,
what it changes (``stage``: the prepared ``inputs``, the style ``target``, or only the ``run``),
whether a sweep can vary it, its words in a result's name, its check, the widget's panel and
control options, its limits and its CLI option. Choices are ``Literal`` annotations. The CLI
builds its options and the widget its controls from these; a sweep's shared inputs and style
targets (``inputs_key``, ``target_key``), the settings it can vary (``SWEEPABLE``) and result
names (``name_words``) are derived from them in ``napari_nst.registry``: a new setting is one
field.

This module imports neither torch nor napari: the CLI builds its parser from these fields and
the widget its controls, both before any heavy import.
"""

from __future__ import annotations

import dataclasses
import functools
import textwrap
import warnings
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin, get_type_hints

from .engine.methods import NAMES as _METHOD_NAMES  # the registry's names (no torch import)
from .engine.methods import STARTS as _STARTS
from .setting_fields import setting as _opt
from .validation import (
    caller_stacklevel,
    check_boolean,
    check_choice,
    check_count,
    check_device,
    check_folder,
    check_image,
    check_integer,
    check_layer_names,
    check_levels,
    check_number,
    check_regions,
    check_weights,
    check_window,
    is_image,
    weights_file_check,
)

Method = Literal[_METHOD_NAMES]
Optimizer = Literal["lbfgs", "adam"]
#: An optimisation starts from the content, noise, or the result of a registered method.
Init = Literal[("content", "noise", *_STARTS)]
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

#: VGG-19's layers in the order of torchvision's ``vgg19().features``: ``conv{block}_{n}`` then
#: ``relu{block}_{n}`` for 2, 2, 4, 4, 4 convolutions per block, each block ending in
#: ``pool{block}``. The one list of layer names: ``engine.vgg`` uses it too (the distilled
#: network's are a prefix of it), and settings check layer names here, without torch.
VGG19_LAYERS = tuple(
    name
    for block, convs in enumerate((2, 2, 4, 4, 4), start=1)
    for name in (
        *(f"{kind}{block}_{n}" for n in range(1, convs + 1) for kind in ("conv", "relu")),
        f"pool{block}",
    )
)

#: Style layers of Gatys et al. 2015, each weighted 1/5 as in the paper.
DEFAULT_STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
DEFAULT_CONTENT_LAYERS = ("conv4_2",)

OPTIMIZE, PREDICT, UNIVERSAL = ("optimize",), ("predict",), ("universal",)
#: The levels of universal style transfer: relu5_1 (coarse) ... relu1_1 (fine).
UNIVERSAL_LEVELS = (5, 4, 3, 2, 1)


def _layer_names(name: str, value) -> tuple:
    return check_layer_names(name, value, VGG19_LAYERS)


def _levels(name: str, value) -> tuple:
    return check_levels(name, value, UNIVERSAL_LEVELS)


@dataclass(kw_only=True)
class Settings:
    """Every parameter of a style-transfer run.

    Loss weights are relative: each content and style term is a squared error in units of its
    own target's energy (see ``engine.losses``), so the same weights give a similar balance at
    256 px and at 2048 px, and with either feature network.
    """

    # One field a setting, laid out as a table (the formatter would put each option on a line
    # of its own and double its length).
    # fmt: off
    # the widget's basic panel, in its order
    method: Method = _opt("optimize", "optimize (Gatys et al. 2015: the most control, seconds "
                          "to minutes), predict (Ghiasi et al. 2017: one pass, faithful to the "
                          "content) or universal (Li et al. 2017: one pass per level, the "
                          "strongest style)", panel="basic", stage="inputs", words=None)
    network: Network = _opt("vgg19", "feature network: vgg19 (ImageNet, 548 MB download) or "
                            "vgg19-distilled (3.9 MB, about 1/16 of the compute: for CPUs and "
                            "quick looks)", methods=OPTIMIZE, panel="basic", stage="target")
    device: str = _opt("auto", "auto, cpu, cuda, cuda:N or mps", panel="basic",
                       widget={"widget_type": "ComboBox"}, sweep=False, words=None,
                       check=check_device)  # the widget offers what is present
    steps: int = _opt(20, "optimisation steps (one forward+backward pass each)", methods=OPTIMIZE,
                      panel="basic", min=1, max=100000)
    size: int = _opt(512, "result resolution: the content's longer side in pixels", panel="basic",
                     min=16, max=16384, stage="inputs")
    style_strength: float = _opt(1.0, "0 keeps the content as it is, 1 applies the style fully "
                                 "(optimize: moves the style targets from the content's own "
                                 "statistics to the style's; predict: the same with style "
                                 "embeddings; universal: the transform's alpha blend of the "
                                 "features)", panel="basic", min=0.0, max=1.0,
                                 widget={"widget_type": "FloatSlider", "step": 0.05},
                                 words="strength")
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
                      "only)", methods=OPTIMIZE, panel="advanced", stage="inputs")
    optimizer: Optimizer = _opt("lbfgs", "lbfgs or adam", methods=OPTIMIZE, panel="advanced")
    learning_rate: float = _opt(0.02, "Adam step size (pixels are in 0..1)", methods=OPTIMIZE,
                                panel="advanced", min=1e-5, max=1.0, widget={"step": 0.001},
                                named_with={"optimizer": "adam"})
    style_scale: float = _opt(1.0, "style image size relative to the working size",
                              methods=OPTIMIZE + UNIVERSAL, panel="advanced", min=0.05, max=8.0,
                              widget={"step": 0.1}, stage="inputs")
    coarse_to_fine: bool = _opt(False, "optimise from min_size up to the working size: for "
                                "long runs from the content or noise (much faster there); a "
                                "predict start is finished at full size",
                                methods=OPTIMIZE, panel="advanced", stage="target")
    min_working_size: int = _opt(0, "optimize works at this longer side at least and shrinks "
                                 "smaller results to size (0: off). From the content or noise, "
                                 "below 512 px VGG's content layer holds too little of the "
                                 "image and the style overruns it: 512 keeps their look at "
                                 "small sizes, at 512 px's cost",
                                 methods=OPTIMIZE, panel="advanced", min=0, max=16384,
                                 stage="inputs", words="working floor")
    precision: Precision = _opt("auto", "arithmetic of the VGG passes: bfloat16 is nearly 2x "
                                "faster on CPUs with native bf16 (AVX512-BF16, AMX); auto uses it "
                                "there and float32 elsewhere", methods=OPTIMIZE, panel="advanced")
    emit_every: int = _opt(5, "emit an image every N steps (and always at the end)",
                           methods=OPTIMIZE, panel="advanced", min=1, max=100000,
                           cli=False, sweep=False, words=None)  # the CLI's --save-every sets it
    style_crops: int = _opt(1, "average the style over this many crops", methods=PREDICT,
                            panel="advanced", min=1, max=64, stage="target")
    weights_dir: str | None = _opt(None, "a folder searched first for weights files by their "
                                   "names (like $NAPARI_NST_WEIGHTS_DIR); empty: the default "
                                   "lookup", panel="advanced",
                                   widget={"widget_type": "FileEdit", "mode": "d",
                                           "label": "weights folder"},
                                   stage="target", sweep=False, words=None, check=check_folder)
    output_range: OutputRange = _opt("unit", "result values: unit (float32 in 0..1) or content "
                                     "(the content's own intensity range and dtype, e.g. uint16 "
                                     "in 300..3352)", panel="advanced", sweep=False, words=None)
    # not in the widget (``settings_overrides`` passes them)
    init_image: Any = _opt(None, "a start image (an array as for content), API only; replaces "
                           "the default start (init becomes content)", methods=OPTIMIZE, cli=False,
                           stage="inputs", sweep=False, words="start image", check=check_image)
    regions: Any = _opt(None, "a label image (a napari Labels layer's data) of the content's "
                        "shape: a style per label (style={label: image}; a single style styles "
                        "every non-zero label); labels without a style keep the content; API "
                        "only (the CLI's --regions reads a file)", cli=False,
                        stage="inputs", sweep=False, words=None, check=check_regions)
    region_edge: float = _opt(2.0, "soft edge between regions: the Gaussian width in pixels of "
                              "the result over which neighbouring regions blend (0: hard)",
                              panel="advanced", min=0.0, max=64.0, stage="inputs")
    pooling: Pooling = _opt("avg", "VGG pooling: avg (the paper's choice) or max", methods=OPTIMIZE,
                            stage="target")
    min_size: int = _opt(128, "smallest scale of coarse-to-fine optimisation", methods=OPTIMIZE,
                         min=16, max=16384, stage="target", named_with={"coarse_to_fine": True})
    tile_size: int = _opt(1024, "tile side for large images", methods=PREDICT, min=64, max=16384)
    levels: tuple = _opt(UNIVERSAL_LEVELS, "the encoder levels the transform runs at, coarse to "
                         "fine (5: relu5_1 ... 1: relu1_1), e.g. 5,4,3,2,1 or 3,2,1 (finer "
                         "textures, more of the content)", methods=UNIVERSAL, panel="advanced",
                         widget={"widget_type": "LineEdit"}, cli={"metavar": "5,4,3,2,1"},
                         stage="target", check=_levels)
    content_layers: tuple = _opt(DEFAULT_CONTENT_LAYERS, "VGG-19 layers for the content loss",
                                 methods=OPTIMIZE, cli={"metavar": "LAYER,..."}, check=_layer_names)
    style_layers: tuple = _opt(DEFAULT_STYLE_LAYERS, "VGG-19 layers for the style loss",
                               methods=OPTIMIZE, cli={"metavar": "LAYER,..."},
                               stage="target", check=_layer_names)
    style_layer_weights: tuple | None = _opt(
        None, "relative weight of each style layer: not negative, a positive sum, one per entry "
        "of style_layers (default: equal; normalised to sum 1)", methods=OPTIMIZE,
        cli={"metavar": "W,..."}, words="layer weights", check=check_weights)
    style_blend: tuple | None = _opt(
        None, "relative weight of each style image when several are given: not negative, a "
        "positive sum, one per style (default: equal; normalised to sum 1)",
        cli={"metavar": "W,..."}, stage="inputs", check=check_weights)
    content_window: tuple | None = _opt(
        None, "intensity window (low, high) mapped to 0..1 for the content (default: 0..255 "
        "for uint8, else the data's min..max)", cli={"metavar": "LOW,HIGH"},
        stage="inputs", words=None, check=check_window)
    style_window: tuple | None = _opt(
        None, "intensity window (low, high) mapped to 0..1 for the style (default: as for "
        "the content)", cli={"metavar": "LOW,HIGH"}, stage="inputs", words=None, check=check_window)
    vgg_weights: Any = _opt(None, "weights of the feature network: a .pth file or a torch module "
                            "(default: $NAPARI_NST_WEIGHTS_DIR, then the cache, then a download)",
                            methods=OPTIMIZE, cli={"metavar": "PATH"},
                            stage="target", sweep=False, words=None,
                            check=weights_file_check(".pth", module=True))
    predictor_weights: Any = _opt(None, "style predictor .tflite file", methods=PREDICT,
                                  cli={"metavar": "PATH"},
                                  stage="target", sweep=False, words=None,
                                  check=weights_file_check(".tflite"))
    transformer_weights: Any = _opt(None, "transformer .tflite file", methods=PREDICT,
                                    cli={"metavar": "PATH"},
                                    sweep=False, words=None, check=weights_file_check(".tflite"))

    # fmt: on

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field and coerce the unambiguous (``"10"`` to 10, 2 to 2.0, a list of layer
        names to a tuple); raise ValueError naming the setting, what it got and what is allowed."""
        self._move_init_image()
        for f in dataclasses.fields(self):
            setattr(self, f.name, _checked(f, getattr(self, f.name)))
        if self.style_layer_weights is not None:
            check_count(
                "style_layer_weights",
                self.style_layer_weights,
                len(self.style_layers),
                "entry of style_layers",
            )
        if not self.style_layers and not self.content_layers:
            raise ValueError("at least one content or style layer is needed")
        if self.init_image is not None:
            if self.init not in ("content", DEFAULT_INIT):
                raise ValueError(
                    f"init={self.init!r} and init_image both say where to start; "
                    "give one: init_image for an image, init for predict, "
                    "universal, content or noise"
                )
            self.init = "content"  # the start image replaces the default start

    def _move_init_image(self) -> None:
        """``init=<array>`` (before init_image existed) still works, with a DeprecationWarning."""
        if isinstance(self.init, str) or not is_image(self.init):
            return
        if self.init_image is not None:
            raise ValueError(
                "init and init_image are both images; pass the start image as init_image only"
            )
        warnings.warn(
            "init=<array> is deprecated; pass the start image as init_image=... (init "
            f"takes one of {', '.join(INITS)})",
            DeprecationWarning,
            stacklevel=caller_stacklevel(),
        )
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
            raise TypeError(
                f"unknown setting(s): {', '.join(sorted(unknown))}; "
                f"see napari_nst.Settings for the names"
            )
        return dataclasses.replace(self, **changes)

    def to_metadata(self) -> dict:
        """Plain-data view of the settings for layer metadata and logs."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or isinstance(value, (str, int, float, bool)):
                out[f.name] = value
            elif isinstance(value, (tuple, list)) and all(
                isinstance(v, (str, int, float)) for v in value
            ):
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


def _checked(f: dataclasses.Field, value):
    """``value`` checked (and coerced) for field ``f``: by its own check, else by its choices (a
    ``Literal``), else by its default's type and range."""
    meta = f.metadata
    if meta["check"] is not None:
        return meta["check"](f.name, value)
    choices = field_choices(f)
    if choices:
        return check_choice(f.name, value, choices)
    kind = type(f.default)
    if kind is bool:
        return check_boolean(f.name, value)
    if kind is int:
        value = check_integer(f.name, value)
    elif kind is float:
        value = check_number(f.name, value)
    else:
        raise TypeError(f"Settings.{f.name} has no check; give its field a check=")
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
        lines += textwrap.wrap(
            text, 100, initial_indent="    ", subsequent_indent="        ", break_on_hyphens=False
        )
    return "\n".join(lines) + "\n"


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}

if Settings.__doc__ is not None:  # None under python -OO
    Settings.__doc__ = Settings.__doc__.rstrip() + "\n" + _describe_fields(Settings)


def make_settings(settings: Settings | None = None, **overrides) -> Settings:
    """Settings from an optional base object plus keyword overrides."""
    base = settings if settings is not None else Settings()
    return base.replace(**overrides) if overrides else base
