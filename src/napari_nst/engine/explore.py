"""Explore: sweeps of settings side by side, as in Gatys et al.'s Figures 1 and 3.

``sweep`` runs one cell per (row value, column value) of one or two settings, one cell after
another, and returns a ``Sweep``: the cells' images in one array (rows, cols, H, W, C) at the
content's working size, with their names, values and labels, and a labelled contact sheet
(``contact_sheet``). ``reconstruct`` makes Fig. 1's reconstructions from white noise: a content
image matched at one layer per cell, or a style image's Gram matrices matched at a growing set of
layers. ``iter_sweep`` is the same run as a generator (per step and per finished cell), for
progress and for stopping between any two steps: the cells done stay in the sweep.

Cells share what does not change between them: the networks (each method's per-process cache),
the prepared inputs and the style target, each computed once for every cell whose settings give
the same key (``registry.inputs_key``, ``registry.target_key``: derived from each setting's
``stage`` in the registry, so a new setting cannot be left out).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..registry import SWEEPABLE, inputs_key
from ..settings import DEFAULT_STYLE_LAYERS, Settings, make_settings

#: A sweep of more cells than this is refused unless ``max_cells`` says otherwise (the widget
#: asks first): each cell is a whole run.
MAX_CELLS = 36
#: How Fig. 1's reconstructions run: white noise optimised (against one layer's features, or the
#: Gram matrices of a set of layers), at full size from the first step, no smoothing.
RECONSTRUCTION = {"method": "optimize", "init": "noise", "coarse_to_fine": False, "tv_weight": 0.0}
#: The growing style-layer sets of the paper's figures: conv1_1; conv1_1, conv2_1; ... all five.
GROWING_STYLE_LAYERS = tuple(DEFAULT_STYLE_LAYERS[:n] for n in range(1, 6))


@dataclass
class Sweep:
    """The cells of a sweep: ``images[r, c]`` is the cell of row value ``row_values[r]`` and
    column value ``col_values[c]`` (float32 in [0, 1], zeros until it is done; ``done[r, c]``
    says which are)."""

    images: np.ndarray
    row_name: str | None
    row_values: list
    col_name: str | None
    col_values: list
    seconds: np.ndarray = field(repr=False, default=None)
    done: np.ndarray = field(repr=False, default=None)
    title: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return self.images.shape[:2]

    def label(self, row: int, col: int) -> str:
        """The cell's label: its row and column settings, e.g. "style_layers=conv1_1..conv3_1,
        content_weight=0.1"."""
        return ", ".join(p for p in (self.row_label(row), self.col_label(col)) if p)

    def short_label(self, row: int, col: int) -> str:
        """The cell's values only, "conv1_1..conv3_1 · 0.1" (a label on a small cell)."""
        parts = [
            describe(name, values[i]).split("=", 1)[1]
            for name, values, i in (
                (self.row_name, self.row_values, row),
                (self.col_name, self.col_values, col),
            )
            if name
        ]
        return " · ".join(parts)

    @property
    def labels(self) -> list[list[str]]:
        return [[self.label(r, c) for c in range(self.shape[1])] for r in range(self.shape[0])]

    def row_label(self, row: int) -> str:
        return describe(self.row_name, self.row_values[row]) if self.row_name else ""

    def col_label(self, col: int) -> str:
        return describe(self.col_name, self.col_values[col]) if self.col_name else ""

    def contact_sheet(self, cell: int | None = None) -> np.ndarray:
        """The cells as one uint8 RGB mosaic with the row labels on the left and the column
        labels on top (``cell``: the longer side of a cell in pixels; default: as computed)."""
        from .contact_sheet import contact_sheet

        return contact_sheet(self, cell)


@dataclass(frozen=True)
class CellDone:
    """One finished cell of a sweep: where it is, how many are done of how many, its seconds."""

    row: int
    col: int
    done: int
    total: int
    seconds: float
    label: str
    image: np.ndarray = field(repr=False)


def describe(name: str, value) -> str:
    """``name=value`` short enough for a label: a layer set as its first and last layer."""
    if isinstance(value, (tuple, list)):
        if name.endswith("_layers") and len(value) > 2:
            text = f"{value[0]}..{value[-1]}"
        else:
            text = "+".join(map(str, value)) if value else "none"
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return f"{name}={text}"


