"""napari's grid as a table of labelled cells, for the Compare view and explore's sweeps.

Each cell is two layers: an Image and a Points layer holding one invisible point whose text is
the cell's label, drawn on the canvas above the image (napari's grid puts ``stride`` = 2
consecutive layers in one viewbox and fills its cells from the bottom of the layer list, row by
row, visible layers only). A ``GridView`` adds its cells' layers at the bottom of the list and
hides every other layer while it is shown; ``remove`` takes its layers away together and puts
the view back as it was.

Labels scale with the cells (napari's text ``scaling``): one font size for the whole view, the
largest at which the longest label fits its cell's width, so labels never run into the next
cell, and grow as the user zooms in.

Compare shows every finished run of the viewer: a row per content, the content first, then for
each style the style and its runs (cells are views of the layers' data, not copies; a run
folded into a step slider shows its last step). A row longer than the canvas has room for wraps
onto several lines when that makes the cells at least ``WRAP_GAIN`` larger, every content's
row the same way, so that the columns stay aligned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._result_layers import layer_batch, remove_layers

#: Gap between grid cells, in screen pixels (napari's ``GridCanvas.spacing`` of 1 and more).
SPACING = 6
#: A label's text, per unit of napari's text size (measured on this font, with scaling on): the
#: width of an average character and the height of a line, in world units (napari's font size
#: is the text size times the zoom, whatever the layer's scale).
CHAR_WIDTH, LINE_HEIGHT = 0.9, 1.65
#: Labels are at most this share of a cell's height, and sit this share above its picture.
LABEL_HEIGHT, LABEL_GAP = 0.075, 0.02
#: Compare wraps a row onto more lines only when that makes its cells this much larger.
WRAP_GAIN = 1.15


@dataclass
class ViewState:
    grid: tuple  # (enabled, shape, stride)
    order: list  # the layers, bottom to top
    visible: list  # their visibility, same order
    selected: list = field(default_factory=list)  # the selection, its active layer first


# Layers are compared with == and found with index(), never by id(): napari hands plugins proxies
# of its viewer, and each access returns a new proxy object for the same layer.


def _grid(viewer):
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def restore_view(viewer, state: ViewState | None) -> None:
    """Put back the grid settings, layer order and visibility saved in ``state``."""
    if state is None:
        return
    grid = _grid(viewer)
    present = [
        (layer, visible)
        for layer, visible in zip(state.order, state.visible)
        if layer in viewer.layers
    ]
    for position, (layer, visible) in enumerate(present):
        viewer.layers.move(viewer.layers.index(layer), position)
        viewer.layers[position].visible = visible
    grid.enabled, grid.shape, grid.stride = state.grid[0], state.grid[1], state.grid[2]
    select(viewer, state.selected)
    viewer.reset_view()


def selection(viewer) -> list:
    """The selected layers, the active one first."""
    active = viewer.layers.selection.active
    return ([active] if active is not None else []) + [
        layer for layer in viewer.layers.selection if layer != active
    ]


def select(viewer, layers: list) -> None:
    """Select ``layers`` (those still in the viewer), the first one active."""
    present = [layer for layer in layers if layer in viewer.layers]
    viewer.layers.selection.clear()
    viewer.layers.selection.update(present)
    if present:
        viewer.layers.selection.active = present[0]


def label_layer(text: str, scale, translate, height: float, name: str, metadata: dict):
    """The Points layer that writes ``text`` above an image of ``height`` pixels placed with
    ``scale`` and ``translate``: one invisible point just above its top-left corner (its text
    size is set for the whole view by ``GridView.size_labels``)."""
    from napari.layers import Points

    layer = Points(
        np.array([[-LABEL_GAP * height - 1, 0.0]]),
        scale=scale,
        translate=translate,
        name=name,
        size=0.01,
        face_color="transparent",
        border_width=0,
        metadata=metadata,
        text={
            "string": [text],
            "color": "white",
            "anchor": "upper_left",
            "size": 8,
            "scaling": True,
        },
    )
    layer.editable = False
    return layer


def label_size(longest: int, width: float, height: float) -> float:
    """napari's text size (scaling on, in world units) at which a label of ``longest``
    characters fits a picture ``width`` wide, at most ``LABEL_HEIGHT`` of ``height``."""
    return max(
        min(0.96 * width / (CHAR_WIDTH * max(longest, 1)), LABEL_HEIGHT * height / LINE_HEIGHT),
        1e-3,
    )


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


@dataclass
class GridView:
    """Cells in napari's grid (each an image and its label), and the view before it."""

    viewer: Any
    shape: tuple[int, int]
    name: str
    state: ViewState | None = None
    layers: list = field(default_factory=list)
    #: What the grid's own layers carry in their metadata (so they are not taken for inputs).
    kind: str = "grid"

    def show(self, grid_on: bool = True) -> None:
        """This view's cells only (other layers hidden, their state saved), and the grid on
        (``grid_on=False``: later, by ``grid_on()``, once many cells are placed: napari lays
        the grid out anew for every layer inserted into it, in time that grows with the
        layers, 4.6 s for 10 cells at once)."""
        grid = _grid(self.viewer)
        self.state = ViewState(
            (grid.enabled, tuple(grid.shape), grid.stride),
            list(self.viewer.layers),
            [layer.visible for layer in self.viewer.layers],
            selection(self.viewer),
        )
        for layer in self.viewer.layers:
            layer.visible = False
        grid.enabled = False
        if grid_on:
            self.grid_on()

    def grid_on(self) -> None:
        grid = _grid(self.viewer)
        grid.stride, grid.shape = 2, self.shape
        if hasattr(grid, "spacing"):
            grid.spacing = SPACING
        grid.enabled = True

    @property
    def cells(self) -> int:
        return len(self.layers) // 2

    def _tag(self, metadata: dict | None = None) -> dict:
        return {"napari_nst": {self.kind: self.name, **(metadata or {})}}

    def place(self, picture, text: str) -> None:
        """``picture`` (an Image layer made for this view) and its label as the next cell in
        row-major order."""
        height = picture.data.shape[-3 if picture.rgb else -2]
        scale, translate = tuple(picture.scale[-2:]), tuple(picture.translate[-2:])
        label = label_layer(
            text, scale, translate, height, f"{self.name}: label {self.cells}", self._tag()
        )
        self._insert(picture, label)

    def place_blank(self, text: str = "") -> None:
        """An empty cell (a gap in the table), with ``text`` if any."""
        from napari.layers import Points

        blank = Points(
            np.empty((0, 2)), name=f"{self.name}: blank {self.cells}", metadata=self._tag()
        )
        label = label_layer(
            text, (1.0, 1.0), (0.0, 0.0), 0.0, f"{self.name}: label {self.cells}", self._tag()
        )
        self._insert(blank, label)  # both visible: napari's grid counts visible layers only

    def _insert(self, picture, label) -> None:
        position = len(self.layers)
        self.viewer.layers.insert(position, picture)
        self.viewer.layers.insert(position + 1, label)
        self.layers += [picture, label]
        if len(self.layers) == 2:
            self.fit()

    def reselect(self) -> None:
        """The selection as it was before the view (napari selects each layer it inserts: a
        label's points would take the layer controls). Once after placing cells: every
        selection change costs napari a pass over all layers' overlays."""
        if self.state is not None and selection(self.viewer) != self.state.selected:
            select(self.viewer, self.state.selected)

    @property
    def labels(self) -> list:
        return self.layers[1::2]

    def picture_extent(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(low, high) corners, in world (y, x), of every cell's picture (a cell's own
        coordinates: all cells are laid over one another), None before the first picture."""
        extents = [
            np.asarray(layer.extent.world)[:, -2:]
            for layer in self.layers[0::2]
            if len(layer.data) and np.isfinite(layer.extent.world).all()
        ]
        if not extents:
            return None
        return np.min([e[0] for e in extents], axis=0), np.max([e[1] for e in extents], axis=0)

    def size_labels(self) -> float:
        """One text size for every label of the view (``label_size`` of the longest label and
        the pictures' extent); returns the labels' height in world units."""
        extent = self.picture_extent()
        if extent is None or not self.labels:
            return 0.0
        height, width = extent[1] - extent[0]
        longest = max(
            len(str(label.text.values[0])) if len(label.text.values) else 0 for label in self.labels
        )
        size = label_size(longest, width, height)
        for label in self.labels:
            label.text.size = size  # world units: napari divides by world per pixel
        return size * LINE_HEIGHT

    def fit(self, margin: float = 0.04) -> None:
        """Zoom so that one cell's pictures and label fill a cell. napari's own fit counts every
        layer of the viewer, the hidden ones too (a style placed beside the content would
        shrink every cell), and fails for 2-D layers in a viewer with more axes (a step
        slider)."""
        self.viewer.reset_view()
        extent = self.picture_extent()
        canvas = getattr(self.viewer, "canvas", None)
        if extent is None or canvas is None:
            return
        low, high = extent
        low = low - [LABEL_GAP * (high[0] - low[0]) + self.size_labels(), 0.0]
        cell = np.asarray(canvas.size, dtype=float) / np.asarray(self.shape)  # (height, width)
        camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera
        camera.zoom = float(np.min(cell * (1 - margin) / np.maximum(high - low + 1, 1e-9)))
        centre = list(camera.center)
        centre[-2:] = (low + high) / 2
        camera.center = tuple(centre)

    def remove(self) -> None:
        """This view's layers out of the viewer, and the view back as it was."""
        remove_layers(self.viewer, self.layers)
        self.layers = []
        if self.state is not None:
            restore_view(self.viewer, self.state)
            self.state = None


# --- Compare: every finished run of each content and style ---------------------------------------


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
