"""Compare: every finished run of the viewer in one table of labelled cells (``_grid.GridView``).

A row per content, the content first, then for each style the style and its runs (cells are
views of the layers' data, not copies; a run folded into a step slider shows its last step). A
row longer than the canvas has room for wraps onto several lines when that makes the cells at
least ``WRAP_GAIN`` larger, every content's row the same way, so that the columns stay aligned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._grid import LABEL_GAP, LABEL_HEIGHT, GridView
from ._result_layers import layer_batch

#: Compare wraps a row onto more lines only when that makes its cells this much larger.
WRAP_GAIN = 1.15


def wrapped_columns(rows: int, columns: int, cell: tuple, canvas: tuple) -> int:
    """How many of a table's ``columns`` to show per line so that its cells (each ``cell`` =
    (height, width) in world units) are largest on a ``canvas`` of (height, width) pixels: a
    table row then takes ``ceil(columns / n)`` lines of the grid. Fewer lines (fewer gaps to
    fill at their ends) win unless more make the cells at least ``WRAP_GAIN`` larger."""

    def zoom(n: int) -> float:
        lines = rows * -(-columns // n)
        return min(canvas[0] / lines / cell[0], canvas[1] / n / cell[1])

    best = max(zoom(n) for n in range(1, columns + 1))
    return max(n for n in range(1, columns + 1) if zoom(n) * WRAP_GAIN >= best)


@dataclass(eq=False)
class Run:
    """A finished run's layer, with what the table needs of it."""

    layer: Any
    content: str  # the content layer's name
    style: str  # the style layer's name (or "1=a, 2=b" with regions)
    label: str  # what differs: "predict · strength 0.3"


def finished_runs(viewer) -> list[Run]:
    """The result of every run in the viewer, in the order of the layer list: a folded run's
    layer, the last iterate of a run whose iterates were kept, a whole stack's layer (its
    slice on screen); not a sweep's cells."""
    runs: dict = {}
    for layer in viewer.layers:
        record = layer.metadata.get("napari_nst", {})
        if "run" not in record:
            continue
        runs[record["run"]] = Run(
            layer,
            record.get("content_layer", record["content"]),
            record["style"],
            record.get("label", record["run"]),
        )
    return list(runs.values())


def _plane(viewer, layer) -> np.ndarray:
    """The 2-D image a cell shows of ``layer``: the last step of a folded run, the slice on
    screen of a stack (a view, not a copy)."""
    data = layer.data
    leading = data.ndim - (3 if layer.rgb else 2)
    if leading <= 0:
        return data
    if "iterates" in layer.metadata.get("napari_nst", {}):
        return data[tuple(n - 1 for n in data.shape[:leading])]
    point = layer.world_to_data(viewer.dims.point[-layer.ndim :])
    return data[
        tuple(
            int(np.clip(round(p), 0, n - 1)) for p, n in zip(point[:leading], data.shape[:leading])
        )
    ]


def _cell_image(viewer, layer, name: str, kind: str, origin=(0.0, 0.0)):
    """An Image layer showing ``layer``'s plane in a cell, displayed as ``layer`` is, placed
    relative to ``origin`` (its content's corner: each cell's picture starts at 0, so that the
    grid's camera, which fits every layer, fits one cell)."""
    from napari.layers import Image

    translate = tuple(t - o for t, o in zip(layer.translate[-2:], origin))
    return Image(
        _plane(viewer, layer),
        name=name,
        rgb=layer.rgb,
        colormap=layer.colormap.name,
        contrast_limits=layer.contrast_limits,
        scale=tuple(layer.scale[-2:]),
        translate=translate,
        metadata={"napari_nst": {kind: name}},
    )


def compare_table(runs: list[Run]) -> tuple[list[str], list[str], dict, dict]:
    """(contents, styles, {(content, style): [runs]}, {style: its column count}): contents and
    styles in the order their first run appears; a style's columns are its most runs with one
    content."""
    contents, styles, pairs = [], [], {}
    for run in runs:
        contents += [run.content] if run.content not in contents else []
        styles += [run.style] if run.style not in styles else []
        pairs.setdefault((run.content, run.style), []).append(run)
    widths = {s: max(len(pairs.get((c, s), [])) for c in contents) for s in styles}
    return contents, styles, pairs, widths