def _axis(name: str, axis) -> tuple[str | None, list]:
    if axis is None:
        return None, [None]
    if not (isinstance(axis, (tuple, list)) and len(axis) == 2 and isinstance(axis[0], str)):
        raise ValueError(
            f"{name}: give (setting name, values), e.g. ('content_weight', "
            f"[0.1, 1, 10]); got {axis!r}"
        )
    setting, values = axis
    fields = {f.name for f in dataclasses.fields(Settings)}
    if setting not in fields:
        raise ValueError(
            f"{name}: {setting!r} is not a setting; see napari_nst.Settings for the "
            "names (e.g. style_layers, content_weight, style_strength, method)"
        )
    if setting not in SWEEPABLE:
        raise ValueError(
            f"{name}: {setting} cannot be swept (every cell shares it); set it for "
            "the whole sweep instead"
        )
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise ValueError(
            f"{name}: the values of {setting} must be a list, e.g. ({setting!r}, "
            f"[{values!r}, ...]) for several cells; got {values!r} alone (for a "
            f"single value, set {setting}={values!r} for the whole sweep)"
        )
    if not values:
        raise ValueError(f"{name}: no values for {setting}; give at least one")
    return setting, list(values)


def sweep_axes(rows, cols) -> tuple[tuple, tuple]:
    """((row setting, values), (column setting, values)) checked: names, values, and not the
    same setting on both axes (a cell would take one value, drop the other, and its label
    would lie). An absent axis is (None, [None])."""
    row, col = _axis("rows", rows), _axis("cols", cols)
    if row[0] is not None and row[0] == col[0]:
        raise ValueError(
            f"rows and cols both sweep {row[0]}: a cell would take one value and "
            "drop the other, and its label would lie; give its values on one axis "
            "only (or another setting on the other)"
        )
    return row, col


def cell_grid(base: Settings, axes) -> list[list[Settings]]:
    """Each cell's settings, [row][column], every value checked now (before any work)."""
    (row_name, row_values), (col_name, col_values) = axes
    return [
        [cell_settings(base, row_name, rv, col_name, cv) for cv in col_values] for rv in row_values
    ]


def cell_settings(base: Settings, row_name, row_value, col_name, col_value) -> Settings:
    changes = {}
    if row_name is not None:
        changes[row_name] = row_value
    if col_name is not None:
        changes[col_name] = col_value
    try:
        return base.replace(**changes)
    except ValueError as exc:
        where = ", ".join(f"{k}={v!r}" for k, v in changes.items())
        raise ValueError(f"sweep cell {where}: {exc}") from None


def iter_sweep(
    content,
    style,
    rows,
    cols=None,
    *,
    settings: Settings | None = None,
    max_cells: int = MAX_CELLS,
    title: str = "",
    **overrides,
):
    """``(sweep, steps)``: the ``Sweep`` (filled in as cells finish) and a generator of every
    step of every cell (``(row, col, StepResult)``) and of each finished cell (``CellDone``).
    Everything is checked here, before any work: the names, the values (each cell's settings
    are built now) and the inputs."""
    from .run import prepare_inputs

    base = make_settings(settings, **overrides).replace(output_range="unit")
    (row_name, row_values), (col_name, col_values) = axes = sweep_axes(rows, cols)
    total = len(row_values) * len(col_values)
    if total > max_cells:
        raise ValueError(
            f"a sweep of {len(row_values)} x {len(col_values)} = {total} cells is "
            f"more than {max_cells}, each a whole run; give fewer values, or "
            f"max_cells={total} to run them all"
        )
    grid = cell_grid(base, axes)
    prepared = {}
    for line in grid:
        for cell in line:
            key = inputs_key(cell)
            if key not in prepared:  # the inputs as each method and size reads them
                prepared[key] = prepare_inputs(content, style, cell)
    first = next(iter(prepared.values()))[0]
    from .images import working_shape

    shape = working_shape(*first.shape[:2], base.size)
    colours = 3 if first.alpha is None else 4
    result = Sweep(
        np.zeros((len(row_values), len(col_values), *shape, colours), np.float32),
        row_name,
        row_values,
        col_name,
        col_values,
        seconds=np.zeros((len(row_values), len(col_values))),
        done=np.zeros((len(row_values), len(col_values)), bool),
        title=title,
    )
    return result, _cells(result, grid, prepared, shape)


