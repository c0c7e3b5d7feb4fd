"""napari's grid as cells, each an image and its label, for the Compare view and explore's sweeps.

Each cell is two layers: an Image and a Points layer holding one invisible point whose text is
the cell's label, drawn on the canvas above the image (napari's grid puts ``stride`` = 2
consecutive layers in one viewbox and fills its cells from the bottom of the layer list, row by
row, visible layers only). A ``GridView`` adds its cells' layers at the bottom of the list and
hides every other layer while it is shown; ``remove`` takes its layers away together and puts
the view back as it was.

Labels scale with the cells (napari's text ``scaling``): one font size for the whole view, the
largest at which the longest label fits its cell's width, so labels never run into the next
cell, and grow as the user zooms in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._result_layers import remove_layers

#: Gap between grid cells, in screen pixels (napari's ``GridCanvas.spacing`` of 1 and more).
SPACING = 6
#: A label's text, per unit of napari's text size (measured on this font, with scaling on): the
#: width of an average character and the height of a line, in world units (napari's font size
#: is the text size times the zoom, whatever the layer's scale).
CHAR_WIDTH, LINE_HEIGHT = 0.9, 1.65
#: Labels are at most this share of a cell's height, and sit this share above its picture.
LABEL_HEIGHT, LABEL_GAP = 0.075, 0.02


@dataclass
class ViewState:
    grid: tuple  # (enabled, shape, stride)
    order: list  # the layers, bottom to top
    visible: list  # their visibility, same order
    selected: list = field(default_factory=list)  # the selection, its active layer first


# Layers are compared with == and found with index(), never by id(): napari hands plugins proxies
# of its viewer, and each access returns a new proxy object for the same layer.


def _canvas_grid(viewer):
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def restore_view(viewer, state: ViewState | None) -> None:
    """Put back the grid settings, layer order and visibility saved in ``state``."""
    if state is None:
        return
    grid = _canvas_grid(viewer)
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
        grid = _canvas_grid(self.viewer)
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
        grid = _canvas_grid(self.viewer)
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
