"""The sweeps the widget and the CLI offer by name, what a sweep will cost, and sweep values
from text: the front ends' side of ``explore``."""

from __future__ import annotations

import dataclasses
import math

from ..settings import DEFAULT_STYLE_LAYERS, Settings, applies_to, field_default, make_settings
from .explore import GROWING_STYLE_LAYERS, cell_grid, sweep_axes
from .methods import NAMES as METHOD_NAMES


def parse_values(name: str, text: str) -> list:
    """Sweep values from text (the CLI and the widget): ``;`` between values, ``,`` inside a
    value of a sequence setting ("conv1_1;conv1_1,conv2_1"); "growing" for the paper's five
    growing style-layer sets. Each value is checked when the sweep builds its cells."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    if name not in fields:
        raise ValueError(f"{name!r} is not a setting; see napari_nst.Settings for the names")
    text = text.strip()
    if name.endswith("_layers") and text == "growing":
        return [tuple(v) for v in GROWING_STYLE_LAYERS]
    default = field_default(fields[name])
    values = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        if isinstance(default, tuple) or name.endswith("_layers"):
            values.append(tuple(v.strip() for v in part.split(",") if v.strip()))
        elif isinstance(default, bool):
            if part.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError(f"{name}: {part!r} is not true or false")
            values.append(part.lower() in ("true", "yes", "1"))
        else:
            values.append(part)
    if not values:
        raise ValueError(f"{name}: no values in {text!r}; separate them with ';', e.g. 0.1;1;10")
    return values


#: The steps of every cell of the paper's figures: 300 L-BFGS steps from the content or noise
#: (benchmarks/paper_figures.py; at 20, coarse-to-fine gives 4 steps a scale: barely styled).
FIGURE_STEPS = 300

#: The widget's and the CLI's presets: (title, rows, cols, settings) with the paper's choices;
#: ``settings["reconstruct"]``: Fig. 1's reconstructions of the content or the style image.
PRESETS = {
    "fig3": (
        "Fig. 3: style layer sets x content/style ratio",
        ("style_layers", list(GROWING_STYLE_LAYERS)),
        ("content_weight", [0.01, 0.1, 1.0, 10.0]),
        # from the content, as the reproduction in docs/ (a predict start would carry
        # predict's look into every cell and hide the layer sets' differences)
        {"method": "optimize", "init": "content", "coarse_to_fine": True, "steps": FIGURE_STEPS},
    ),
    "fig1-content": (
        "Fig. 1: content reconstructions",
        None,
        ("content_layers", [(layer,) for layer in DEFAULT_STYLE_LAYERS]),
        {"reconstruct": "content", "steps": FIGURE_STEPS},
    ),
    "fig1-style": (
        "Fig. 1: style reconstructions",
        None,
        ("style_layers", list(GROWING_STYLE_LAYERS)),
        {"reconstruct": "style", "steps": FIGURE_STEPS},
    ),
    "methods": ("methods side by side", None, ("method", list(METHOD_NAMES)), {}),
}

#: Rough seconds of one optimisation step per megapixel of the working size on a 2-core CPU
#: (BENCHMARKS.md: 0.13-0.15 s a step at 512 px with the distilled VGG-19, 1.44 s with
#: ImageNet VGG-19, bfloat16); a GPU is tens of times faster.
_CPU_STEP_SECONDS_PER_MEGAPIXEL = {"vgg19-distilled": 0.55, "vgg19": 5.5}


def sweep_cost(rows, cols, settings: Settings | None = None, **overrides) -> str:
    """What a sweep will cost, said before it starts: its cells, the steps of each, and for
    optimize cells a rough time on a CPU, e.g. "20 cells x 300 optimisation steps at 256 px
    (6000 steps; about 4 min on a 2-core CPU with vgg19-distilled)"."""
    base = make_settings(settings, **overrides)
    grid = [cell for line in cell_grid(base, sweep_axes(rows, cols)) for cell in line]
    optimised = [cell for cell in grid if applies_to("steps", cell.method)]  # iterating methods
    words = f"{len(grid)} cell{'s' * (len(grid) != 1)}"
    if not optimised:
        return f"{words}, one pass each"
    steps = sorted({cell.steps for cell in optimised})
    each = f"{steps[0]}" if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"
    each += " optimisation steps"
    if len(optimised) < len(grid):
        words += f" ({len(optimised)} optimised)"
    sizes = sorted({cell.working_size() for cell in optimised})
    at = f"{sizes[0]} px" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]} px"
    seconds = sum(
        cell.steps
        * (cell.working_size() ** 2 * 0.75 / 1e6)
        * _CPU_STEP_SECONDS_PER_MEGAPIXEL[cell.network]
        for cell in optimised
    )
    minutes = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
    networks = " and ".join(sorted({cell.network for cell in optimised}))
    total = sum(cell.steps for cell in optimised)
    return (
        f"{words} x {each} at {at} ({total} steps; about {minutes} on a 2-core CPU with {networks})"
    )


def cells_of(rows, cols) -> int:
    return math.prod(len(axis[1]) for axis in (rows, cols) if axis is not None)


__all__ = ["FIGURE_STEPS", "PRESETS", "cells_of", "parse_values", "sweep_cost"]