def _cells(result: Sweep, grid, prepared: dict, shape) -> Iterator:
    from .devices import resolve_device
    from .resample import resize_array
    from .run import run_prepared

    targets: dict = {}
    total = result.images.shape[0] * result.images.shape[1]
    number = 0
    for r, line in enumerate(grid):
        for c, cell in enumerate(line):
            start = time.perf_counter()
            content, styles, initial = prepared[inputs_key(cell)]
            final = None
            # a cell keeps its final image only: no iterate images before it (each costs a
            # forward pass; emit_every is not swept)
            quiet = cell.replace(emit_every=max(cell.steps, 1))
            for step in run_prepared(
                content, styles, initial, quiet, resolve_device(cell.device), targets
            ):
                yield r, c, step
                if step.done:
                    final = step
            image = np.asarray(final.image, np.float32)
            if image.shape[:2] != tuple(shape):  # a size sweep: every cell at one size
                image = resize_array(image, shape)
            result.images[r, c] = image
            result.seconds[r, c] = time.perf_counter() - start
            result.done[r, c] = True
            number += 1
            yield CellDone(
                r,
                c,
                number,
                total,
                float(result.seconds[r, c]),
                result.label(r, c),
                result.images[r, c],
            )


def sweep(
    content,
    style,
    rows,
    cols=None,
    *,
    settings: Settings | None = None,
    max_cells: int = MAX_CELLS,
    progress=None,
    **overrides,
) -> Sweep:
    """Run ``content`` with ``style`` once per value of ``rows`` (and of ``cols``): each a
    (setting name, values) pair, e.g. ``rows=("style_layers", GROWING_STYLE_LAYERS),
    cols=("content_weight", [0.01, 0.1, 1, 10])``; the other settings as for ``stylize``.
    ``progress(cell_done)`` is called as each cell finishes. Returns the ``Sweep``; a
    KeyboardInterrupt stops it and the cells done are kept (``Sweep.done``)."""
    result, steps = iter_sweep(
        content, style, rows, cols, settings=settings, max_cells=max_cells, **overrides
    )
    try:
        for event in steps:
            if isinstance(event, CellDone) and progress is not None:
                progress(event)
    except KeyboardInterrupt:
        steps.close()
    return result


def reconstruction_sweep(
    image,
    kind: str = "content",
    layers: Sequence[str] | None = None,
    cumulative: bool | None = None,
    **overrides,
):
    """The arguments of Fig. 1's reconstructions as a sweep: (content, style, cols, settings).

    ``kind="content"``: one cell per layer, white noise optimised to match that one layer's
    features of ``image`` (no style term). ``kind="style"``: white noise matched to the Gram
    matrices of ``image`` (no content term) at each layer, or with ``cumulative`` (the default
    for style, as in the paper) at the growing sets ``layers[:1]``, ``layers[:2]``, ..."""
    if kind not in ("content", "style"):
        raise ValueError(f"kind={kind!r}: give 'content' or 'style'")
    if isinstance(layers, str):  # one layer's name, not its letters
        layers = (layers,)
    layers = tuple(layers) if layers is not None else DEFAULT_STYLE_LAYERS
    if not layers:
        raise ValueError("layers: give at least one VGG-19 layer name")
    cumulative = kind == "style" if cumulative is None else bool(cumulative)
    sets = (
        [layers[:n] for n in range(1, len(layers) + 1)]
        if cumulative
        else [(layer,) for layer in layers]
    )
    settings = {**RECONSTRUCTION, **overrides}
    if kind == "content":
        return image, image, ("content_layers", sets), {**settings, "style_layers": ()}
    return image, image, ("style_layers", sets), {**settings, "content_layers": ()}


def reconstruct(
    image,
    kind: str = "content",
    layers: Sequence[str] | None = None,
    cumulative: bool | None = None,
    *,
    progress=None,
    **settings,
) -> Sweep:
    """Gatys et al.'s Fig. 1: reconstructions of ``image`` from white noise (one row; see
    ``reconstruction_sweep``). Settings as for ``stylize`` (``steps``, ``size``, ``network``)."""
    content, style, cols, options = reconstruction_sweep(
        image, kind, layers, cumulative, **settings
    )
    return sweep(
        content, style, None, cols, progress=progress, title=f"{kind} reconstructions", **options
    )


__all__ = [
    "GROWING_STYLE_LAYERS",
    "RECONSTRUCTION",
    "MAX_CELLS",
    "CellDone",
    "Sweep",
    "cell_grid",
    "cell_settings",
    "describe",
    "iter_sweep",
    "reconstruct",
    "reconstruction_sweep",
    "sweep",
    "sweep_axes",
]