def _distinct_labels(labels: list[str]) -> list[str]:
    """Cell labels without the words every run shares ("size 256" when all are at 256 px),
    the method always kept: "predict · strength 0.4"."""
    words = [label.split(" · ") for label in labels]
    shared = set.intersection(*(set(w[1:]) for w in words)) if len(words) > 1 else set()
    return [" · ".join([w[0], *(x for x in w[1:] if x not in shared)]) for w in words]


def show_comparison(viewer, name: str = "compare", wrap: bool = True) -> GridView | None:
    """Every finished run in one table, a row per content: the content, then for each style
    the style and its runs with that content (gaps where a content has fewer); long rows wrap
    onto several lines of the grid when that makes the cells larger (``wrap``). None when
    there is no run."""
    runs = finished_runs(viewer)
    contents, styles, pairs, widths = compare_table(runs)
    if not contents:
        return None
    for run, label in zip(runs, _distinct_labels([run.label for run in runs])):
        run.label = label
    rows = [_row_cells(viewer, name, content, styles, pairs, widths) for content in contents]
    columns = len(rows[0])
    if wrap:
        columns = wrapped_columns(
            len(rows),
            columns,
            _cell_extent(rows),
            tuple(getattr(getattr(viewer, "canvas", None), "size", (600, 800))),
        )
    lines = -(-len(rows[0]) // columns)
    view = GridView(viewer, (len(rows) * lines, columns), name, kind="compare")
    with layer_batch(viewer):  # napari lays the grid out once, not for every cell
        view.show(grid_on=False)
        for number, row in enumerate(rows):
            if number == len(rows) - 1:  # no gaps after the last picture
                while row[-1] == (None, ""):
                    row = row[:-1]
                cells = row
            else:
                cells = row + [(None, "")] * (lines * columns - len(row))
            for picture, text in cells:
                view.place(picture, text) if picture is not None else view.place_blank(text)
        view.grid_on()
        view.reselect()
    view.fit()
    return view


def _cell_extent(rows: list) -> tuple[float, float]:
    """(height, width) in world units of a cell that holds the largest picture and its label."""
    sizes = [
        np.ptp(np.asarray(picture.extent.world)[:, -2:], axis=0) + 1
        for row in rows
        for picture, _ in row
        if picture is not None
    ]
    height, width = np.max(sizes, axis=0)
    return height * (1 + LABEL_GAP + LABEL_HEIGHT), width


def _row_cells(viewer, name: str, content: str, styles, pairs, widths) -> list:
    """A content's row of the table: [(Image layer or None for a gap, label)]."""
    inputs = {
        layer.name: layer
        for layer in viewer.layers
        if "napari_nst" not in layer.metadata and hasattr(layer, "rgb")
    }
    origin = (0.0, 0.0)
    if content in inputs:
        origin = tuple(inputs[content].translate[-2:])
        cells = [
            (
                _cell_image(
                    viewer, inputs[content], f"{name}: content {content}", "compare", origin
                ),
                f"content: {content}",
            )
        ]
    else:
        cells = [(None, f"content: {content} (removed)")]
    for style in styles:
        if style in inputs:
            cells.append(
                (
                    _cell_image(
                        viewer,
                        inputs[style],
                        f"{name}: {content} · style {style}",
                        "compare",
                        tuple(inputs[style].translate[-2:]),
                    ),
                    f"style: {style}",
                )
            )
        else:  # a regions run's styles: several layers, named in the label
            cells.append((None, f"style: {style}"))
        runs = pairs.get((content, style), [])
        cells += [
            (
                _cell_image(viewer, run.layer, f"{name}: {run.layer.name}", "compare", origin),
                run.label,
            )
            for run in runs
        ]
        cells += [(None, "")] * (widths[style] - len(runs))
    return cells
