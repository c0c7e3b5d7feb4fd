"""One settings object for the API, the CLI and the widget, so the three cannot drift apart.

This module imports neither torch nor napari: the CLI builds its parser from these fields and
the widget its controls, both before any heavy import.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

METHODS = ("optimize", "predict")
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "predict")
POOLINGS = ("avg", "max")
NETWORKS = ("vgg19", "vgg19-distilled")
PRECISIONS = ("auto", "float32", "bfloat16")
OUTPUT_RANGES = ("unit", "content")

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
        """Raise ValueError naming the setting and what is allowed."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if meta.get("choices") and isinstance(value, str) and value not in meta["choices"]:
                raise ValueError(
                    f"{f.name}={value!r} is not supported; choose one of {', '.join(meta['choices'])}")
            if meta.get("choices") and f.name != "init" and not isinstance(value, str):
                raise ValueError(f"{f.name} must be one of {', '.join(meta['choices'])}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                lo, hi = meta.get("min"), meta.get("max")
                if (lo is not None and value < lo) or (hi is not None and value > hi):
                    raise ValueError(f"{f.name}={value} is out of range; use {lo} .. {hi}")
        for name in ("content_window", "style_window"):
            window = getattr(self, name)
            if window is not None:
                if len(window) != 2 or not float(window[1]) > float(window[0]):
                    raise ValueError(f"{name} must be (low, high) with high > low, got {window!r}")
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


def make_settings(settings: Settings | None = None, **overrides) -> Settings:
    """Settings from an optional base object plus keyword overrides."""
    base = settings if settings is not None else Settings()
    return base.replace(**overrides) if overrides else base
